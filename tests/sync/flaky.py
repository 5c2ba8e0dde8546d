"""A real ConfigStore that wraps another and can fail on demand (like httpx's MockTransport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from kubebots.runtime.configstore import (
    ConfigStore,
    ReplicaReport,
    StoreEntry,
    StoreError,
    WatchEvent,
)


class FlakyStore:
    def __init__(self, inner: ConfigStore) -> None:
        self.inner = inner
        self.down = False  # every call fails while set
        self.break_watch: BaseException | None = None  # the running watch raises this once
        self.up = asyncio.Event()
        self.up.set()
        self.lists = 0
        self.gets = 0

    def _check(self) -> None:
        if self.down:
            raise StoreError("store is down (test)")

    async def put(
        self,
        bot_id: str,
        config: Mapping[str, Any],
        *,
        generation: int,
        uid: str,
        annotations: Mapping[str, str] | None = None,
    ) -> int:
        self._check()
        return await self.inner.put(
            bot_id, config, generation=generation, uid=uid, annotations=annotations
        )

    async def delete(self, bot_id: str) -> int:
        self._check()
        return await self.inner.delete(bot_id)

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        self._check()
        return await self.inner.delete_many(bot_ids)

    async def get(self, bot_id: str) -> StoreEntry | None:
        self._check()
        self.gets += 1
        return await self.inner.get(bot_id)

    async def list(self) -> tuple[list[StoreEntry], int]:
        await self.up.wait()
        self._check()
        self.lists += 1
        return await self.inner.list()

    async def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        self._check()
        inner = self.inner.watch(from_revision)
        next_event: asyncio.Future[WatchEvent] | None = None
        try:
            while True:
                next_event = asyncio.ensure_future(anext(inner))
                while not next_event.done():
                    if self.break_watch is not None:
                        exc, self.break_watch = self.break_watch, None
                        next_event.cancel()
                        await asyncio.gather(next_event, return_exceptions=True)
                        raise exc
                    await asyncio.wait({next_event}, timeout=0.01)
                yield next_event.result()
        finally:
            if next_event is not None and not next_event.done():
                next_event.cancel()
                await asyncio.gather(next_event, return_exceptions=True)
            await inner.aclose()  # type: ignore[attr-defined]

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact(self, retention_seconds: float) -> int:
        return await self.inner.compact(retention_seconds)

    async def report(self, report: ReplicaReport) -> None:
        self._check()
        await self.inner.report(report)

    async def replica_reports(self, *, max_age_seconds: float) -> list[ReplicaReport]:
        return await self.inner.replica_reports(max_age_seconds=max_age_seconds)

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        return await self.inner.expire_replicas(max_age_seconds=max_age_seconds)

    async def close(self) -> None:
        await self.inner.close()
