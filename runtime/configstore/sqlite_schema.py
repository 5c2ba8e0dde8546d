"""The SQLite schema and statements of the config store (``{p}`` stands for the table prefix).

Times are integer microseconds since the epoch (UTC), so SQL compares them exactly; configs and
annotations are JSON text.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import aiosqlite

from ._sql import WATCH_BATCH, from_micros, make_event
from .base import ResyncRequired, StoreError, WatchEvent

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS {p}meta (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " revision INTEGER NOT NULL, compacted INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO {p}meta VALUES (1, 0, 0)",
    "CREATE TABLE IF NOT EXISTS {p}state (bot_id TEXT PRIMARY KEY, config TEXT NOT NULL,"
    " generation INTEGER NOT NULL, uid TEXT NOT NULL, annotations TEXT NOT NULL,"
    " revision INTEGER NOT NULL, updated_at INTEGER NOT NULL, deleted INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}events (revision INTEGER PRIMARY KEY, type TEXT NOT NULL,"
    " bot_id TEXT NOT NULL, config TEXT, generation INTEGER, uid TEXT, annotations TEXT,"
    " created_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {p}events_at ON {p}events (created_at)",
    "CREATE TABLE IF NOT EXISTS {p}replicas (replica_id TEXT PRIMARY KEY,"
    " synced_revision INTEGER NOT NULL, heartbeat_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}replica_bots (replica_id TEXT NOT NULL, bot_id TEXT NOT NULL,"
    " generation INTEGER, revision INTEGER, error TEXT, error_revision INTEGER,"
    " PRIMARY KEY (replica_id, bot_id))",
)

ENTRY: Final = "bot_id, config, generation, uid, annotations, revision, updated_at"
GET: Final = f"SELECT {ENTRY} FROM {{p}}state WHERE bot_id = ? AND deleted = 0"
LIST: Final = f"SELECT {ENTRY} FROM {{p}}state WHERE deleted = 0 ORDER BY bot_id"
REVISION: Final = "SELECT revision, compacted FROM {p}meta WHERE id = 1"
# The counter and the live entry of one bot, read inside the writer's transaction.
LIVE: Final = (
    "SELECT m.revision, s.bot_id, s.config, s.generation, s.uid, s.annotations, s.revision,"
    " s.updated_at FROM {p}meta AS m LEFT JOIN {p}state AS s ON s.bot_id = ? AND s.deleted = 0"
    " WHERE m.id = 1"
)
BUMP: Final = "UPDATE {p}meta SET revision = revision + 1 WHERE id = 1 RETURNING revision"
UPSERT: Final = (
    "INSERT INTO {p}state VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (bot_id) DO UPDATE SET"
    " config = excluded.config, generation = excluded.generation, uid = excluded.uid,"
    " annotations = excluded.annotations, revision = excluded.revision,"
    " updated_at = excluded.updated_at, deleted = 0"
)
TOMBSTONE: Final = "UPDATE {p}state SET deleted = 1, revision = ?, updated_at = ? WHERE bot_id = ?"
EVENT: Final = "INSERT INTO {p}events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# One statement, one snapshot: the compacted revision and the next batch of events.
EVENTS: Final = (
    "SELECT m.compacted, e.revision, e.type, e.bot_id, e.config, e.generation, e.uid,"
    " e.annotations, e.created_at FROM {p}meta AS m LEFT JOIN (SELECT * FROM {p}events"
    " WHERE revision > ? ORDER BY revision LIMIT ?) AS e ON 1 WHERE m.id = 1 ORDER BY e.revision"
)
OLDEST: Final = "SELECT MAX(revision) FROM {p}events WHERE created_at <= ?"
COMPACT: Final = (
    "DELETE FROM {p}events WHERE revision <= :r",
    "DELETE FROM {p}state WHERE deleted = 1 AND revision <= :r",
    "UPDATE {p}meta SET compacted = :r WHERE id = 1",
)
HEARTBEAT: Final = (
    "INSERT INTO {p}replicas VALUES (?, ?, ?) ON CONFLICT (replica_id) DO UPDATE SET"
    " synced_revision = excluded.synced_revision, heartbeat_at = excluded.heartbeat_at"
)
CLEAR_BOTS: Final = "DELETE FROM {p}replica_bots WHERE replica_id = ?"
BOT: Final = "INSERT INTO {p}replica_bots VALUES (?, ?, ?, ?, ?, ?)"
REPORTS: Final = (
    "SELECT r.replica_id, r.synced_revision, r.heartbeat_at, b.bot_id, b.generation, b.revision,"
    " b.error, b.error_revision FROM {p}replicas AS r LEFT JOIN {p}replica_bots AS b"
    " ON b.replica_id = r.replica_id WHERE r.heartbeat_at > ? ORDER BY r.replica_id, b.bot_id"
)
EXPIRE: Final = (
    "DELETE FROM {p}replica_bots WHERE replica_id IN"
    " (SELECT replica_id FROM {p}replicas WHERE heartbeat_at <= ?)",
    "DELETE FROM {p}replicas WHERE heartbeat_at <= ?",
)


class Db:
    """A connection and the table prefix: runs statement templates, SQLite errors unwrapped."""

    def __init__(self, conn: aiosqlite.Connection, prefix: str) -> None:
        self.conn = conn
        self._prefix = prefix

    async def rows(self, template: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """Every row ``template`` returns (a list of tuples)."""
        return list(await self.conn.execute_fetchall(template.format(p=self._prefix), params))

    async def one(self, template: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """The one row ``template`` returns."""
        (row,) = await self.rows(template, params)
        return row

    async def rowcount(self, template: str, params: Sequence[Any]) -> int:
        """How many rows the data-changing ``template`` touched."""
        async with self.conn.execute(template.format(p=self._prefix), params) as cursor:
            return cursor.rowcount

    async def many(self, template: str, params: Iterable[Sequence[Any]]) -> None:
        """Run ``template`` once per parameter tuple."""
        await self.conn.executemany(template.format(p=self._prefix), params)


async def connect(path: Path, prefix: str, busy_timeout: float) -> Db:
    """A connection in autocommit mode (transactions are explicit) that waits for locks."""
    try:
        conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {str(path)!r}: {exc}") from exc
    try:
        await conn.execute_fetchall(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    except sqlite3.Error as exc:
        await conn.close()
        raise StoreError(f"cannot prepare SQLite database {str(path)!r}: {exc}") from exc
    return Db(conn, prefix)


#: a watch queries the counter at least this often even when the files look unchanged
FORCED_LOOK_S: Final = 1.0


def file_signature(path: Path) -> tuple[int, ...]:
    """(mtime_ns, size) of the database and its WAL: a commit changes one of them.

    A stat is a syscall on the event loop (~µs); the counter query it saves is two thread hops
    through aiosqlite (~1 ms of a loaded loop). Missing files read as zeros.
    """
    out: list[int] = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = p.stat()
        except OSError:
            out += [0, 0]
        else:
            out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


async def watch_events(
    connect: Callable[[], Awaitable[Db]],
    cursor: int,
    *,
    poll_interval: float,
    is_open: Callable[[], bool],
    path: Path | None = None,
) -> AsyncIterator[WatchEvent]:
    """Events after ``cursor`` on a connection of their own: a look at the counter every
    ``poll_interval`` seconds, a batch query when it moved. Ends with :class:`StoreError` once
    ``is_open()`` turns false.

    With ``path``, a look is skipped while the files' :func:`file_signature` is unchanged since
    the last look, but never for longer than :data:`FORCED_LOOK_S` (a timestamp's granularity
    could hide a commit that rewrote the WAL at the same size)."""
    db = await connect()
    loop = asyncio.get_running_loop()
    seen: tuple[int, ...] | None = None
    looked = 0.0
    try:
        while True:
            if not is_open():
                raise StoreError("the config store is closed")
            if path is not None:
                signature = file_signature(path)
                if signature == seen and loop.time() - looked < FORCED_LOOK_S:
                    await asyncio.sleep(poll_interval)
                    continue
                seen, looked = signature, loop.time()
            try:
                revision, compacted = await db.one(REVISION)
                if cursor < compacted:
                    raise ResyncRequired(cursor, compacted)
                if revision <= cursor:
                    await asyncio.sleep(poll_interval)
                    continue
                rows = await db.rows(EVENTS, (cursor, WATCH_BATCH))
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite config store watch failed: {exc}") from exc
            compacted = rows[0][0]
            if cursor < compacted:  # compacted since the look at the counter
                raise ResyncRequired(cursor, compacted)
            for _, *event, created_at in rows:
                if event[0] is not None:
                    yield make_event((*event, from_micros(created_at)))
                    cursor = event[0]
    finally:
        await db.conn.close()
