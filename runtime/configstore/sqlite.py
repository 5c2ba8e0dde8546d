"""The config store in a SQLite file (WAL mode, so several processes can share it)."""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from ..ids import validate_bot_id
from . import _sqlite as q
from ._reports import bot_rows, check_report, group_reports
from ._sql import (
    DEFAULT_PREFIX,
    check_prefix,
    check_revision,
    check_seconds,
    encode_write,
    from_micros,
    make_entry,
    to_micros,
    utc_now,
)
from .base import ReplicaReport, StoreEntry, StoreError, WatchEvent, is_noop


def _entry(row: Sequence[Any]) -> StoreEntry:
    *head, updated_at = row
    return make_entry((*head, from_micros(updated_at)))


def _cutoff(what: str, seconds: float) -> int:
    """The time (microseconds) at or before which something is ``seconds`` old."""
    return to_micros(utc_now() - timedelta(seconds=check_seconds(what, seconds)))


class SqliteConfigStore:
    """A :class:`~kubebots.runtime.store.base.ConfigStore` in one SQLite file.

    Open it with :meth:`open`. One connection serves reads and writes (an :class:`asyncio.Lock`
    keeps its transactions apart); writes take ``BEGIN IMMEDIATE``, which serializes writers of
    every process on the file, so revisions commit in order. Each watch has a connection of its
    own and looks at the counter every ``poll_interval`` seconds.

    The file runs in WAL mode with ``synchronous = NORMAL``: a commit survives a crash of the
    process; a power loss may lose the last commits (never corrupt the file), and a commit costs
    no fsync.
    """

    def __init__(
        self, db: q.Db, path: Path, prefix: str, poll_interval: float, busy_timeout: float
    ) -> None:
        """Wrap an open connection whose schema exists; use :meth:`open` instead."""
        self._db: q.Db | None = db
        self._connect = partial(q.connect, path, prefix, busy_timeout)
        self._path = path
        self._poll_interval = poll_interval
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        prefix: str = DEFAULT_PREFIX,
        poll_interval: float = 0.02,
        busy_timeout: float = 10.0,
    ) -> SqliteConfigStore:
        """Open (creating if needed) the database at ``path``, its directory and its tables.

        ``poll_interval`` is how often (seconds) a watch looks for new revisions;
        ``busy_timeout`` how long a write waits for another connection's write.
        """
        check_prefix(prefix)
        check_seconds("poll_interval", poll_interval)
        check_seconds("busy_timeout", busy_timeout)
        path = Path(path)
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open SQLite database {str(path)!r}: {exc}") from exc
        db = await q.connect(path, prefix, busy_timeout)
        store = cls(db, path, prefix, poll_interval, busy_timeout)
        try:
            async with store._connection() as conn:
                await conn.rows("PRAGMA journal_mode = WAL")
                await conn.rows("PRAGMA synchronous = NORMAL")
            async with store._transaction() as conn:
                for statement in q.SCHEMA:
                    await conn.rows(statement)
        except BaseException:
            await store.close()
            raise
        return store

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[q.Db]:
        """The connection, held exclusively; SQLite errors become :class:`StoreError`."""
        async with self._lock:
            if self._db is None:
                raise StoreError("the config store is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite config store failed: {exc}") from exc

    @asynccontextmanager
    async def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[q.Db]:
        """A transaction on the connection, committed on success, rolled back on error."""
        async with self._connection() as db:
            await db.rows(begin)
            try:
                yield db
            except BaseException:
                await db.conn.rollback()
                raise
            await db.conn.commit()

    async def _fetch(self, template: str, params: Sequence[Any] = ()) -> Any:
        async with self._connection() as db:
            return await db.rows(template, params)

    async def _write(self, db: q.Db, kind: str, bot_id: str, values: Sequence[Any]) -> int:
        """Bump the counter, then record the write (inside the caller's transaction)."""
        (revision,) = await db.one(q.BUMP)
        now = to_micros(utc_now())
        if kind == "PUT":
            await db.rows(q.UPSERT, (bot_id, *values, revision, now))
        else:
            await db.rows(q.TOMBSTONE, (revision, now, bot_id))
        await db.rows(q.EVENT, (revision, kind, bot_id, *(values or (None,) * 4), now))
        return int(revision)

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
        w = encode_write(bot_id, config, generation, uid, annotations)
        async with self._transaction() as db:
            _, *live_row = await db.one(q.LIVE, (bot_id,))
            live = None if live_row[0] is None else _entry(live_row)
            if live is not None and is_noop(live, w.config, generation, uid, w.annotations):
                return live.revision
            values = (w.config_json, generation, uid, w.annotations_json)
            return await self._write(db, "PUT", bot_id, values)

    async def delete(self, bot_id: str) -> int:
        """Tombstone the bot; return the tombstone's revision (the current one if absent)."""
        validate_bot_id(bot_id)
        async with self._transaction() as db:
            current, live, *_ = await db.one(q.LIVE, (bot_id,))
            if live is None:
                return int(current)
            return await self._write(db, "DELETE", bot_id, ())

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        """Tombstone every live one of ``bot_ids`` in one transaction; the revision after it."""
        for bot_id in bot_ids:
            validate_bot_id(bot_id)
        async with self._transaction() as db:
            current = 0
            for bot_id in bot_ids:
                current, live, *_ = await db.one(q.LIVE, (bot_id,))
                if live is not None:
                    current = await self._write(db, "DELETE", bot_id, ())
            if not bot_ids:
                current, _ = await db.one(q.REVISION)
            return int(current)

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        rows = await self._fetch(q.GET, (validate_bot_id(bot_id),))
        return _entry(rows[0]) if rows else None

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the revision, read in one snapshot."""
        async with self._transaction("BEGIN") as db:
            rows = await db.rows(q.LIST)
            revision, _ = await db.one(q.REVISION)
        return [_entry(row) for row in rows], int(revision)

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        ((revision, _),) = await self._fetch(q.REVISION)
        return int(revision)

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed."""
        check_revision("from_revision", from_revision)
        if self._db is None:
            raise StoreError("the config store is closed")
        return q.watch_events(
            self._connect,
            from_revision,
            poll_interval=self._poll_interval,
            is_open=lambda: self._db is not None,
            path=self._path,
        )

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        cutoff = _cutoff("retention_seconds", retention_seconds)
        async with self._transaction() as db:
            _, compacted = await db.one(q.REVISION)
            (oldest,) = await db.one(q.OLDEST, (cutoff,))
            if oldest is not None and oldest > compacted:
                compacted = oldest
                for statement in q.COMPACT:
                    await db.rows(statement, {"r": oldest})
        return int(compacted)

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat (stamped now), replacing its previous bot reports."""
        check_report(report)
        rid = report.replica_id
        async with self._transaction() as db:
            await db.rows(q.HEARTBEAT, (rid, report.synced_revision, to_micros(utc_now())))
            await db.rows(q.CLEAR_BOTS, (rid,))
            await db.many(q.BOT, bot_rows(report))

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        """Reports of replicas whose heartbeat is younger than ``max_age_seconds``."""
        rows = await self._fetch(q.REPORTS, (_cutoff("max_age_seconds", max_age_seconds),))
        return group_reports([(r[0], r[1], from_micros(r[2]), *r[3:]) for r in rows])

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        """Delete replicas (and their reports) with an older heartbeat; return how many."""
        cutoff = _cutoff("max_age_seconds", max_age_seconds)
        clear_bots, drop_replicas = q.EXPIRE
        async with self._transaction() as db:
            await db.rows(clear_bots, (cutoff,))
            return await db.rowcount(drop_replicas, (cutoff,))

    async def close(self) -> None:
        """Close the connection (after in-flight calls finish); watches end. Idempotent."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.conn.close()
