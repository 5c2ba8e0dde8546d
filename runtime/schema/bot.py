"""The bot configuration: the one schema the CRD, the operator and the runtime share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import SchemaModel
from .llm import LLMConfig
from .rollout import RolloutConfig
from .storage import ConversationStorageConfig, MemoryStorageConfig
from .tools import ToolsConfig


class MemoryConfig(SchemaModel):
    """What of a conversation's history is sent to the LLM each turn."""

    type: Literal["buffer"] = Field(
        default="buffer", description="buffer: the most recent messages, up to maxMessages."
    )
    max_messages: int = Field(
        default=20, ge=0, le=10_000, description="Most recent messages sent with each turn."
    )


class LimitsConfig(SchemaModel):
    """Hard limits on what a client may send."""

    max_message_chars: int = Field(
        default=32_000, ge=1, le=1_000_000, description="Characters one message may hold."
    )
    max_history_messages: int = Field(
        default=10_000,
        ge=2,
        le=10_000_000,
        description="Messages a conversation may hold; a full conversation refuses new turns.",
    )


class BotConfig(SchemaModel):
    """A bot's whole configuration (the ``spec`` of a ``Bot`` resource)."""

    llm: LLMConfig = Field(default_factory=LLMConfig)
    system_prompt: str = Field(
        default="", max_length=100_000, description="Sent first in every turn, before history."
    )
    conversation_storage: ConversationStorageConfig = Field(
        default_factory=MemoryStorageConfig,
        description="Where conversation messages are kept: backend memory, sqlite or postgres.",
    )
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    rollout: RolloutConfig | None = Field(
        default=None,
        description="Roll spec changes out gradually (canary, shadow) instead of all at once.",
    )
