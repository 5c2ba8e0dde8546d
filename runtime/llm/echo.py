"""An offline provider that echoes the last user message: for tests, demos and dry runs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from .base import ChatMessage, Completion, Usage, UsageSink

_WORD = re.compile(r"\S+\s*|\s+")


def split_words(text: str) -> list[str]:
    """Split ``text`` into words that keep their trailing whitespace (``"".join`` restores it)."""
    return _WORD.findall(text)


def count_words(text: str) -> int:
    """The number of whitespace-separated words in ``text`` (the echo "token" count)."""
    return len(text.split())


class EchoProvider:
    """Deterministic and offline: replies ``"echo: " + <content of the last user message>``.

    Usage counts words: ``prompt_tokens`` over all messages, ``completion_tokens`` over the reply.
    ``stream`` yields the same reply word by word (trailing whitespace included).
    """

    def __init__(self, model: str = "echo") -> None:
        self.model = model
        self._closed = False

    @staticmethod
    def _reply(messages: Sequence[ChatMessage]) -> str:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return "echo: " + last_user

    @staticmethod
    def _usage(messages: Sequence[ChatMessage], text: str) -> Usage:
        return Usage(
            prompt_tokens=sum(count_words(m.content) for m in messages),
            completion_tokens=count_words(text),
        )

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        """The echo reply with word-count usage."""
        text = self._reply(messages)
        return Completion(text, usage=self._usage(messages, text))

    async def stream(
        self, messages: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncIterator[str]:
        """The echo reply, word by word; the chunks join to :meth:`complete`'s text, and
        ``on_usage`` gets the same usage at the end."""
        text = self._reply(messages)
        for chunk in split_words(text):
            yield chunk
        if on_usage is not None:
            on_usage(self._usage(messages, text))

    async def close(self) -> None:
        """Nothing to release; idempotent."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed
