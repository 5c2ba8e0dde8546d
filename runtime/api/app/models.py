"""Request and response bodies of the chat API (the guide's ChatRequest/ChatResponse, extended)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=1_000_000)
    conversation_id: str = Field(min_length=1, max_length=256, pattern=ID_PATTERN)
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=ID_PATTERN,
        description="Optional with API keys (the key decides; a different value is refused).",
    )
    user_id: str | None = Field(default=None, min_length=1, max_length=256, pattern=ID_PATTERN)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    response: str
    conversation_id: str
    bot_id: str
    usage: Usage | None = None


class ToolCallOut(BaseModel):
    """A function call an assistant message made (OpenAI's shape)."""

    id: str
    type: Literal["function"] = "function"
    function: dict[str, str]  # name, arguments (JSON text)


class MessageOut(BaseModel):
    """A stored message; ``tool_calls`` and ``tool_call_id`` appear only when it has them."""

    seq: int
    role: str
    content: str
    created_at: datetime
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None


class ConversationOut(BaseModel):
    bot_id: str
    conversation_id: str
    client_id: str
    messages: list[MessageOut]
