"""The config store in PostgreSQL (psycopg 3, async: a pool for calls, a connection per watch)."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..ids import validate_bot_id
from ..storage._sql import check_text, url_secrets
from . import _pg as q
from ._pg_watch import PgWatcher
from ._reports import bot_rows, check_report, group_reports
from ._sql import (
    DEFAULT_PREFIX,
    check_prefix,
    check_revision,
    check_seconds,
    encode_write,
    make_entry,
)
from .base import ReplicaReport, StoreEntry, StoreError, WatchEvent, is_noop


class PostgresConfigStore:
    """A :class:`~kubebots.runtime.store.base.ConfigStore` in PostgreSQL tables.

    Open it with :meth:`open`. Writers serialize on the counter row, so revisions commit in
    order; times (``updated_at``, heartbeats, ages) come from the database clock, so replicas
    with skewed clocks agree. Each watch holds a connection of its own (outside the pool) named
    ``watch_application_name`` in ``pg_stat_activity``. Configs are ``jsonb``: numbers come back
    equal but a float written with an exponent (``1e20``) may come back as an int.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[q.Conn],
        statements: q.Statements,
        watcher: PgWatcher,
        closing: asyncio.Event,
        secrets: list[str],
    ) -> None:
        """Wrap an open pool whose schema exists; use :meth:`open` instead."""
        self._pool: AsyncConnectionPool[q.Conn] | None = pool
        self._sql = statements
        self._watcher = watcher
        self._closing = closing
        self._secrets = secrets

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
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
        statements = q.Statements(check_prefix(prefix))
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError("pool_size must be a positive int")
        if len(check_text("watch_application_name", watch_application_name).encode()) > 63:
            raise ValueError("watch_application_name must be at most 63 bytes")
        check_seconds("watch_poll_interval", watch_poll_interval)
        check_seconds("connect_timeout", connect_timeout)
        secrets = url_secrets(url)
        options = q.connect_options(connect_timeout)
        pool = await q.open_pool(url, statements, options, pool_size, secrets)
        watch_options = {**options, "application_name": watch_application_name}
        closing = asyncio.Event()
        watcher = PgWatcher(
            partial(psycopg.AsyncConnection.connect, url, **watch_options),
            statements,
            poll_interval=watch_poll_interval,
            closing=closing,
            describe=lambda exc: q.error("watch", exc, secrets),
        )
        return cls(pool, statements, watcher, closing, secrets)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[q.Conn]:
        """A pooled connection; psycopg errors become :class:`StoreError`."""
        if self._pool is None:
            raise StoreError("the config store is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise q.error("config store", exc, self._secrets) from None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[q.Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _fetch(self, template: str, params: Sequence[Any] = ()) -> list[TupleRow]:
        async with self._connection() as conn:
            return await (await conn.execute(self._sql(template), params)).fetchall()

    async def _one(self, conn: q.Conn, template: str, params: Any = ()) -> TupleRow:
        row = await (await conn.execute(self._sql(template), params)).fetchone()
        if row is None:
            raise StoreError("the config store's counter row is missing")
        return row

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
        async with self._transaction() as conn:
            _, *live_row = await self._one(conn, q.LIVE, (bot_id,))
            live = None if live_row[0] is None else make_entry(live_row)
            if live is not None and is_noop(live, w.config, generation, uid, w.annotations):
                return live.revision
            params = {
                "bot": bot_id,
                "config": w.config_json,
                "generation": generation,
                "uid": uid,
                "annotations": w.annotations_json,
                "channel": self._sql.channel,
            }
            return int((await self._one(conn, q.PUT, params))[0])

    async def delete(self, bot_id: str) -> int:
        """Tombstone the bot; return the tombstone's revision (the current one if absent)."""
        validate_bot_id(bot_id)
        async with self._transaction() as conn:
            current, live, *_ = await self._one(conn, q.LIVE, (bot_id,))
            if live is None:
                return int(current)
            params = {"bot": bot_id, "channel": self._sql.channel}
            return int((await self._one(conn, q.DELETE, params))[0])

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        """Tombstone every live one of ``bot_ids`` in one transaction (one commit, one lock of
        the counter row); return the revision after it."""
        for bot_id in bot_ids:
            validate_bot_id(bot_id)
        async with self._transaction() as conn:
            current = 0
            for bot_id in bot_ids:
                current, live, *_ = await self._one(conn, q.LIVE, (bot_id,))
                if live is not None:
                    params = {"bot": bot_id, "channel": self._sql.channel}
                    current = (await self._one(conn, q.DELETE, params))[0]
            if not bot_ids:
                current, _ = await self._one(conn, q.REVISION)
            return int(current)

    async def get(self, bot_id: str) -> StoreEntry | None:
        """The live entry of ``bot_id``, or None (absent or deleted)."""
        rows = await self._fetch(q.GET, (validate_bot_id(bot_id),))
        return make_entry(rows[0]) if rows else None

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the revision, read in one snapshot."""
        async with self._transaction() as conn:
            await conn.execute(q.SNAPSHOT)
            rows = await (await conn.execute(self._sql(q.LIST))).fetchall()
            revision, _ = await self._one(conn, q.REVISION)
        return [make_entry(row) for row in rows], int(revision)

    async def current_revision(self) -> int:
        """The revision of the latest write (0 before the first)."""
        ((revision, _),) = await self._fetch(q.REVISION)
        return int(revision)

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, until cancelled or closed.

        The watch reconnects on its own after a lost connection and catches up by revision.
        """
        check_revision("from_revision", from_revision)
        if self._pool is None:
            raise StoreError("the config store is closed")
        return self._watcher.events(from_revision)

    async def compact(self, retention_seconds: float) -> int:
        """Forget events and tombstones older than the window; return the compacted revision."""
        retention = check_seconds("retention_seconds", retention_seconds)
        async with self._transaction() as conn:
            (compacted,) = await self._one(conn, q.LOCK_COMPACTED)
            (oldest,) = await self._one(conn, q.OLDEST, (retention,))
            if oldest is not None and oldest > compacted:
                compacted = oldest
                for template in q.COMPACT:
                    await conn.execute(self._sql(template), (oldest,))
        return int(compacted)

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat (database clock), replacing its previous bot reports."""
        check_report(report)
        rid = report.replica_id
        async with self._transaction() as conn:
            await conn.execute(self._sql(q.HEARTBEAT), (rid, report.synced_revision))
            await conn.execute(self._sql(q.CLEAR_BOTS), (rid,))
            await conn.cursor().executemany(self._sql(q.BOT), bot_rows(report))

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
        self._closing.set()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
