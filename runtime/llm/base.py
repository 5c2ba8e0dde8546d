"""The shape every LLM provider has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    usage: Usage | None = None


@runtime_checkable
class LLMProvider(Protocol):
    """Answers a list of messages. Errors are :class:`kubebots.runtime.errors.LLMError`s."""

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        """The whole reply."""
        ...

    def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        """The reply as text deltas, in order (an async generator)."""
        ...

    async def close(self) -> None:
        """Release clients and connections. Idempotent."""
        ...
