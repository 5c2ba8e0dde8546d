"""The config store in process memory: for tests and single-process development."""

from __future__ import annotations

import asyncio
import bisect
import builtins
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from ..ids import validate_bot_id
from ..persistence.checks import check_seconds
from ..persistence.times import utc_now
from .base import ReplicaReport, ResyncRequired, StoreEntry, StoreError, WatchEvent
from .codec import WATCH_BATCH, Write, check_revision, make_entry, make_event
from .reports import check_report
from .writes import Writes


@dataclass(frozen=True, slots=True)
class _Record:
    """One write as stored: config and annotations as JSON text (so readers get fresh dicts)."""

    bot_id: str
    revision: int
    at: datetime
    deleted: bool
    config_json: str = "{}"
    generation: int = 0
    uid: str = ""
    annotations_json: str = "{}"

    @property
    def _columns(self) -> tuple[str, int, str, str]:
        return self.config_json, self.generation, self.uid, self.annotations_json

    def entry(self) -> StoreEntry:
        return make_entry((self.bot_id, *self._columns, self.revision, self.at))

    def event(self) -> WatchEvent:
        kind = "DELETE" if self.deleted else "PUT"
        return make_event((self.revision, kind, self.bot_id, *self._columns, self.at))


@dataclass
class _Log:
    """Live entries, tombstones and the events, in revision order; the one write transaction.

    Every write runs without awaiting before it is applied, so it is atomic with respect to
    other coroutines; watchers wait on ``changed``.
    """

    clock: Callable[[], datetime]
    state: dict[str, _Record] = field(default_factory=dict)  # live entries and tombstones
    events: list[_Record] = field(default_factory=list)
    current: int = 0
    compacted: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def live_record(self, bot_id: str) -> _Record | None:
        record = self.state.get(validate_bot_id(bot_id))
        return None if record is None or record.deleted else record

    async def live(self, bot_id: str) -> tuple[int, StoreEntry | None]:
        record = self.live_record(bot_id)
        return self.current, None if record is None else record.entry()

    async def put(self, write: Write) -> int:
        w = write
        columns = (w.config_json, w.generation, w.uid, w.annotations_json)
        return await self._append(
            _Record(w.bot_id, self.current + 1, self.clock(), False, *columns)
        )

    async def tombstone(self, bot_id: str) -> int:
        return await self._append(_Record(bot_id, self.current + 1, self.clock(), True))

    async def revision(self) -> int:
        return self.current

    async def _append(self, record: _Record) -> int:
        self.state[record.bot_id] = record
        self.events.append(record)
        self.current = record.revision
        async with self.changed:
            self.changed.notify_all()
        return record.revision


class MemoryConfigStore(Writes):
    """A :class:`~kubebots.runtime.configstore.base.ReportingConfigStore` kept in dictionaries.

    Every write runs without awaiting before it is applied, so it is atomic with respect to other
    coroutines; watchers wait on an :class:`asyncio.Condition`. ``clock`` (default: the UTC wall
    clock) stamps writes and heartbeats, so tests can move time. After :meth:`close` every call
    raises :class:`StoreError` and running watches end with it.
    """

    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._log = _Log(clock)
        self._replicas: dict[str, ReplicaReport] = {}
        self._closed = False

    @classmethod
    async def open(cls, *, clock: Callable[[], datetime] = utc_now) -> MemoryConfigStore:
        """A new, empty store (async for symmetry with the SQL stores)."""
        return cls(clock=clock)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the config store is closed")

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Log]:
        self._check_open()
        yield self._log

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        self._check_open()
        live = self._log.live_record(bot_id)
        return None if live is None else live.entry()

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the current revision."""
        self._check_open()
        live = [r.entry() for _, r in sorted(self._log.state.items()) if not r.deleted]
        return live, self._log.current

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        self._check_open()
        return self._log.current

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed."""
        check_revision("from_revision", from_revision)
        self._check_open()
        return self._watch(from_revision)

    async def _watch(self, cursor: int) -> AsyncIterator[WatchEvent]:
        log = self._log
        while True:
            self._check_open()
            if cursor < log.compacted:
                raise ResyncRequired(cursor, log.compacted)
            start = bisect.bisect_right(log.events, cursor, key=lambda r: r.revision)
            batch = log.events[start : start + WATCH_BATCH]
            for record in batch:
                yield record.event()
                cursor = record.revision
            if batch:
                continue
            async with log.changed:
                await log.changed.wait_for(partial(self._moved_past, cursor))

    def _moved_past(self, cursor: int) -> bool:
        """Whether a watcher at ``cursor`` has something to do (an event, or the close)."""
        return self._closed or self._log.current > cursor

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        cutoff = self._clock() - timedelta(seconds=check_seconds("retention", retention_seconds))
        self._check_open()
        log = self._log
        old = [r.revision for r in log.events if r.at <= cutoff]
        log.compacted = max(log.compacted, *old, 0)
        start = bisect.bisect_right(log.events, log.compacted, key=lambda r: r.revision)
        del log.events[:start]
        for bot_id, record in builtins.list(log.state.items()):
            if record.deleted and record.revision <= log.compacted:
                del log.state[bot_id]
        return log.compacted

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
        log = self._log
        log.state, log.events, self._replicas = {}, [], {}
        async with log.changed:
            log.changed.notify_all()
