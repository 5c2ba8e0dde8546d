"""A config store that connects on first use, so a process may start before its database.

Every call opens the real store first if needed; while it cannot be opened the call raises the
open's :class:`StoreError` (never quoting credentials), and callers already treat that as "the
store is unavailable": the runtime's sync loop retries with backoff and stays unready, the
operator's handlers retry.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..storage._deferred import Deferred
from .base import ConfigStore, ReplicaReport, StoreEntry, StoreError, WatchEvent


async def _close(store: ConfigStore) -> None:
    await store.close()


class DeferredConfigStore:
    """A :class:`ConfigStore` around ``open()``, which is awaited on the first call."""

    def __init__(
        self, open: Callable[[], Awaitable[ConfigStore]], *, retry_interval: float = 1.0
    ) -> None:
        self._store = Deferred(open, _close, what="config store", retry_interval=retry_interval)

    @property
    def last_error(self) -> StoreError | None:
        """Why the store could not be opened last time (None once it is open)."""
        error = self._store.last_error
        return error if isinstance(error, StoreError) else None

    async def put(
        self,
        bot_id: str,
        config: Mapping[str, Any],
        *,
        generation: int,
        uid: str,
        annotations: Mapping[str, str] | None = None,
    ) -> int:
        store = await self._store.get()
        return await store.put(
            bot_id, config, generation=generation, uid=uid, annotations=annotations
        )

    async def delete(self, bot_id: str) -> int:
        return await (await self._store.get()).delete(bot_id)

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        return await (await self._store.get()).delete_many(bot_ids)

    async def get(self, bot_id: str) -> StoreEntry | None:
        return await (await self._store.get()).get(bot_id)

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        return await (await self._store.get()).list()

    async def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        events = (await self._store.get()).watch(from_revision)
        try:
            async for event in events:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def current_revision(self) -> int:
        return await (await self._store.get()).current_revision()

    async def compact(self, retention_seconds: float) -> int:
        return await (await self._store.get()).compact(retention_seconds)

    async def report(self, report: ReplicaReport) -> None:
        await (await self._store.get()).report(report)

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        return await (await self._store.get()).replica_reports(max_age_seconds=max_age_seconds)

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        return await (await self._store.get()).expire_replicas(max_age_seconds=max_age_seconds)

    async def close(self) -> None:
        await self._store.close()
