"""The config store's SQLite statements (the tables, and what PostgreSQL runs alike, are
:mod:`.schema`'s), and the connections that run them with the tables of one prefix.

Times are integer microseconds since the epoch (UTC), so SQL compares them exactly; configs and
annotations are JSON text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import aiosqlite

from ..persistence.sqlite import SharedConnection
from . import schema
from .base import StoreError

BUMP: Final = "UPDATE {meta} SET revision = revision + 1 WHERE id = 1 RETURNING revision"
UPSERT: Final = (
    "INSERT INTO {state} VALUES (%s, %s, %s, %s, %s, %s, %s, 0) ON CONFLICT (bot_id)"
    " DO UPDATE SET config = excluded.config, generation = excluded.generation,"
    " uid = excluded.uid, annotations = excluded.annotations, revision = excluded.revision,"
    " updated_at = excluded.updated_at, deleted = 0"
)
TOMBSTONE: Final = (
    "UPDATE {state} SET deleted = 1, revision = %s, updated_at = %s WHERE bot_id = %s"
)
EVENT: Final = "INSERT INTO {events} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
# One statement, one snapshot: the compacted revision and the next batch of events.
EVENTS: Final = (
    "SELECT m.compacted, e.revision, e.type, e.bot_id, e.config, e.generation, e.uid,"
    " e.annotations, e.created_at FROM {meta} AS m LEFT JOIN (SELECT * FROM {events}"
    " WHERE revision > %s ORDER BY revision LIMIT %s) AS e ON 1 WHERE m.id = 1"
    " ORDER BY e.revision"
)
OLDEST: Final = "SELECT MAX(revision) FROM {events} WHERE created_at <= %s"
HEARTBEAT: Final = (
    "INSERT INTO {replicas} VALUES (%s, %s, %s) ON CONFLICT (replica_id) DO UPDATE SET"
    " synced_revision = excluded.synced_revision, heartbeat_at = excluded.heartbeat_at"
)
REPORTS: Final = (
    "SELECT r.replica_id, r.synced_revision, r.heartbeat_at, b.bot_id, b.generation,"
    " b.revision, b.error, b.error_revision, b.served_by, b.reason, b.tools, b.rollout"
    " FROM {replicas} AS r LEFT JOIN {replica_bots} AS b"
    " ON b.replica_id = r.replica_id WHERE r.heartbeat_at > %s ORDER BY r.replica_id, b.bot_id"
)
EXPIRE: Final = (
    "DELETE FROM {replica_bots} WHERE replica_id IN"
    " (SELECT replica_id FROM {replicas} WHERE heartbeat_at <= %s)",
    "DELETE FROM {replicas} WHERE heartbeat_at <= %s",
)

_TYPES: Final = {
    "key": "TEXT",
    "text": "TEXT",
    "json": "TEXT",
    "int": "INTEGER",
    "time": "INTEGER",
    "bool": "INTEGER",
}


class Statements:
    """Templates (these and :mod:`.schema`'s) bound to the tables of one prefix."""

    def __init__(self, prefix: str) -> None:
        self._names = {t: prefix + t for t in (*schema.TABLES, "events_at")} | _TYPES
        self._bound: dict[str, str] = {}

    def table(self, name: str) -> str:
        """The name of the table ``name`` (one of :data:`.schema.TABLES`) with its prefix."""
        return self._names[name]

    def __call__(self, template: str) -> str:
        """``template`` with its table names filled in and ``?`` placeholders."""
        bound = self._bound.get(template)
        if bound is None:
            bound = self._bound[template] = template.format(**self._names).replace("%s", "?")
        return bound


class Db:
    """A connection running statement templates with the tables of one prefix."""

    def __init__(self, conn: aiosqlite.Connection, sql: Statements) -> None:
        self.conn = conn
        self._sql = sql

    async def rows(self, template: str, params: Sequence[Any] = ()) -> Any:
        """Every row ``template`` returns (a list of tuples)."""
        return list(await self.conn.execute_fetchall(self._sql(template), params))

    async def one(self, template: str, params: Sequence[Any] = ()) -> Any:
        """The one row ``template`` returns."""
        (row,) = await self.rows(template, params)
        return row

    async def rowcount(self, template: str, params: Sequence[Any]) -> int:
        """How many rows the data-changing ``template`` touched."""
        async with self.conn.execute(self._sql(template), params) as cursor:
            return cursor.rowcount

    async def many(self, template: str, params: Iterable[Sequence[Any]]) -> None:
        """Run ``template`` once per parameter tuple."""
        await self.conn.executemany(self._sql(template), params)


class SharedDb:
    """The store's one connection (shared by its calls, one at a time) as a :class:`Db`."""

    def __init__(self, conn: SharedConnection[StoreError], sql: Statements) -> None:
        self._conn = conn
        self._sql = sql

    @property
    def closed(self) -> bool:
        return self._conn.closed

    @asynccontextmanager
    async def transaction(self, begin: str = "BEGIN IMMEDIATE") -> AsyncIterator[Db]:
        async with self._conn.transaction(begin) as conn:
            yield Db(conn, self._sql)

    async def rows(self, template: str, params: Sequence[Any] = ()) -> Any:
        """Every row ``template`` returns, outside a transaction."""
        async with self._conn.hold() as conn:
            return await Db(conn, self._sql).rows(template, params)

    async def close(self) -> None:
        await self._conn.close()
