"""The config store in process memory: for tests and single-process development."""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from ..ids import validate_bot_id
from ._reports import check_report
from ._sql import (
    WATCH_BATCH,
    check_revision,
    check_seconds,
    decode_object,
    encode_write,
    utc_now,
)
from .base import (
    ReplicaReport,
    ResyncRequired,
    StoreEntry,
    StoreError,
    WatchEvent,
    is_noop,
)


@dataclass(frozen=True, slots=True)
class _Record:
    """One write as stored: config and annotations as JSON text (so readers get fresh dicts)."""

    bot_id: str
    revision: int
    at: datetime
    deleted: bool
    config_json: str = "{}"
    annotations_json: str = "{}"
    generation: int = 0
    uid: str = ""

    def entry(self) -> StoreEntry:
        return StoreEntry(
            bot_id=self.bot_id,
            config=decode_object(self.config_json),
            generation=self.generation,
            uid=self.uid,
            revision=self.revision,
            updated_at=self.at,
            annotations=decode_object(self.annotations_json),
        )

    def event(self) -> WatchEvent:
        if self.deleted:
            return WatchEvent("DELETE", self.bot_id, self.revision)
        return WatchEvent("PUT", self.bot_id, self.revision, self.entry())


class MemoryConfigStore:
    """A :class:`~kubebots.runtime.store.base.ConfigStore` kept in dictionaries.

    Every write runs without awaiting before it is applied, so it is atomic with respect to other
    coroutines; watchers wait on an :class:`asyncio.Condition`. ``clock`` (default: the UTC wall
    clock) stamps writes and heartbeats, so tests can move time. After :meth:`close` every call
    raises :class:`StoreError` and running watches end with it.
    """

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._state: dict[str, _Record] = {}  # live entries and tombstones
        self._events: list[_Record] = []  # ordered by revision
        self._revision = 0
        self._compacted = 0
        self._replicas: dict[str, ReplicaReport] = {}
        self._changed = asyncio.Condition()
        self._closed = False

    @classmethod
    async def open(cls, *, clock: Callable[[], datetime] = utc_now) -> MemoryConfigStore:
        """A new, empty store (async for symmetry with the SQL stores)."""
        return cls(clock=clock)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the config store is closed")

    def _live(self, bot_id: str) -> _Record | None:
        self._check_open()
        record = self._state.get(validate_bot_id(bot_id))
        return None if record is None or record.deleted else record

    async def _append(self, record: _Record) -> int:
        self._state[record.bot_id] = record
        self._events.append(record)
        self._revision = record.revision
        async with self._changed:
            self._changed.notify_all()
        return record.revision

    async def put(
        self,
        bot_id: str,
        config: Mapping[str, Any],
        *,
        generation: int,
        uid: str,
        annotations: Mapping[str, str] | None = None,
    ) -> int:
        """Write ``config``; return the entry's revision (the live one for a no-op)."""
        write = encode_write(bot_id, config, generation, uid, annotations)
        live = self._live(bot_id)
        if live is not None and is_noop(
            live.entry(), write.config, generation, uid, write.annotations
        ):
            return live.revision
        record = _Record(
            bot_id,
            self._revision + 1,
            self._clock(),
            False,
            write.config_json,
            write.annotations_json,
            generation,
            uid,
        )
        return await self._append(record)

    async def delete(self, bot_id: str) -> int:
        """Tombstone the bot; return the tombstone's revision (the current one if absent)."""
        if self._live(bot_id) is None:
            return self._revision
        return await self._append(_Record(bot_id, self._revision + 1, self._clock(), True))

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        """Tombstone every live one of ``bot_ids``; return the revision after it."""
        self._check_open()
        for bot_id in bot_ids:
            await self.delete(bot_id)
        return self._revision

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        live = self._live(bot_id)
        return None if live is None else live.entry()

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the current revision."""
        self._check_open()
        live = [r.entry() for _, r in sorted(self._state.items()) if not r.deleted]
        return live, self._revision

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        self._check_open()
        return self._revision

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed."""
        check_revision("from_revision", from_revision)
        self._check_open()
        return self._watch(from_revision)

    async def _watch(self, cursor: int) -> AsyncIterator[WatchEvent]:
        while True:
            self._check_open()
            if cursor < self._compacted:
                raise ResyncRequired(cursor, self._compacted)
            start = bisect.bisect_right(self._events, cursor, key=lambda r: r.revision)
            batch = self._events[start : start + WATCH_BATCH]
            for record in batch:
                yield record.event()
                cursor = record.revision
            if batch:
                continue
            async with self._changed:
                await self._changed.wait_for(partial(self._moved_past, cursor))

    def _moved_past(self, cursor: int) -> bool:
        """Whether a watcher at ``cursor`` has something to do (an event, or the close)."""
        return self._closed or self._revision > cursor

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        cutoff = self._clock() - timedelta(seconds=check_seconds("retention", retention_seconds))
        self._check_open()
        old = [r.revision for r in self._events if r.at <= cutoff]
        self._compacted = max(self._compacted, *old, 0)
        start = bisect.bisect_right(self._events, self._compacted, key=lambda r: r.revision)
        del self._events[:start]
        for bot_id, record in builtins.list(self._state.items()):
            if record.deleted and record.revision <= self._compacted:
                del self._state[bot_id]
        return self._compacted

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat (stamped now), replacing its previous bot reports."""
        check_report(report)
        self._check_open()
        bots = tuple(sorted(report.bots, key=lambda b: b.bot_id))
        self._replicas[report.replica_id] = ReplicaReport(
            report.replica_id, report.synced_revision, self._clock(), bots
        )

    def _cutoff(self, max_age_seconds: float) -> datetime:
        age = timedelta(seconds=check_seconds("max_age_seconds", max_age_seconds))
        self._check_open()
        return self._clock() - age

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        """Reports of replicas whose heartbeat is younger than ``max_age_seconds``."""
        cutoff = self._cutoff(max_age_seconds)
        return [r for _, r in sorted(self._replicas.items()) if r.heartbeat_at > cutoff]

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        """Delete replicas with an older heartbeat; return how many."""
        cutoff = self._cutoff(max_age_seconds)
        stale = [k for k, r in self._replicas.items() if r.heartbeat_at <= cutoff]
        for replica_id in stale:
            del self._replicas[replica_id]
        return len(stale)

    async def close(self) -> None:
        """Drop everything and end running watches (with :class:`StoreError`). Idempotent."""
        self._closed = True
        self._state, self._events, self._replicas = {}, [], {}
        async with self._changed:
            self._changed.notify_all()
