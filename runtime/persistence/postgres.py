"""PostgreSQL the one way every kubebots table owner uses it: pools, errors, tables, lock ids.

Connections run in autocommit mode (transactions are explicit). A pooled connection is checked
(one round trip) only when it sat idle longer than :data:`IDLE_CHECK`, or after another connection
of the pool was found broken: a busy pool hands its connections straight to work, and a call on a
connection that broke since costs that call a :class:`StorageError` while the pool discards it
and checks the others. A pool is opened after one
direct connection that runs the owner's ``setup`` (create tables): it fails fast with libpq's
reason, where a pool would retry in the background until its timeout. Driver errors become the
owner's error class (a :class:`~kubebots.runtime.errors.StorageError`) holding the SQLSTATE and
the primary message with every credential of the URL redacted; the driver exception is never
chained, as its text may quote the URL or row values.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypedDict, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import StorageError
from .owner import Owner
from .redaction import redact, url_secrets

Conn = psycopg.AsyncConnection[TupleRow]
E = TypeVar("E", bound=StorageError)


def connect_options(connect_timeout: float) -> dict[str, Any]:
    """Options of every connection: autocommit, and libpq's whole-second connect timeout."""
    return {"autocommit": True, "connect_timeout": max(1, round(connect_timeout))}


def postgres_error(error: type[E], what: str, exc: psycopg.Error, secrets: Sequence[str]) -> E:
    """``error`` for ``exc``: ``PostgreSQL <what> failed [SQLSTATE]: <primary message>``.

    libpq quotes a malformed connection string back, so that error gets a fixed text.
    """
    if what == "connection" and isinstance(exc, psycopg.ProgrammingError) and not exc.sqlstate:
        return error(f"PostgreSQL {what} failed: the connection URL is malformed")
    text = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return error(f"PostgreSQL {what} failed{state}: {redact(text, secrets)}")


def lock_id(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock id for ``parts`` (the same in every process).

    Replicas of different releases share a database, so the encoding (blake2b of the JSON list
    of ``parts``) must never change: two encodings of one lock would not exclude each other.
    """
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def create_missing_tables(
    conn: Conn, lock: int, tables: Sequence[str], ddl: Iterable[sql.Composed]
) -> None:
    """Run ``ddl`` unless every one of ``tables`` exists (so a role with only DML rights can use
    tables made for it), holding the advisory lock ``lock``: ``CREATE ... IF NOT EXISTS`` alone
    races between concurrent openers."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        cur = await conn.execute(
            "SELECT count(to_regclass(t)) FROM unnest(%s::text[]) AS t", (list(tables),)
        )
        found = await cur.fetchone()
        if found is not None and found[0] == len(tables):
            return
        for statement in ddl:
            await conn.execute(statement)


_HAS_COLUMNS = (
    "SELECT count(*) FROM pg_attribute"
    " WHERE attrelid = to_regclass(%s) AND attname = ANY(%s) AND NOT attisdropped"
)
_ADD_COLUMN = "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} "
#: The column types a table may gain (a nullable column of one of these, old rows read NULL).
COLUMN_TYPES = frozenset({"text", "bigint"})


async def add_columns(conn: Conn, lock: int, table: str, columns: Mapping[str, str]) -> None:
    """Give ``table`` (made by an older release) the nullable ``columns`` (name -> type, one of
    :data:`COLUMN_TYPES`) it lacks, holding the advisory lock ``lock``; a table that has them
    all is left alone without taking the lock (so a role with only DML rights can use it)."""
    if not set(columns.values()) <= COLUMN_TYPES:
        raise ValueError(f"a column type must be one of {sorted(COLUMN_TYPES)}")
    async with conn.transaction():
        cur = await conn.execute(_HAS_COLUMNS, (table, list(columns)))
        found = await cur.fetchone()
        if found is not None and found[0] == len(columns):
            return
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        for column, kind in columns.items():
            statement = sql.SQL(_ADD_COLUMN + kind).format(
                t=sql.Identifier(table), c=sql.Identifier(column)
            )
            await conn.execute(statement)


#: How long a call waits for a connection while the pool holds none (the server is unreachable).
OUTAGE_WAIT = 1.0
#: A pooled connection idle longer than this (seconds) is checked before it is handed out.
IDLE_CHECK = 2.0


class IdleCheck:
    """A pool's ``check``: a round trip only for a connection that sat idle in the pool longer
    than ``idle`` seconds (a new one counts from its connect, through :meth:`configure`), or
    one returned before :meth:`distrust`."""

    def __init__(self, idle: float = IDLE_CHECK) -> None:
        self._idle = idle
        self._returned: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()
        self._distrusted = -math.inf

    def returned(self, conn: Conn) -> None:
        """Note that ``conn`` goes back to the pool (or joins it) now."""
        self._returned[conn] = time.monotonic()

    async def configure(self, conn: Conn) -> None:
        """The pool's ``configure``: a new connection counts as just returned."""
        self.returned(conn)

    def distrust(self) -> None:
        """Check every connection returned until now before it is used again (one broke)."""
        self._distrusted = time.monotonic()

    async def __call__(self, conn: Conn) -> None:
        at = self._returned.get(conn)
        if at is None or at <= self._distrusted or time.monotonic() - at > self._idle:
            await AsyncConnectionPool.check_connection(conn)


async def _reachable(url: str, options: dict[str, Any]) -> bool:
    """Whether the server accepts a connection within a second (one direct attempt)."""
    probe = {**options, "connect_timeout": max(1, round(OUTAGE_WAIT))}
    try:
        conn = await psycopg.AsyncConnection.connect(url, **probe)
    except psycopg.Error:
        return False
    await conn.close()
    return True


class Pool(Generic[E]):
    """An open pool of one store: connections whose driver errors become the owner's error.

    A call first waits :data:`OUTAGE_WAIT` for a pooled connection. If none came and one direct
    connection attempt fails too, the server is unreachable (its connections broke and
    reconnecting fails): the call fails then, so during a database outage a request fails
    within about a second (a 503 with ``Retry-After``) instead of hanging for the connect
    timeout, while the pool goes on reconnecting in the background and the first call after
    recovery succeeds. A pool that is merely busy (all its connections in use) is waited for up
    to its own timeout. A connection found broken on use is discarded (psycopg drops a closed
    connection returned to it) and the pool's other connections are checked before their next
    use (:class:`IdleCheck`), so the next call works once the server answers.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        owner: Owner[E],
        url: str,
        options: dict[str, Any],
        idle: IdleCheck | None = None,
    ) -> None:
        """Wrap an open pool of ``url`` whose connections take ``options`` and are checked by
        ``idle`` (if it is the pool's check); use :func:`open_pool` instead."""
        self._pool: AsyncConnectionPool[Conn] | None = pool
        self._idle = idle
        self._owner = owner
        self._url = url
        self._options = options
        self._secrets = url_secrets(url)
        #: why the last checkout failed or a connection broke in use (the server unreachable),
        #: None since a checkout succeeded
        self.problem: str | None = None

    def error(self, what: str, exc: psycopg.Error) -> E:
        """The owner's error for ``exc``, without credentials (see :func:`postgres_error`)."""
        return postgres_error(self._owner.error, what, exc, self._secrets)

    @property
    def closed(self) -> bool:
        return self._pool is None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; psycopg errors become the owner's error."""
        if self._pool is None:
            raise self._owner.closed()
        pool = self._pool
        try:
            conn = await self._checkout(pool)
        except psycopg.Error as exc:
            error = self.error(self._owner.what, exc)
            self.problem = error.message
            raise error from None
        self.problem = None
        try:
            yield conn
        except psycopg.Error as exc:
            error = self.error(self._owner.what, exc)
            if conn.broken:  # the connection died under the call: is the server away?
                if self._idle is not None:
                    self._idle.distrust()
                if not await _reachable(self._url, self._options):
                    self.problem = error.message
            raise error from None
        finally:
            if self._idle is not None:
                self._idle.returned(conn)
            await pool.putconn(conn)

    async def _checkout(self, pool: AsyncConnectionPool[Conn]) -> Conn:
        """A connection, or the pool's timeout error after :data:`OUTAGE_WAIT` if the server
        is unreachable."""
        try:
            return await pool.getconn(timeout=OUTAGE_WAIT)
        except PoolTimeout:
            if not await _reachable(self._url, self._options):
                raise  # the server is away: fail now, the pool reconnects in the background
            return await pool.getconn()  # every connection is busy: wait the pool's timeout

    async def connect(self) -> Conn:
        """A new connection outside the pool, with its options (for a ``LISTEN``); the caller
        closes it. psycopg errors propagate (describe them with :meth:`error`)."""
        if self._pool is None:
            raise self._owner.closed()
        return await psycopg.AsyncConnection.connect(self._url, **self._options)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction (committed unless the block raises)."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def close(self) -> None:
        """Close the pool (connections in use close when returned). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class PostgresTable(Generic[E]):
    """A store kept in one table of a pool; in its queries ``{t}`` stands for the table."""

    def __init__(self, pool: Pool[E], table: str) -> None:
        """Wrap an open pool whose table exists; use the store's ``open`` instead."""
        self._pool = pool
        self._table = table
        self._queries: dict[str, bytes] = {}

    def _sql(self, query: str) -> bytes:
        """``query`` with ``{t}`` naming the table, rendered once per store (psycopg then finds
        it in its own cache of parsed queries, by these bytes, on every later call)."""
        rendered = self._queries.get(query)
        if rendered is None:
            composed = sql.SQL(query).format(t=sql.Identifier(self._table))
            rendered = self._queries[query] = composed.as_bytes(None)
        return rendered

    @property
    def problem(self) -> str | None:
        """Why the store's server could not be reached lately (None: it answers)."""
        return self._pool.problem

    async def close(self) -> None:
        """Close the pool (connections in use close when returned). Idempotent."""
        await self._pool.close()


class PoolOptions(TypedDict, total=False):
    """How a store's pool is sized: ``pool_size`` connections at most (default 5), and
    ``connect_timeout`` seconds to connect or to wait for a pooled connection (default 10)."""

    pool_size: int
    connect_timeout: float


async def open_pool(
    url: str,
    owner: Owner[E],
    *,
    setup: Callable[[Conn], Awaitable[None]],
    pool_size: int = 5,
    connect_timeout: float = 10.0,
    idle_check: float = IDLE_CHECK,
) -> Pool[E]:
    """Run ``setup`` on a direct connection, then open a pool of at most ``pool_size``
    connections (see the module docstring). ``connect_timeout`` (seconds) bounds connecting and
    waiting for a pooled connection; a connection idle longer than ``idle_check`` seconds is
    checked before use."""
    secrets = url_secrets(url)
    options = connect_options(connect_timeout)
    try:
        async with await psycopg.AsyncConnection.connect(url, **options) as conn:
            await setup(conn)
    except psycopg.Error as exc:
        raise postgres_error(owner.error, "connection", exc, secrets) from None
    wait = float(options["connect_timeout"])
    idle = IdleCheck(idle_check)
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url,
        kwargs=options,
        min_size=1,
        max_size=pool_size,
        open=False,
        configure=idle.configure,
        check=idle,
        timeout=wait,
        name=owner.pool_name,
    )
    try:
        await pool.open(wait=True, timeout=wait)
    except BaseException as exc:
        await pool.close()
        if isinstance(exc, psycopg.Error):
            raise postgres_error(owner.error, "connection", exc, secrets) from None
        raise
    return Pool(pool, owner, url, options, idle)
