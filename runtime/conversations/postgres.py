"""Conversation storage in PostgreSQL (psycopg 3, async, one connection pool per store)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..errors import StorageError
from ._pool import open_pool
from ._sql import (
    DEFAULT_TABLE,
    check_count,
    check_key,
    check_messages,
    check_table,
    redact,
    to_message,
    url_secrets,
)
from .base import ConversationKey, MessageRole, StoredMessage

_Conn = psycopg.AsyncConnection[TupleRow]

#: How often an append is tried when another writer took its sequence numbers first.
APPEND_ATTEMPTS: Final = 5

_KEY = "bot_id = %s AND client_id = %s AND conversation_id = %s"
_COLUMNS = "seq, role, content, created_at"
_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} ("
    ' bot_id text COLLATE "C" NOT NULL, client_id text COLLATE "C" NOT NULL,'
    ' conversation_id text COLLATE "C" NOT NULL, seq integer NOT NULL,'
    " role text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)


def _lock_id(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock id for ``parts`` (the same in every process)."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _error(what: str, exc: psycopg.Error, secrets: Sequence[str]) -> StorageError:
    """A :class:`StorageError` for ``exc`` that holds no credentials and no row values.

    libpq quotes malformed connection strings back, so their errors get a fixed text.
    """
    if what == "connection" and isinstance(exc, psycopg.ProgrammingError) and not exc.sqlstate:
        return StorageError(f"PostgreSQL {what} failed: the connection URL is malformed")
    text = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return StorageError(f"PostgreSQL {what} failed{state}: {redact(text, secrets)}")


async def _ensure_table(conn: _Conn, table: str) -> None:
    """Create ``table`` unless it exists (a role with only DML rights can use a made table).

    An advisory lock serialises concurrent openers: ``CREATE TABLE IF NOT EXISTS`` alone races.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(table),))
        found = await (await conn.execute("SELECT to_regclass(%s)", (table,))).fetchone()
        if found is None or found[0] is None:
            await conn.execute(sql.SQL(_DDL).format(t=sql.Identifier(table)))


class PostgresConversationStore:
    """A :class:`~kubebots.runtime.storage.base.ConversationStore` in a PostgreSQL table.

    Open it with :meth:`open`. Appends to one conversation are serialised across processes by a
    transaction-scoped advisory lock; a unique violation (a writer not taking the lock) is
    retried. Timestamps come back as timezone-aware UTC.
    """

    def __init__(self, pool: AsyncConnectionPool[_Conn], table: str, secrets: list[str]) -> None:
        """Wrap an open pool whose schema exists; use :meth:`open` instead."""
        self._pool: AsyncConnectionPool[_Conn] | None = pool
        self._table = table
        self._secrets = secrets

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
        check_table(table)
        secrets = url_secrets(url)
        options: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
        }

        async def setup(conn: _Conn) -> None:
            await _ensure_table(conn, table)

        pool = await open_pool(
            url,
            options=options,
            size=pool_size,
            name=f"kubebots-{table}",
            setup=setup,
            error=lambda exc: _error("connection", exc, secrets),
        )
        return cls(pool, table, secrets)

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(t=sql.Identifier(self._table))

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Conn]:
        """A pooled connection; psycopg errors become :class:`StorageError`."""
        if self._pool is None:
            raise StorageError("the conversation store is closed")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise _error("storage", exc, self._secrets) from exc

    async def _fetch(self, template: str, params: Sequence[Any]) -> list[TupleRow]:
        async with self._connection() as conn:
            return await (await conn.execute(self._sql(template), params)).fetchall()

    async def _rowcount(self, template: str, params: Sequence[Any]) -> int:
        async with self._connection() as conn:
            return (await conn.execute(self._sql(template), params)).rowcount

    async def append(
        self, key: ConversationKey, messages: Sequence[tuple[MessageRole, str]]
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count."""
        key = check_key(key)
        checked = check_messages(messages)
        lock = _lock_id(self._table, *key)
        async with self._connection() as conn:
            for attempt in range(1, APPEND_ATTEMPTS + 1):
                try:
                    return await self._append_once(conn, lock, key, checked)
                except psycopg.errors.UniqueViolation:
                    if attempt == APPEND_ATTEMPTS:
                        raise
                    await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append_once(
        self, conn: _Conn, lock: int, key: ConversationKey, checked: list[tuple[MessageRole, str]]
    ) -> int:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            cur = await conn.execute(
                self._sql(f"SELECT COALESCE(MAX(seq), 0) FROM {{t}} WHERE {_KEY}"), key
            )
            last = int((await cur.fetchone() or (0,))[0])
            now = datetime.now(UTC)
            rows = [(*key, last + i, r, c, now) for i, (r, c) in enumerate(checked, start=1)]
            insert = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s)"
            await conn.cursor().executemany(self._sql(insert), rows)
        return last + len(checked)

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation)."""
        check_count("limit", limit)
        query = f"SELECT {_COLUMNS} FROM {{t}} WHERE {_KEY} ORDER BY seq DESC LIMIT %s"
        rows = await self._fetch(query, (*check_key(key), limit))
        return [to_message(*row) for row in reversed(rows)]

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Messages from position ``offset`` (0-based), oldest first, at most ``limit``."""
        check_count("offset", offset)
        check_count("limit", limit)
        query = f"SELECT {_COLUMNS} FROM {{t}} WHERE {_KEY} AND seq > %s ORDER BY seq LIMIT %s"
        rows = await self._fetch(query, (*check_key(key), offset, limit))
        return [to_message(*row) for row in rows]

    async def count(self, key: ConversationKey) -> int:
        """How many messages the conversation holds (seqs have no gaps, so the largest seq)."""
        rows = await self._fetch(f"SELECT MAX(seq) FROM {{t}} WHERE {_KEY}", check_key(key))
        return int(rows[0][0] or 0)

    async def exists(self, key: ConversationKey) -> bool:
        """Whether the conversation holds at least one message."""
        return bool(await self._fetch(f"SELECT 1 FROM {{t}} WHERE {_KEY} LIMIT 1", check_key(key)))

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation; True if it existed."""
        return await self._rowcount(f"DELETE FROM {{t}} WHERE {_KEY}", check_key(key)) > 0

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        """Conversation ids of one client of one bot, sorted."""
        bot_id, client_id, _ = check_key(ConversationKey(bot_id, client_id, ""))
        query = "SELECT DISTINCT conversation_id FROM {t} WHERE bot_id = %s AND client_id = %s"
        return sorted(str(row[0]) for row in await self._fetch(query, (bot_id, client_id)))

    async def delete_bot(self, bot_id: str) -> int:
        """Delete every conversation of a bot; return how many messages went."""
        bot_id = check_key(ConversationKey(bot_id, "", "")).bot_id
        return await self._rowcount("DELETE FROM {t} WHERE bot_id = %s", (bot_id,))

    async def close(self) -> None:
        """Close the pool (connections in use close when returned). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
