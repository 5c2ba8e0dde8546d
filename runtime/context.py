"""``BotContext``: who is talking, in which conversation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .ids import validate_context_id


@dataclass(frozen=True, slots=True)
class BotContext:
    """The tenant (``client_id``), the conversation and optionally the end user of a chat.

    A conversation is identified by ``(bot, client_id, conversation_id)``: two clients using the
    same ``conversation_id`` have two separate conversations.
    """

    conversation_id: str
    client_id: str
    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_context_id(self.conversation_id, "conversation_id")
        validate_context_id(self.client_id, "client_id")
        validate_context_id(self.user_id, "user_id", required=False)
