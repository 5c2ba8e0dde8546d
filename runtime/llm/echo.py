"""An offline provider that echoes the last user message: for tests, demos and dry runs.

Its conventions (shared with the fake OpenAI server in ``kubebots.runtime.testing``):

* The reply is ``"echo: " + <the last user message>``; when the prompt ends with tool results
  (``tool`` messages after the last assistant message), ``"echo: " + <their contents, one per
  line>``.
* **Tool calls.** When the request declares ``tools`` (and ``tool_choice`` is not ``"none"``)
  and the last message is a user message of lines ``call NAME ARGS`` (one call per line, each
  naming a declared function), the reply is those calls, in order: ``NAME`` with ``ARGS`` (JSON
  text, ``{}`` when absent), ids ``call_0``, ``call_1``, ... (several lines: a parallel call),
  empty content and ``finish_reason`` ``"tool_calls"``. E.g. ``call get_weather {"city":
  "Paris"}``. After tool results the reply is text (below), so a tool loop ends.
* **Tokens are words** (whitespace-separated). ``max_tokens`` / ``max_completion_tokens`` cut
  the reply after that many words, ``finish_reason`` ``"length"``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from .base import (
    ChatMessage,
    Completion,
    Delta,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageSink,
)

_WORD = re.compile(r"\S+\s*|\s+")
_CALL = re.compile(r"call\s+([A-Za-z0-9_-]+)\s*(.*)")


def split_words(text: str) -> list[str]:
    """Split ``text`` into words that keep their trailing whitespace (``"".join`` restores it)."""
    return _WORD.findall(text)


def count_words(text: str) -> int:
    """The number of whitespace-separated words in ``text`` (the echo "token" count)."""
    return len(text.split())


def estimate_usage(prompt: Iterable[str], reply: str) -> Usage:
    """Usage counted in words, as the echo provider counts it: what kubebots reports (and
    charges) when a provider reports none."""
    return Usage(
        prompt_tokens=sum(count_words(text) for text in prompt),
        completion_tokens=count_words(reply),
    )


def cut_words(text: str, limit: int | None) -> tuple[str, bool]:
    """``text`` cut after ``limit`` words (None: no limit), and whether it was cut."""
    if limit is None or count_words(text) <= limit:
        return text, False
    kept: list[str] = []
    words = 0
    for chunk in split_words(text):
        words += 1 if chunk.strip() else 0
        if words > limit:
            break
        kept.append(chunk)
    return "".join(kept), True


def token_limit(settings: Settings) -> int | None:
    """The request's ``max_completion_tokens`` or ``max_tokens``, if it sets one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = settings.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def function_names(tools: Any) -> list[str]:
    """The function names a request's ``tools`` (OpenAI's JSON) declare, in order."""
    if not isinstance(tools, list):
        return []
    names: list[str] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def asked_calls(text: str, settings: Settings) -> list[tuple[str, str]]:
    """``(name, arguments)`` per line when every non-blank line of the user message ``text`` is
    ``call NAME ARGS`` and the request declares each function ``NAME`` (and ``tool_choice`` is
    not ``"none"``), in order; else ``[]``."""
    if settings.get("tool_choice") == "none":
        return []
    declared = function_names(settings.get("tools"))
    calls: list[tuple[str, str]] = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        match = _CALL.fullmatch(line.strip())
        if match is None or match.group(1) not in declared:
            return []
        calls.append((match.group(1), match.group(2).strip() or "{}"))
    return calls


class EchoProvider:
    """Deterministic and offline: replies ``"echo: " + <content of the last user message>``
    (see the module's conventions for tool calls, tool results and ``max_tokens``).

    Usage counts words: ``prompt_tokens`` over all messages (content and tool call arguments),
    ``completion_tokens`` over the reply. ``stream`` yields the same reply word by word
    (trailing whitespace included), then a delta with the ``finish_reason``. ``max_tokens``
    (the Bot's ``llm.maxTokens``) is the default limit; a request's setting wins.
    """

    def __init__(self, model: str = "echo", *, max_tokens: int | None = None) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self._closed = False

    def _answer(self, messages: Sequence[ChatMessage], settings: Settings | None) -> Completion:
        settings = settings or {}
        last = messages[-1] if messages else None
        if last is not None and last.role == "user":
            asked = asked_calls(last.content, settings)
            if asked:
                calls = tuple(ToolCall(f"call_{i}", *call) for i, call in enumerate(asked))
                usage = self._usage(messages, " ".join(f"{c.name} {c.arguments}" for c in calls))
                return Completion("", usage, calls, "tool_calls")
        limit = token_limit(settings)
        text, cut = cut_words(self._reply(messages), self.max_tokens if limit is None else limit)
        return Completion(text, self._usage(messages, text), (), "length" if cut else "stop")

    @staticmethod
    def _reply(messages: Sequence[ChatMessage]) -> str:
        results: list[str] = []
        for message in reversed(messages):
            if message.role != "tool":
                break
            results.append(message.content)
        if results:
            return "echo: " + "\n".join(reversed(results))
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return "echo: " + last_user

    @staticmethod
    def _usage(messages: Sequence[ChatMessage], text: str) -> Usage:
        prompt = sum(
            count_words(m.content) + sum(count_words(c.arguments) for c in m.tool_calls)
            for m in messages
        )
        return Usage(prompt_tokens=prompt, completion_tokens=count_words(text))

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        """The echo reply (or tool call) with word-count usage."""
        return self._answer(messages, settings)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        """The echo reply word by word (a tool call: its id and name, then its arguments),
        then the ``finish_reason``; the deltas join to :meth:`complete`'s reply, and
        ``on_usage`` gets the same usage at the end."""
        completion = self._answer(messages, settings)
        for chunk in split_words(completion.content):
            yield Delta(chunk)
        for index, call in enumerate(completion.tool_calls):
            yield Delta(tool_calls=(ToolCallDelta(index, call.id, call.name),))
            yield Delta(tool_calls=(ToolCallDelta(index, arguments=call.arguments),))
        yield Delta(finish_reason=completion.finish_reason)
        if on_usage is not None and completion.usage is not None:
            on_usage(completion.usage)

    async def close(self) -> None:
        """Nothing to release; idempotent."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
