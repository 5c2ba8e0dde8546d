"""Request and response bodies of the chat API (the guide's ChatRequest/ChatResponse, extended)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class Approval(BaseModel):
    """The client's decision on one tool call that waits for approval."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256, description="The pending call's id.")
    approved: bool


class ChatRequest(BaseModel):
    """A user message, or (``approvals``) the decisions on the calls a turn waits for."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(default=None, min_length=1, max_length=1_000_000)
    approvals: list[Approval] | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Approve or reject every tool call the conversation waits for (by id); "
        "the turn then resumes. Instead of a message.",
    )
    conversation_id: str = Field(min_length=1, max_length=256, pattern=ID_PATTERN)
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=ID_PATTERN,
        description="Optional with API keys (the key decides; a different value is refused).",
    )
    user_id: str | None = Field(default=None, min_length=1, max_length=256, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _message_or_approvals(self) -> Self:
        if (self.message is None) == (self.approvals is None):
            raise ValueError("send either a message or approvals")
        return self

    def decisions(self) -> dict[str, bool]:
        """The approvals by call id (a repeated id: the last decision)."""
        return {a.id: a.approved for a in self.approvals or ()}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ToolRunOut(BaseModel):
    """A server-side tool call the turn ran, with what it returned."""

    id: str
    name: str
    arguments: str = Field(description="The JSON text the model wrote.")
    content: str = Field(description="What the tool returned (or why it failed).")
    is_error: bool


class PendingCallOut(BaseModel):
    """A tool call that waits for the client's approval."""

    id: str
    name: str
    arguments: str = Field(description="The JSON text the model wrote.")


class ChatResponse(BaseModel):
    response: str
    conversation_id: str
    bot_id: str
    usage: Usage | None = None
    status: Literal["completed", "awaiting_approval"] = Field(
        default="completed",
        description="awaiting_approval: the turn stopped; approve or reject pending_approvals.",
    )
    tool_calls: list[ToolRunOut] = Field(
        default_factory=list, description="The server-side tool calls of this turn, in order."
    )
    pending_approvals: list[PendingCallOut] = Field(default_factory=list)


class ToolCallOut(BaseModel):
    """A function call an assistant message made (OpenAI's shape)."""

    id: str
    type: Literal["function"] = "function"
    function: dict[str, str]  # name, arguments (JSON text)


class MessageOut(BaseModel):
    """A stored message; ``tool_calls``, ``tool_call_id`` and ``generation`` appear only when
    it has them."""

    seq: int
    role: str
    content: str
    created_at: datetime
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None
    generation: int | None = Field(
        default=None,
        description="The generation of the Bot that produced the message (absent: not "
        "recorded, e.g. a bot without a generation or a message stored before it was kept).",
    )


class ConversationOut(BaseModel):
    bot_id: str
    conversation_id: str
    client_id: str
    messages: list[MessageOut]
