"""A config store that connects on first use, so a process may start before its database.

Every call opens the real store first if needed; while it cannot be opened the call raises the
open's :class:`StoreError` (never quoting credentials), and callers already treat that as "the
store is unavailable": the runtime's sync loop retries with backoff and stays unready, the
operator's handlers retry.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from typing import Unpack

from ..persistence.deferred import Deferred
from .base import (
    PutOptions,
    ReplicaReport,
    ReportingConfigStore,
    Spec,
    StoreEntry,
    WatchEvent,
)


class DeferredConfigStore(Deferred[ReportingConfigStore]):
    """A :class:`ReportingConfigStore` around ``open()``, which is awaited on the first call."""

    what = "config store"

    async def put(self, bot_id: str, config: Spec, **how: Unpack[PutOptions]) -> int:
        return await (await self.opened()).put(bot_id, config, **how)

    async def delete(self, bot_id: str) -> int:
        return await (await self.opened()).delete(bot_id)

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        return await (await self.opened()).delete_many(bot_ids)

    async def get(self, bot_id: str) -> StoreEntry | None:
        return await (await self.opened()).get(bot_id)

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        return await (await self.opened()).list()

    async def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        events = (await self.opened()).watch(from_revision)
        try:
            async for event in events:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def current_revision(self) -> int:
        return await (await self.opened()).current_revision()

    async def compact(self, retention_seconds: float) -> int:
        return await (await self.opened()).compact(retention_seconds)

    async def report(self, report: ReplicaReport) -> None:
        await (await self.opened()).report(report)

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        return await (await self.opened()).replica_reports(max_age_seconds=max_age_seconds)

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        return await (await self.opened()).expire_replicas(max_age_seconds=max_age_seconds)
