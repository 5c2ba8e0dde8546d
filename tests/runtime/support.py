"""LLM provider implementations for tests: real implementations of the protocol, injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from kubebots.runtime.errors import LLMUnavailableError
from kubebots.runtime.llm.base import ChatMessage, Completion


class RecordingProvider:
    """Answers ``<tag>: <last user message>``; records prompts; can be gated or made to fail."""

    def __init__(self, tag: str = "rec") -> None:
        self.tag = tag
        self.prompts: list[list[ChatMessage]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_next = 0
        self.closed = 0

    async def _answer(self, messages: Sequence[ChatMessage]) -> str:
        self.prompts.append(list(messages))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise LLMUnavailableError("upstream failed (test)")
        return f"{self.tag}: {messages[-1].content}"

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        return Completion(await self._answer(messages))

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        text = await self._answer(messages)
        for i in range(0, len(text), 3):
            yield text[i : i + 3]

    async def close(self) -> None:
        self.closed += 1
