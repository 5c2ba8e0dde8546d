"""The shape every LLM provider has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a prompt. An assistant message may carry the ``tool_calls`` it made
    (its ``content`` may then be empty); a ``tool`` message answers the call ``tool_call_id``."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


#: Request settings for the upstream, already validated and bounded by the Bot (the /v1 route
#: builds them): OpenAI's names and JSON values, e.g. ``temperature``, ``top_p``,
#: ``max_tokens``, ``stop``, ``seed``, ``presence_penalty``, ``frequency_penalty``,
#: ``response_format``, ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``user``.
Settings = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply: its text, the tool calls it asks for, why it ended (OpenAI's
    ``finish_reason``: ``stop``, ``length``, ``tool_calls``, ``content_filter``) and usage."""

    content: str
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call (OpenAI's ``delta.tool_calls[i]``): the first piece of
    call ``index`` has its ``id`` and ``name``, later ones more ``arguments`` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    """One piece of a streamed reply: text, tool call pieces, or the reason it ended."""

    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None


#: Told a streamed reply's token usage, once, when the provider knows it (at the stream's end).
UsageSink = Callable[[Usage], None]


@runtime_checkable
class LLMProvider(Protocol):
    """Answers a list of messages. Errors are :class:`kubebots.runtime.errors.LLMError`s.

    ``settings`` are the request's settings (:data:`Settings`); a provider applies them over
    its Bot's own defaults (``llm.temperature``, ``llm.maxTokens``): the request wins.
    """

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        """The whole reply."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        """The reply as :class:`Delta` pieces, in order (an async generator): text and tool call
        pieces, the last one with the ``finish_reason``. ``on_usage`` is called with the reply's
        token usage once the provider reports it (not at all if it does not)."""
        ...

    async def close(self) -> None:
        """Release clients and connections. Idempotent."""
        ...


def joined(deltas: Iterable[Delta], usage: Usage | None = None) -> Completion:
    """The :class:`Completion` a stream's deltas make: the text joined, each tool call's
    pieces joined by ``index`` (in index order), the last ``finish_reason`` seen."""
    text: list[str] = []
    calls: dict[int, tuple[str, str, list[str]]] = {}
    finish = "stop"
    for delta in deltas:
        text.append(delta.content)
        for piece in delta.tool_calls:
            call_id, name, arguments = calls.setdefault(piece.index, ("", "", []))
            calls[piece.index] = (piece.id or call_id, piece.name or name, arguments)
            arguments.append(piece.arguments)
        if delta.finish_reason is not None:
            finish = delta.finish_reason
    tool_calls = tuple(
        ToolCall(call_id, name, "".join(arguments))
        for _, (call_id, name, arguments) in sorted(calls.items())
    )
    return Completion("".join(text), usage, tool_calls, finish)
