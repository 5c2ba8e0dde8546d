"""A :class:`~kubebots.runtime.ratelimit.base.RateLimiter` shared by replicas through PostgreSQL.

Each call is one transaction that first takes ``pg_advisory_xact_lock`` on its
``(table, scope, client_id)``, then reads ``clock_timestamp()``: calls for one key are totally
ordered and stamped by the database's clock alone, so replicas with skewed clocks agree and no
window of ``window_seconds`` ever admits more than ``limit`` (an exact sliding log). Rows of the
key that left the window are deleted in the same transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Unpack

from psycopg import sql

from ..errors import RateLimitStorageError
from ..persistence.owner import Owner
from ..persistence.postgres import Conn, PoolOptions, PostgresTable, open_pool
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, check_table_prefix
from .base import RateLimiter

_DDL = (
    'CREATE TABLE IF NOT EXISTS {t} (scope text COLLATE "C" NOT NULL,'
    ' client_id text COLLATE "C" NOT NULL, at timestamptz NOT NULL, cost bigint NOT NULL);'
    " CREATE INDEX IF NOT EXISTS {i} ON {t} (scope, client_id, at)"
)
# The lock id is PostgreSQL's hash of a text key: replicas of every release must keep using it.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_NOW = "SELECT clock_timestamp()"  # read after the lock: stamps follow the lock order
_PRUNE = "DELETE FROM {t} WHERE scope = %s AND client_id = %s AND at <= %s"
_LIVE = "SELECT at, cost FROM {t} WHERE scope = %s AND client_id = %s AND at > %s ORDER BY at"
_INSERT = "INSERT INTO {t} (scope, client_id, at, cost) VALUES (%s, %s, %s, %s)"


@dataclass(frozen=True, slots=True)
class _Log:
    """One key's rows inside the transaction holding its lock, at the database time ``now``."""

    conn: Conn
    sql: Callable[[str], sql.Composed]  # the limiter's queries, bound to its table
    key: tuple[str, str]  # (scope, client_id)
    now: datetime
    cutoff: datetime  # rows at or before it left the window

    async def ages(self) -> list[tuple[float, int]]:
        cur = await self.conn.execute(self.sql(_LIVE), (*self.key, self.cutoff))
        return [((self.now - at).total_seconds(), int(cost)) for at, cost in await cur.fetchall()]

    async def add(self, cost: int) -> None:
        await self.conn.execute(self.sql(_INSERT), (*self.key, self.now, cost))


class PostgresRateLimiter(PostgresTable[RateLimitStorageError], RateLimiter):
    """Sliding logs in the table ``<prefix>ratelimit``; open it with :meth:`open`."""

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = DEFAULT_TABLE_PREFIX, **pool: Unpack[PoolOptions]
    ) -> PostgresRateLimiter:
        """Connect to ``url``, create the table and index if missing, open a pool.

        ``pool`` sizes the pool and bounds connecting and waiting (:class:`PoolOptions`).
        Errors are :class:`RateLimitStorageError`s that never quote the URL's user name or password.
        """
        table = f"{check_table_prefix(prefix)}ratelimit"
        index = f"{table}_key"
        ddl = sql.SQL(_DDL).format(t=sql.Identifier(table), i=sql.Identifier(index))

        async def setup(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(_LOCK, (f"ddl:{table}",))  # IF NOT EXISTS alone races
                await conn.execute(ddl)

        owner = Owner(RateLimitStorageError, "rate limiter", f"kubebots-{table}")
        return cls(await open_pool(url, owner, setup=setup, **pool), table)

    @asynccontextmanager
    async def _window(
        self, scope: str, client_id: str, window_seconds: float
    ) -> AsyncIterator[_Log]:
        """A transaction holding the key's lock, its database time, the key's old rows pruned."""
        async with self._pool.transaction() as conn:
            await conn.execute(_LOCK, (f"{self._table}:{scope}:{client_id}",))
            row = await (await conn.execute(_NOW)).fetchone()
            if row is None or not isinstance(row[0], datetime):
                raise RateLimitStorageError("PostgreSQL returned no clock_timestamp()")
            now = row[0]
            cutoff = now - timedelta(seconds=window_seconds)
            await conn.execute(self._sql(_PRUNE), (scope, client_id, cutoff))
            yield _Log(conn, self._sql, (scope, client_id), now, cutoff)
