"""A :class:`~kubebots.runtime.ratelimit.base.RateLimiter` shared by replicas through PostgreSQL.

Each call is one transaction that first takes ``pg_advisory_xact_lock`` on its
``(table, scope, client_id)``, then reads ``clock_timestamp()``: calls for one key are totally
ordered and stamped by the database's clock alone, so replicas with skewed clocks agree and no
window of ``window_seconds`` ever admits more than ``limit`` (an exact sliding log). Rows of the
key that left the window are deleted in the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..errors import StorageError
from ..storage._pool import open_pool
from ..storage._sql import check_table, redact, url_secrets
from .base import Decision, check_args, decide

_Conn = psycopg.AsyncConnection[TupleRow]

_DDL = (
    'CREATE TABLE IF NOT EXISTS {t} (scope text COLLATE "C" NOT NULL,'
    ' client_id text COLLATE "C" NOT NULL, at timestamptz NOT NULL, cost bigint NOT NULL);'
    " CREATE INDEX IF NOT EXISTS {i} ON {t} (scope, client_id, at)"
)
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_NOW = "SELECT clock_timestamp()"  # read after the lock: stamps follow the lock order
_PRUNE = "DELETE FROM {t} WHERE scope = %s AND client_id = %s AND at <= %s"
_LIVE = "SELECT at, cost FROM {t} WHERE scope = %s AND client_id = %s AND at > %s ORDER BY at"
_INSERT = "INSERT INTO {t} (scope, client_id, at, cost) VALUES (%s, %s, %s, %s)"


def _error(what: str, exc: psycopg.Error, secrets: Sequence[str]) -> StorageError:
    """A :class:`StorageError` for ``exc`` without credentials (libpq may quote a bad URL)."""
    if what == "connection" and isinstance(exc, psycopg.ProgrammingError) and not exc.sqlstate:
        return StorageError(f"PostgreSQL {what} failed: the connection URL is malformed")
    text = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return StorageError(f"PostgreSQL {what} failed{state}: {redact(text, secrets)}")


class PostgresRateLimiter:
    """Sliding logs in the table ``<prefix>ratelimit``; open it with :meth:`open`."""

    def __init__(self, pool: AsyncConnectionPool[_Conn], table: str, secrets: list[str]) -> None:
        """Wrap an open pool whose table exists; use :meth:`open` instead."""
        self._pool: AsyncConnectionPool[_Conn] | None = pool
        self._table = table
        self._secrets = secrets

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = "kubebots_",
        pool_size: int = 5,
        connect_timeout: float = 10.0,
    ) -> PostgresRateLimiter:
        """Connect to ``url``, create the table and index if missing, open a pool.

        ``connect_timeout`` (seconds) bounds connecting and waiting for a pooled connection.
        Errors are :class:`StorageError`s that never quote the URL's user name or password.
        """
        table, index = check_table(f"{prefix}ratelimit"), check_table(f"{prefix}ratelimit_key")
        secrets = url_secrets(url)
        options: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        ddl = sql.SQL(_DDL).format(t=sql.Identifier(table), i=sql.Identifier(index))

        async def setup(conn: _Conn) -> None:
            async with conn.transaction():
                await conn.execute(_LOCK, (f"ddl:{table}",))  # IF NOT EXISTS alone races
                await conn.execute(ddl)

        pool = await open_pool(
            url,
            options=options,
            size=pool_size,
            name=f"kubebots-{table}",
            setup=setup,
            error=lambda exc: _error("connection", exc, secrets),
        )
        return cls(pool, table, secrets)

    @asynccontextmanager
    async def _locked(
        self, scope: str, client_id: str, window_seconds: float
    ) -> AsyncIterator[tuple[_Conn, datetime]]:
        """A transaction holding the key's lock, its database time, the key's old rows pruned."""
        if self._pool is None:
            raise StorageError("the rate limiter is closed")
        try:
            async with self._pool.connection() as conn, conn.transaction():
                key = f"{self._table}:{scope}:{client_id}"
                await conn.execute(_LOCK, (key,))
                row = await (await conn.execute(_NOW)).fetchone()
                if row is None or not isinstance(row[0], datetime):
                    raise StorageError("PostgreSQL returned no clock_timestamp()")
                now = row[0]
                cutoff = now - timedelta(seconds=window_seconds)
                await conn.execute(self._sql(_PRUNE), (scope, client_id, cutoff))
                yield conn, now
        except psycopg.Error as exc:
            raise _error("rate limiting", exc, self._secrets) from exc

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(t=sql.Identifier(self._table))

    async def acquire(
        self,
        client_id: str,
        *,
        limit: int,
        cost: int = 1,
        window_seconds: float = 60.0,
        scope: str = "requests",
    ) -> Decision:
        """Admit and record ``cost`` iff ``used + max(cost, 1) <= limit`` (see ``base``)."""
        check_args(client_id, scope, window_seconds, cost=cost, limit=limit)
        async with self._locked(scope, client_id, window_seconds) as (conn, now):
            cutoff = now - timedelta(seconds=window_seconds)
            cur = await conn.execute(self._sql(_LIVE), (scope, client_id, cutoff))
            rows = await cur.fetchall()
            decision = decide(
                (((now - at).total_seconds(), int(c)) for at, c in rows),
                limit=limit,
                cost=cost,
                window_seconds=window_seconds,
            )
            if decision.allowed and cost > 0:
                await conn.execute(self._sql(_INSERT), (scope, client_id, now, cost))
        return decision

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        """Record ``cost`` now without checking any limit."""
        check_args(client_id, scope, window_seconds, cost=cost)
        async with self._locked(scope, client_id, window_seconds) as (conn, now):
            if cost > 0:
                await conn.execute(self._sql(_INSERT), (scope, client_id, now, cost))

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
