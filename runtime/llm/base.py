"""The shape every LLM provider has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
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


#: Told a streamed reply's token usage, once, when the provider knows it (at the stream's end).
UsageSink = Callable[[Usage], None]


@runtime_checkable
class LLMProvider(Protocol):
    """Answers a list of messages. Errors are :class:`kubebots.runtime.errors.LLMError`s."""

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        """The whole reply."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncIterator[str]:
        """The reply as text deltas, in order (an async generator). ``on_usage`` is called
        with the reply's token usage once the provider reports it (not at all if it does not)."""
        ...

    async def close(self) -> None:
        """Release clients and connections. Idempotent."""
        ...
