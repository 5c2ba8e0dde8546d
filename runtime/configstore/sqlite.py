"""The config store in a SQLite file (WAL mode, so several processes can share it)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..ids import validate_bot_id
from ..persistence.checks import check_seconds
from ..persistence.owner import Owner
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, check_table_prefix
from ..persistence.sqlite import SharedConnection, add_columns, open_sqlite
from ..persistence.times import from_micros, to_micros, utc_now
from . import schema
from . import sqlite_schema as q
from .base import ReplicaReport, StoreEntry, StoreError, WatchEvent
from .codec import Write, check_revision, make_entry
from .reports import bot_rows, check_report, group_reports
from .sqlite_watch import SqliteWatcher
from .writes import Writes

_OWNER = Owner(StoreError, "config store")


def _entry(row: Sequence[Any]) -> StoreEntry:
    *head, updated_at = row
    return make_entry((*head, from_micros(updated_at)))


def _cutoff(what: str, seconds: float) -> int:
    """The time (microseconds) at or before which something is ``seconds`` old."""
    return to_micros(utc_now() - timedelta(seconds=check_seconds(what, seconds)))


class _Transaction:
    """A write transaction (``BEGIN IMMEDIATE``: writers of every process take turns)."""

    def __init__(self, db: q.Db) -> None:
        self._db = db

    async def live(self, bot_id: str) -> tuple[int, StoreEntry | None]:
        current, *live = await self._db.one(schema.LIVE, (bot_id,))
        return int(current), None if live[0] is None else _entry(live)

    async def put(self, write: Write) -> int:
        w = write
        values = (w.config_json, w.generation, w.uid, w.annotations_json)
        revision, now = await self._bump()
        await self._db.rows(q.UPSERT, (w.bot_id, *values, revision, now))
        await self._db.rows(q.EVENT, (revision, "PUT", w.bot_id, *values, now))
        return revision

    async def tombstone(self, bot_id: str) -> int:
        revision, now = await self._bump()
        await self._db.rows(q.TOMBSTONE, (revision, now, bot_id))
        await self._db.rows(q.EVENT, (revision, "DELETE", bot_id, *(None,) * 4, now))
        return revision

    async def revision(self) -> int:
        current, _ = await self._db.one(schema.REVISION)
        return int(current)

    async def _bump(self) -> tuple[int, int]:
        """The next revision (the counter bumped) and the time to stamp it with."""
        (revision,) = await self._db.one(q.BUMP)
        return int(revision), to_micros(utc_now())


class SqliteConfigStore(Writes):
    """A :class:`~kubebots.runtime.configstore.base.ReportingConfigStore` in one SQLite file.

    Open it with :meth:`open`. One connection serves reads and writes, one call at a time;
    writes take ``BEGIN IMMEDIATE``, which serializes writers of every process on the file, so
    revisions commit in order. Each watch has a connection of its own and looks at the counter
    every ``poll_interval`` seconds.

    The file runs in WAL mode with ``synchronous = NORMAL``: a commit survives a crash of the
    process; a power loss may lose the last commits (never corrupt the file), and a commit costs
    no fsync.
    """

    def __init__(self, db: q.SharedDb, watcher: SqliteWatcher) -> None:
        """Wrap an open connection whose schema exists; use :meth:`open` instead."""
        self._db = db
        self._watcher = watcher

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        prefix: str = DEFAULT_TABLE_PREFIX,
        poll_interval: float = 0.02,
        busy_timeout: float = 10.0,
    ) -> SqliteConfigStore:
        """Open (creating if needed) the database at ``path``, its directory and its tables.

        ``poll_interval`` is how often (seconds) a watch looks for new revisions;
        ``busy_timeout`` how long a write waits for another connection's write.
        """
        sql = q.Statements(check_table_prefix(prefix))
        check_seconds("poll_interval", poll_interval)
        check_seconds("busy_timeout", busy_timeout)
        path = Path(path)
        wal = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL")
        conn = await open_sqlite(path, _OWNER, busy_timeout=busy_timeout, prepare=wal)
        db = q.SharedDb(SharedConnection(conn, _OWNER), sql)
        try:
            async with db.transaction() as tx:
                for statement in schema.SCHEMA:
                    await tx.rows(statement)
                # a replica_bots table of an older release gets its new columns
                replica_bots = sql.table("replica_bots")
                added = dict.fromkeys(schema.REPLICA_BOT_COLUMNS, "TEXT")
                await add_columns(tx.conn, replica_bots, added)
        except BaseException:
            await db.close()
            raise
        return cls(db, SqliteWatcher(path, sql, busy_timeout, poll_interval))

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Transaction]:
        async with self._db.transaction() as db:
            yield _Transaction(db)

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        rows = await self._db.rows(schema.GET, (validate_bot_id(bot_id),))
        return _entry(rows[0]) if rows else None

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the revision, read in one snapshot."""
        async with self._db.transaction("BEGIN") as db:
            rows = await db.rows(schema.LIST)
            revision, _ = await db.one(schema.REVISION)
        return [_entry(row) for row in rows], int(revision)

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        ((revision, _),) = await self._db.rows(schema.REVISION)
        return int(revision)

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed."""
        check_revision("from_revision", from_revision)
        if self._db.closed:
            raise StoreError("the config store is closed")
        return self._watcher.events(from_revision, is_open=lambda: not self._db.closed)

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        cutoff = _cutoff("retention_seconds", retention_seconds)
        async with self._db.transaction() as db:
            _, compacted = await db.one(schema.REVISION)
            (oldest,) = await db.one(q.OLDEST, (cutoff,))
            if oldest is not None and oldest > compacted:
                compacted = oldest
                for statement in schema.COMPACT:
                    await db.rows(statement, (oldest,))
        return int(compacted)

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat (stamped now), replacing its previous bot reports."""
        check_report(report)
        rid = report.replica_id
        async with self._db.transaction() as db:
            await db.rows(q.HEARTBEAT, (rid, report.synced_revision, to_micros(utc_now())))
            await db.rows(schema.CLEAR_BOTS, (rid,))
            await db.many(schema.BOT, bot_rows(report))

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        """Reports of replicas whose heartbeat is younger than ``max_age_seconds``."""
        rows = await self._db.rows(q.REPORTS, (_cutoff("max_age_seconds", max_age_seconds),))
        return group_reports([(r[0], r[1], from_micros(r[2]), *r[3:]) for r in rows])

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        """Delete replicas (and their reports) with an older heartbeat; return how many."""
        cutoff = _cutoff("max_age_seconds", max_age_seconds)
        clear_bots, drop_replicas = q.EXPIRE
        async with self._db.transaction() as db:
            await db.rows(clear_bots, (cutoff,))
            return await db.rowcount(drop_replicas, (cutoff,))

    async def close(self) -> None:
        """Close the connection (after in-flight calls finish); watches end. Idempotent."""
        await self._db.close()
