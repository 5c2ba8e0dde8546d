"""Conversation storage in PostgreSQL (psycopg 3, async, one connection pool per store).

A turn costs one round trip when its conversation's window is cached: ``recent()`` answers from
the store's :class:`~.window.WindowCache` and ``append`` is one statement (autocommit) that
reads the last seq, inserts the messages after it and notifies the table's channel (named like
the table) in the same go. The store listens on that channel over a connection of its own
(:class:`~kubebots.runtime.persistence.listen.Listener`) and drops the windows other writers
changed; without that connection the cache is empty and every ``recent()`` reads.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from ..errors import StorageError
from ..persistence.checks import check_count, check_identifier
from ..persistence.listen import Listener
from ..persistence.owner import Owner
from ..persistence.postgres import (
    Conn,
    Pool,
    PostgresTable,
    add_columns,
    create_missing_tables,
    lock_id,
    open_pool,
)
from .base import ConversationChanged, ConversationKey, Messages, StoredMessage
from .messages import (
    DEFAULT_TABLE,
    calls_json,
    check_key,
    check_messages,
    stored_message,
    to_message,
)
from .queries import COLUMNS, GENERATION_COLUMN, LAST_SEQ, TOOL_COLUMNS, SqlQueries
from .window import DEFAULT_CAPACITY, WindowCache, appended, bot_changed, deleted

#: How often an append is tried when another writer took its sequence numbers first.
APPEND_ATTEMPTS: Final = 10

#: One statement: the last seq, the messages after it (if it is the expected one, when one is
#: given), a notification with the new last seq. Returns (last seq before, new last seq or NULL
#: when nothing was inserted).
_APPEND: Final = (
    f"WITH last(m) AS ({LAST_SEQ}),"
    " added AS ("
    f"INSERT INTO {{t}} (bot_id, client_id, conversation_id, seq, {COLUMNS})"
    " SELECT %s, %s, %s, last.m + o.i, o.role, o.content, %s, o.calls, o.call_id, o.gen"
    " FROM last, unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])"
    " WITH ORDINALITY AS o(role, content, calls, call_id, gen, i)"
    " WHERE %s::integer IS NULL OR last.m = %s::integer"
    " RETURNING seq)"
    " SELECT (SELECT m FROM last), max(seq),"
    " CASE WHEN count(*) > 0 THEN pg_notify(%s, %s::text || max(seq)) END"
    " FROM added"
)
#: A DELETE wrapped to notify when it deleted anything; returns how many rows went.
_DELETE: Final = (
    "WITH gone AS ({delete} RETURNING 1)"
    " SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify(%s, %s) END FROM gone"
)

_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} ("
    ' bot_id text COLLATE "C" NOT NULL, client_id text COLLATE "C" NOT NULL,'
    ' conversation_id text COLLATE "C" NOT NULL, seq integer NOT NULL,'
    " role text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL,"
    " tool_calls text, tool_call_id text, generation bigint,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
#: What a retention's prune deletes by (made with the table; an older table is pruned through
#: the primary key's ``bot_id`` prefix).
_INDEX = "CREATE INDEX IF NOT EXISTS {i} ON {t} (bot_id, created_at)"


class PostgresConversationStore(SqlQueries, PostgresTable[StorageError]):
    """A :class:`~kubebots.runtime.conversations.base.ConversationStore` in a PostgreSQL table.

    Open it with :meth:`open`. An append is one statement; two writers taking the same seq meet
    on the primary key, and the loser is retried (serialised by a transaction-scoped advisory
    lock from its second attempt), or raises :class:`ConversationChanged` when it named the
    position it expected (``after``). Timestamps come back as timezone-aware UTC.
    """

    def __init__(
        self, pool: Pool[StorageError], table: str, *, cache_size: int = DEFAULT_CAPACITY
    ) -> None:
        """Wrap an open pool whose table exists; use :meth:`open` instead. ``start`` listens."""
        super().__init__(pool, table)
        self._cache = WindowCache(cache_size)
        self._listener = Listener(
            pool.connect,
            table,
            on_notify=self._cache.notified,
            on_state=self._cache.live,
            describe=lambda exc: pool.error("conversation store listener", exc).message,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 5,
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 10.0,
        cache_size: int = DEFAULT_CAPACITY,
    ) -> PostgresConversationStore:
        """Connect to ``url``, create the table if missing, open a pool of ``pool_size`` and
        start listening for other writers (the window cache of ``cache_size`` conversations
        is used once the listener is connected; 0 turns the cache and the listener off).

        ``connect_timeout`` (seconds) bounds connecting and waiting for a free pooled connection.
        Errors never quote the URL's user name or password.
        """
        check_identifier("table", table)
        check_count("cache_size", cache_size)
        ddl = sql.SQL(_DDL).format(t=sql.Identifier(table))
        index = sql.SQL(_INDEX).format(
            i=sql.Identifier(f"{table}_created"), t=sql.Identifier(table)
        )

        async def setup(conn: Conn) -> None:
            await create_missing_tables(conn, lock_id(table), [table], [ddl, index])
            # a table made before tool calling lacks the TOOL_COLUMNS, one made before the
            # generation tag its GENERATION_COLUMN
            added = {**dict.fromkeys(TOOL_COLUMNS, "text"), GENERATION_COLUMN: "bigint"}
            await add_columns(conn, lock_id(table), table, added)

        owner = Owner(StorageError, "conversation store", f"kubebots-{table}")
        pool = await open_pool(
            url, owner, setup=setup, pool_size=pool_size, connect_timeout=connect_timeout
        )
        store = cls(pool, table, cache_size=cache_size)
        if cache_size:
            store._listener.start()
        return store

    @property
    def listening(self) -> bool:
        """Whether the store listens for other writers (its window cache is in use)."""
        return self._listener.connected

    async def close(self) -> None:
        """Stop listening, drop the cache and close the pool. Idempotent."""
        await self._listener.close()
        await super().close()

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(self._sql(query), params)).fetchall()

    async def _rowcount(self, query: str, params: Sequence[Any]) -> int:
        async with self._pool.connection() as conn:
            return (await conn.execute(self._sql(query), params)).rowcount

    async def _delete(self, query: str, params: Sequence[Any], scope: ConversationKey | str) -> int:
        origin = self._cache.origin
        if isinstance(scope, ConversationKey):
            payload = deleted(scope, origin)
            forget = functools.partial(self._cache.forget, scope)
        else:
            payload = bot_changed(scope, origin)
            forget = functools.partial(self._cache.forget_bot, scope)
        try:
            rows = await self._fetch(_DELETE.format(delete=query), (*params, self._table, payload))
        finally:
            forget()
        return int(rows[0][0])

    def _message(self, row: Sequence[Any]) -> StoredMessage:
        seq, role, content, created_at, tool_calls, tool_call_id, generation = row
        return to_message(
            seq,
            role,
            content,
            created_at,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            generation=generation,
        )

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation); from
        the window cache when it holds them."""
        check_count("limit", limit)
        key = check_key(key)
        if self._pool.closed:
            raise StorageError("the conversation store is closed")
        cached = self._cache.lookup(key, limit)
        if cached is not None:
            return cached
        with self._cache.read(key) as read:
            messages = await super().recent(key, limit)
            read.fill(key, messages, limit)
        return messages

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count.

        One statement (one round trip). With ``after``, a conversation whose last seq is not
        ``after`` raises :class:`ConversationChanged` and stores nothing.
        """
        key = check_key(key)
        checked = check_messages(messages)
        expected = None if after is None else check_count("after", after)
        if not checked:
            last = int((await self._fetch(LAST_SEQ, key))[0][0])
            if expected is not None and last != expected:
                self._cache.forget(key)
                raise ConversationChanged(expected, last)
            return last
        now = datetime.now(UTC)
        params = (
            *key,
            *key,
            now,
            [m.role for m in checked],
            [m.content for m in checked],
            [calls_json(m.tool_calls) for m in checked],
            [m.tool_call_id for m in checked],
            [m.generation for m in checked],
            expected,
            expected,
            self._table,
            appended(key, self._cache.origin),
        )
        try:
            async with self._pool.connection() as conn:
                last = await self._insert(conn, key, params, expected)
        except BaseException:  # stored or not (a lost connection): the window is in doubt
            self._cache.forget(key)
            raise
        first = last - len(checked) + 1
        self._cache.stored(key, [stored_message(m, first + i, now) for i, m in enumerate(checked)])
        return last

    async def _insert(
        self, conn: Conn, key: ConversationKey, params: Sequence[Any], expected: int | None
    ) -> int:
        """Run :data:`_APPEND` until it stores (retrying a lost race); the new last seq."""
        query = self._sql(_APPEND)
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            lock = lock_id(self._table, *key) if attempt > 1 else None
            try:
                before, last = await self._append_once(conn, query, params, lock)
            except psycopg.errors.UniqueViolation:
                if expected is not None:  # another writer took seq ``expected + 1``
                    raise ConversationChanged(expected, None) from None
                if attempt == APPEND_ATTEMPTS:
                    raise
                await asyncio.sleep(0.005 * attempt)
                continue
            if last is None:  # the statement found another last seq than ``expected``
                raise ConversationChanged(expected or 0, before)
            return last
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _append_once(
        conn: Conn, query: bytes, params: Sequence[Any], lock: int | None
    ) -> tuple[int, int | None]:
        """Run :data:`_APPEND`: alone, or (after a lost race) in a transaction holding the
        advisory ``lock`` of the conversation, which queues the writers that retry."""
        if lock is None:
            row = await (await conn.execute(query, params)).fetchone()
        else:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                row = await (await conn.execute(query, params)).fetchone()
        assert row is not None  # an aggregate returns one row
        return int(row[0]), None if row[1] is None else int(row[1])
