"""The config store in PostgreSQL (psycopg 3, async: a pool for calls, a connection per watch)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from ..ids import validate_bot_id
from ..persistence.checks import check_seconds, check_text
from ..persistence.owner import Owner
from ..persistence.postgres import Conn, Pool, connect_options, open_pool
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, check_table_prefix
from . import postgres_schema as q
from . import schema
from .base import ReplicaReport, StoreEntry, StoreError, WatchEvent
from .codec import Write, check_revision, make_entry
from .postgres_watch import PgWatcher
from .reports import bot_rows, check_report, group_reports
from .writes import Writes


async def _one(conn: Conn, statement: Any, params: Any = ()) -> TupleRow:
    row = await (await conn.execute(statement, params)).fetchone()
    if row is None:
        raise StoreError("the config store's counter row is missing")
    return row


class _Transaction:
    """A write transaction: reading the live entry locks the counter row (writers take turns);
    a write bumps it, stamps the rows with the database clock and notifies watchers."""

    def __init__(self, conn: Conn, statements: q.Statements) -> None:
        self._conn = conn
        self._sql = statements

    async def live(self, bot_id: str) -> tuple[int, StoreEntry | None]:
        current, *live = await _one(self._conn, self._sql(q.LIVE), (bot_id,))
        return int(current), None if live[0] is None else make_entry(live)

    async def put(self, write: Write) -> int:
        w = write
        params = {
            "bot": w.bot_id,
            "config": w.config_json,
            "generation": w.generation,
            "uid": w.uid,
            "annotations": w.annotations_json,
            "channel": self._sql.channel,
        }
        return int((await _one(self._conn, self._sql(q.PUT), params))[0])

    async def tombstone(self, bot_id: str) -> int:
        params = {"bot": bot_id, "channel": self._sql.channel}
        return int((await _one(self._conn, self._sql(q.DELETE), params))[0])

    async def revision(self) -> int:
        current, _ = await _one(self._conn, self._sql(schema.REVISION))
        return int(current)


class PostgresConfigStore(Writes):
    """A :class:`~kubebots.runtime.configstore.base.ReportingConfigStore` in PostgreSQL tables.

    Open it with :meth:`open`. Writers serialize on the counter row, so revisions commit in
    order; times (``updated_at``, heartbeats, ages) come from the database clock, so replicas
    with skewed clocks agree. Each watch holds a connection of its own (outside the pool) named
    ``watch_application_name`` in ``pg_stat_activity``. Configs are ``jsonb``: numbers come back
    equal but a float written with an exponent (``1e20``) may come back as an int.
    """

    def __init__(
        self, pool: Pool[StoreError], statements: q.Statements, watcher: PgWatcher
    ) -> None:
        """Wrap an open pool whose schema exists; use :meth:`open` instead."""
        self._pool = pool
        self._sql = statements
        self._watcher = watcher

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_TABLE_PREFIX,
        pool_size: int = 5,
        watch_application_name: str = "kubebots-store-watch",
        watch_poll_interval: float = 1.0,
        connect_timeout: float = 10.0,
    ) -> PostgresConfigStore:
        """Connect to ``url``, create the tables if missing and open a pool of ``pool_size``.

        A watch waits for notifications, polling every ``watch_poll_interval`` seconds anyway.
        ``connect_timeout`` (seconds) bounds connecting and waiting for a pooled connection.
        Errors never quote the URL's user name or password.
        """
        statements = q.Statements(check_table_prefix(prefix))
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError("pool_size must be a positive int")
        if len(check_text("watch_application_name", watch_application_name).encode()) > 63:
            raise ValueError("watch_application_name must be at most 63 bytes")
        check_seconds("watch_poll_interval", watch_poll_interval)
        check_seconds("connect_timeout", connect_timeout)
        owner = Owner(StoreError, "config store", f"kubebots-store-{prefix}")
        setup = statements.create_tables
        pool = await open_pool(
            url, owner, setup=setup, pool_size=pool_size, connect_timeout=connect_timeout
        )
        options = {**connect_options(connect_timeout), "application_name": watch_application_name}
        watcher = PgWatcher(
            partial(psycopg.AsyncConnection.connect, url, **options),
            statements,
            poll_interval=watch_poll_interval,
            describe=partial(pool.error, "watch"),
        )
        return cls(pool, statements, watcher)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Transaction]:
        async with self._pool.transaction() as conn:
            yield _Transaction(conn, self._sql)

    async def _fetch(self, template: str, params: Sequence[Any] = ()) -> list[TupleRow]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(self._sql(template), params)).fetchall()

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        rows = await self._fetch(schema.GET, (validate_bot_id(bot_id),))
        return make_entry(rows[0]) if rows else None

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the revision, read in one snapshot."""
        async with self._pool.transaction() as conn:
            await conn.execute(q.SNAPSHOT)
            rows = await (await conn.execute(self._sql(schema.LIST))).fetchall()
            revision, _ = await _one(conn, self._sql(schema.REVISION))
        return [make_entry(row) for row in rows], int(revision)

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        ((revision, _),) = await self._fetch(schema.REVISION)
        return int(revision)

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed.

        The watch reconnects on its own after a lost connection and catches up by revision.
        """
        check_revision("from_revision", from_revision)
        if self._pool.closed:
            raise StoreError("the config store is closed")
        return self._watcher.events(from_revision)

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        retention = check_seconds("retention_seconds", retention_seconds)
        async with self._pool.transaction() as conn:
            (compacted,) = await _one(conn, self._sql(q.LOCK_COMPACTED))
            (oldest,) = await _one(conn, self._sql(q.OLDEST), (retention,))
            if oldest is not None and oldest > compacted:
                compacted = oldest
                for template in schema.COMPACT:
                    await conn.execute(self._sql(template), (oldest,))
        return int(compacted)

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat (database clock), replacing its previous bot reports."""
        check_report(report)
        rid = report.replica_id
        async with self._pool.transaction() as conn:
            await conn.execute(self._sql(q.HEARTBEAT), (rid, report.synced_revision))
            await conn.execute(self._sql(schema.CLEAR_BOTS), (rid,))
            await conn.cursor().executemany(self._sql(schema.BOT), bot_rows(report))

    async def replica_reports(self, *, max_age_seconds: float) -> builtins.list[ReplicaReport]:
        """Reports of replicas whose heartbeat is younger than ``max_age_seconds``."""
        age = check_seconds("max_age_seconds", max_age_seconds)
        return group_reports(await self._fetch(q.REPORTS, (age,)))

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        """Delete replicas (and their reports) with an older heartbeat; return how many."""
        age = check_seconds("max_age_seconds", max_age_seconds)
        ((count,),) = await self._fetch(q.EXPIRE, (age,))
        return int(count)

    async def close(self) -> None:
        """Close the pool and end running watches (with :class:`StoreError`). Idempotent."""
        self._watcher.close()
        await self._pool.close()
