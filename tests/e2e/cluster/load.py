"""Steady chat load against the runtime Service, bounded in rate, count and time.

Every request is one of four kinds, in turn: the guide's ``/chat``, its SSE ``/chat/stream``,
``/v1/chat/completions`` through the official openai SDK, and the same streamed. No retries
anywhere (``max_retries=0``): a request that fails is counted, whatever the reason. Turns of the
guide's routes are stored; :meth:`LoadResult.lost_turns` compares what the server confirmed with
what each conversation holds afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

KINDS = ("chat", "chat-stream", "v1", "v1-stream")


@dataclass
class LoadResult:
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    #: conversation id -> the user messages whose turn the server confirmed, in order.
    confirmed: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.sent} requests in {self.seconds:.1f}s ({self.by_kind}), "
            f"{len(self.failures)} failed" + (f": {self.failures[:10]}" if self.failures else "")
        )


class ChatLoad:
    """``rate`` requests a second for ``duration`` seconds, spread over ``conversations``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        bot_id: str,
        *,
        rate: float = 20.0,
        duration: float = 30.0,
        conversations: int = 10,
        tag: str = "load",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.bot_id = bot_id
        self.rate = rate
        self.duration = duration
        self.conversation_ids = [f"{tag}-{i}" for i in range(conversations)]
        self.result = LoadResult()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- run in the background while a test disrupts the cluster ----------------------------

    def start(self) -> ChatLoad:
        self._thread = threading.Thread(target=self._main, name="chat-load", daemon=True)
        self._thread.start()
        return self

    def join(self) -> LoadResult:
        assert self._thread is not None, "start() first"
        self._thread.join(timeout=self.duration + 120)
        if self._thread.is_alive():
            raise AssertionError("the load did not finish in time")
        if self._error is not None:
            raise self._error
        return self.result

    def _main(self) -> None:
        try:
            asyncio.run(self.run())
        except BaseException as exc:  # re-raised by join() in the test's thread
            self._error = exc

    # -- the load ---------------------------------------------------------------------------

    async def run(self) -> LoadResult:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout
        ) as http:
            sdk = openai.AsyncOpenAI(
                base_url=f"{self.base_url}/v1",
                api_key=self.api_key,
                max_retries=0,
                timeout=30.0,
            )
            locks = {cid: asyncio.Lock() for cid in self.conversation_ids}
            tasks: list[asyncio.Task[None]] = []
            began = time.monotonic()
            total = int(self.rate * self.duration)
            pairs = zip(
                range(total),
                itertools.cycle(KINDS),
                itertools.cycle(self.conversation_ids),
                strict=False,
            )
            for n, kind, cid in pairs:
                due = began + n / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(self._one(http, sdk, locks[cid], kind, cid, n)))
            await asyncio.gather(*tasks)
            self.result.seconds = time.monotonic() - began
            await sdk.close()
        return self.result

    async def _one(
        self,
        http: httpx.AsyncClient,
        sdk: openai.AsyncOpenAI,
        lock: asyncio.Lock,
        kind: str,
        cid: str,
        n: int,
    ) -> None:
        message = f"{cid} turn {n}"
        self.result.sent += 1
        self.result.by_kind[kind] = self.result.by_kind.get(kind, 0) + 1
        try:
            async with lock:  # one turn at a time per conversation, as a user types
                if kind == "chat":
                    await self._chat(http, cid, message)
                elif kind == "chat-stream":
                    await self._chat_stream(http, cid, message)
                elif kind == "v1":
                    await self._v1(sdk, message)
                else:
                    await self._v1_stream(sdk, message)
        except Exception as exc:  # every failure is counted with its reason
            self.result.failures.append(f"{kind} #{n}: {type(exc).__name__}: {exc}"[:300])
            return
        if kind in ("chat", "chat-stream"):
            self.result.confirmed.setdefault(cid, []).append(message)

    async def _chat(self, http: httpx.AsyncClient, cid: str, message: str) -> None:
        resp = await http.post(
            f"/bots/{self.bot_id}/chat", json={"message": message, "conversation_id": cid}
        )
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
        if message not in resp.json()["response"]:
            raise RuntimeError(f"unexpected reply {resp.text[:200]}")

    async def _chat_stream(self, http: httpx.AsyncClient, cid: str, message: str) -> None:
        body = {"message": message, "conversation_id": cid}
        events: list[str] = []
        text = ""
        async with http.stream("POST", f"/bots/{self.bot_id}/chat/stream", json=body) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}")
            event = ""
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    events.append(event)
                elif line.startswith("data: ") and event == "delta":
                    text += json.loads(line[6:])["delta"]
        if not events or events[-1] != "done":
            raise RuntimeError(f"stream ended without done: {events[-3:]}")
        if message not in text:
            raise RuntimeError(f"unexpected streamed reply {text[:200]!r}")

    async def _v1(self, sdk: openai.AsyncOpenAI, message: str) -> None:
        out = await sdk.chat.completions.create(
            model=self.bot_id, messages=[{"role": "user", "content": message}]
        )
        if message not in (out.choices[0].message.content or ""):
            raise RuntimeError(f"unexpected completion {out.choices[0].message.content!r}")

    async def _v1_stream(self, sdk: openai.AsyncOpenAI, message: str) -> None:
        stream = await sdk.chat.completions.create(
            model=self.bot_id, messages=[{"role": "user", "content": message}], stream=True
        )
        text = ""
        finished: Any = None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finished = chunk.choices[0].finish_reason or finished
        if finished != "stop" or message not in text:
            raise RuntimeError(f"stream incomplete: finish={finished!r} text={text[:200]!r}")


def lost_turns(http: httpx.Client, bot_id: str, result: LoadResult) -> list[str]:
    """Confirmed turns missing from their conversation (user message and a reply after it)."""
    lost: list[str] = []
    for cid, sent in result.confirmed.items():
        resp = http.get(f"/bots/{bot_id}/conversations/{cid}")
        if resp.status_code != 200:
            lost.append(f"{cid}: HTTP {resp.status_code} {resp.text[:200]}")
            continue
        messages = resp.json()["messages"]
        stored = [
            m["content"]
            for i, m in enumerate(messages)
            if m["role"] == "user"
            and i + 1 < len(messages)
            and messages[i + 1]["role"] == "assistant"
        ]
        lost += [f"{cid}: {m!r}" for m in sent if m not in stored]
    return lost
