"""Helpers shared by the runtime's tests: LLM providers (real implementations of the protocol,
injected) and the files a cluster access is read from (a service account, a kubeconfig)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import yaml

from kubebots.runtime.errors import LLMUnavailableError
from kubebots.runtime.llm.base import ChatMessage, Completion, UsageSink


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

    async def stream(
        self, messages: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncIterator[str]:
        text = await self._answer(messages)
        for i in range(0, len(text), 3):
            yield text[i : i + 3]

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
