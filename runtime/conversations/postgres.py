"""Conversation storage in PostgreSQL (psycopg 3, async, one connection pool per store)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from ..errors import StorageError
from ..persistence.checks import check_identifier
from ..persistence.owner import Owner
from ..persistence.postgres import (
    Conn,
    PostgresTable,
    create_missing_tables,
    lock_id,
    open_pool,
)
from .base import ConversationKey, MessageRole, Messages, StoredMessage
from .messages import DEFAULT_TABLE, check_key, check_messages, to_message
from .queries import INSERT, LAST_SEQ, SqlQueries, new_rows

#: How often an append is tried when another writer took its sequence numbers first.
APPEND_ATTEMPTS: Final = 5

_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} ("
    ' bot_id text COLLATE "C" NOT NULL, client_id text COLLATE "C" NOT NULL,'
    ' conversation_id text COLLATE "C" NOT NULL, seq integer NOT NULL,'
    " role text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
#: What a retention's prune deletes by (made with the table; an older table is pruned through
#: the primary key's ``bot_id`` prefix).
_INDEX = "CREATE INDEX IF NOT EXISTS {i} ON {t} (bot_id, created_at)"


class PostgresConversationStore(SqlQueries, PostgresTable[StorageError]):
    """A :class:`~kubebots.runtime.conversations.base.ConversationStore` in a PostgreSQL table.

    Open it with :meth:`open`. Appends to one conversation are serialised across processes by a
    transaction-scoped advisory lock; a unique violation (a writer not taking the lock) is
    retried. Timestamps come back as timezone-aware UTC.
    """

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 5,
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 10.0,
    ) -> PostgresConversationStore:
        """Connect to ``url``, create the table if missing and open a pool of ``pool_size``.

        ``connect_timeout`` (seconds) bounds connecting and waiting for a free pooled connection.
        Errors never quote the URL's user name or password.
        """
        check_identifier("table", table)
        ddl = sql.SQL(_DDL).format(t=sql.Identifier(table))
        index = sql.SQL(_INDEX).format(
            i=sql.Identifier(f"{table}_created"), t=sql.Identifier(table)
        )

        async def setup(conn: Conn) -> None:
            await create_missing_tables(conn, lock_id(table), [table], [ddl, index])

        owner = Owner(StorageError, "conversation store", f"kubebots-{table}")
        pool = await open_pool(
            url, owner, setup=setup, pool_size=pool_size, connect_timeout=connect_timeout
        )
        return cls(pool, table)

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        async with self._pool.connection() as conn:
            return await (await conn.execute(self._sql(query), params)).fetchall()

    async def _rowcount(self, query: str, params: Sequence[Any]) -> int:
        async with self._pool.connection() as conn:
            return (await conn.execute(self._sql(query), params)).rowcount

    def _message(self, row: Sequence[Any]) -> StoredMessage:
        return to_message(*row)

    async def append(self, key: ConversationKey, messages: Messages) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count."""
        key = check_key(key)
        checked = check_messages(messages)
        lock = lock_id(self._table, *key)
        async with self._pool.connection() as conn:
            for attempt in range(1, APPEND_ATTEMPTS + 1):
                try:
                    return await self._append_once(conn, lock, key, checked)
                except psycopg.errors.UniqueViolation:
                    if attempt == APPEND_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append_once(
        self, conn: Conn, lock: int, key: ConversationKey, checked: list[tuple[MessageRole, str]]
    ) -> int:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            cur = await conn.execute(self._sql(LAST_SEQ), key)
            last = int((await cur.fetchone() or (0,))[0])
            rows = new_rows(key, last, checked, datetime.now(UTC))
            await conn.cursor().executemany(self._sql(INSERT), rows)
        return last + len(checked)
