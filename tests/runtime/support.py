"""Helpers shared by the runtime's tests: LLM providers (real implementations of the protocol,
injected) and the files a cluster access is read from (a service account, a kubeconfig)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import yaml

from kubebots.runtime.errors import LLMUnavailableError
from kubebots.runtime.llm.base import (
    ChatMessage,
    Completion,
    Delta,
    Settings,
    ToolCallDelta,
    UsageSink,
)


class RecordingProvider:
    """Answers ``<tag>: <last message>``; records prompts and settings; can be gated, made to
    fail, or told its next replies (:attr:`replies`, e.g. a :class:`Completion` with tool
    calls). Streams yield the text in 3-character deltas, each tool call's id and name then its
    arguments, then the finish reason."""

    def __init__(self, tag: str = "rec") -> None:
        self.tag = tag
        self.prompts: list[list[ChatMessage]] = []
        self.settings: list[Settings | None] = []
        self.replies: list[Completion] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_next = 0
        self.closed = 0

    async def _answer(
        self, messages: Sequence[ChatMessage], settings: Settings | None
    ) -> Completion:
        self.prompts.append(list(messages))
        self.settings.append(settings)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise LLMUnavailableError("upstream failed (test)")
        if self.replies:
            return self.replies.pop(0)
        return Completion(f"{self.tag}: {messages[-1].content}")

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        return await self._answer(messages, settings)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        completion = await self._answer(messages, settings)
        text = completion.content
        for i in range(0, len(text), 3):
            yield Delta(text[i : i + 3])
        for index, call in enumerate(completion.tool_calls):
            yield Delta(tool_calls=(ToolCallDelta(index, call.id, call.name),))
            yield Delta(tool_calls=(ToolCallDelta(index, arguments=call.arguments),))
        yield Delta(finish_reason=completion.finish_reason)
        if on_usage is not None and completion.usage is not None:
            on_usage(completion.usage)

    async def close(self) -> None:
        self.closed += 1


CA = "-----BEGIN CERTIFICATE-----\nnot parsed here\n-----END CERTIFICATE-----\n"


def service_account(tmp_path: Path, token: str = "tok-1") -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_text(CA)
    (sa / "namespace").write_text("kubebots-system")
    return sa


def kubeconfig(tmp_path: Path, server: str = "https://203.0.113.9:6443") -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": {"token": "kubeconfig-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path
