"""Request and response bodies of the chat API (the guide's ChatRequest/ChatResponse, extended)."""

from __future__ import annotations

from datetime import datetime

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


class MessageOut(BaseModel):
    seq: int
    role: str
    content: str
    created_at: datetime


class ConversationOut(BaseModel):
    bot_id: str
    conversation_id: str
    client_id: str
    messages: list[MessageOut]
