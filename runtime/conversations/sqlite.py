"""Conversation storage in a SQLite file (WAL mode, so several processes can share it)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import StorageError
from ._sql import DEFAULT_TABLE, check_count, check_key, check_messages, check_table, to_message
from .base import ConversationKey, MessageRole, StoredMessage

_KEY = "bot_id = ? AND client_id = ? AND conversation_id = ?"
_COLUMNS = "seq, role, content, created_at"
_INSERT = "INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?, ?)"


class SqliteConversationStore:
    """A :class:`~kubebots.runtime.storage.base.ConversationStore` in one SQLite file.

    Open it with :meth:`open`. One connection serves the store; an :class:`asyncio.Lock` keeps
    its transactions from interleaving, and ``busy_timeout`` makes other processes' writers
    wait for each other instead of failing.
    """

    def __init__(self, db: aiosqlite.Connection, table: str) -> None:
        """Wrap an open connection whose schema exists; use :meth:`open` instead."""
        self._db: aiosqlite.Connection | None = db
        self._table = table
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str | Path, *, table: str = DEFAULT_TABLE, busy_timeout: float = 10.0
    ) -> SqliteConversationStore:
        """Open (creating if needed) the database file at ``path``, its directory and schema.

        ``busy_timeout`` is how many seconds a write waits for another connection's write.
        """
        check_table(table)
        try:
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            db = await aiosqlite.connect(str(path), isolation_level=None, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open SQLite database {str(path)!r}: {exc}") from exc
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " bot_id TEXT NOT NULL, client_id TEXT NOT NULL, conversation_id TEXT NOT NULL,"
                " seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
                " created_at TEXT NOT NULL,"
                " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
            )
        except sqlite3.Error as exc:
            await db.close()
            raise StorageError(f"cannot prepare SQLite database {str(path)!r}: {exc}") from exc
        return cls(db, table)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, held exclusively; SQLite errors become :class:`StorageError`."""
        async with self._lock:
            if self._db is None:
                raise StorageError("the conversation store is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite storage failed: {exc}") from exc

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of ``sql`` (``{t}`` stands for the table)."""
        async with self._connection() as db:
            return list(await db.execute_fetchall(sql.format(t=self._table), params))

    async def _fetch_messages(self, sql: str, params: Sequence[Any]) -> list[StoredMessage]:
        rows = await self._fetch(sql, params)
        return [to_message(s, r, c, datetime.fromisoformat(t)) for s, r, c, t in rows]

    async def append(
        self, key: ConversationKey, messages: Sequence[tuple[MessageRole, str]]
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count."""
        key = check_key(key)
        checked = check_messages(messages)
        async with self._connection() as db:
            try:
                await db.execute("BEGIN IMMEDIATE")
                sql = f"SELECT COALESCE(MAX(seq), 0) FROM {{t}} WHERE {_KEY}"
                ((last,),) = await db.execute_fetchall(sql.format(t=self._table), key)
                now = datetime.now(UTC).isoformat()
                rows = [(*key, last + i, r, c, now) for i, (r, c) in enumerate(checked, start=1)]
                await db.executemany(_INSERT.format(t=self._table), rows)
                await db.commit()
            except BaseException:
                await db.rollback()  # runs in the worker thread; a no-op without a transaction
                raise
        return int(last) + len(checked)

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation)."""
        check_count("limit", limit)
        sql = f"SELECT {_COLUMNS} FROM {{t}} WHERE {_KEY} ORDER BY seq DESC LIMIT ?"
        return (await self._fetch_messages(sql, (*check_key(key), limit)))[::-1]

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Messages from position ``offset`` (0-based), oldest first, at most ``limit``."""
        check_count("offset", offset)
        check_count("limit", limit)
        sql = f"SELECT {_COLUMNS} FROM {{t}} WHERE {_KEY} AND seq > ? ORDER BY seq LIMIT ?"
        params = (*check_key(key), offset, -1 if limit is None else limit)
        return await self._fetch_messages(sql, params)

    async def count(self, key: ConversationKey) -> int:
        """How many messages the conversation holds (seqs have no gaps, so the largest seq)."""
        rows = await self._fetch(f"SELECT MAX(seq) FROM {{t}} WHERE {_KEY}", check_key(key))
        return int(rows[0][0] or 0)

    async def exists(self, key: ConversationKey) -> bool:
        """Whether the conversation holds at least one message."""
        return bool(await self._fetch(f"SELECT 1 FROM {{t}} WHERE {_KEY} LIMIT 1", check_key(key)))

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation; True if it existed."""
        return await self._delete(f"DELETE FROM {{t}} WHERE {_KEY}", check_key(key)) > 0

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        """Conversation ids of one client of one bot, sorted."""
        bot_id, client_id, _ = check_key(ConversationKey(bot_id, client_id, ""))
        sql = "SELECT DISTINCT conversation_id FROM {t} WHERE bot_id = ? AND client_id = ?"
        return sorted(row[0] for row in await self._fetch(sql, (bot_id, client_id)))

    async def delete_bot(self, bot_id: str) -> int:
        """Delete every conversation of a bot; return how many messages went."""
        bot_id = check_key(ConversationKey(bot_id, "", "")).bot_id
        return await self._delete("DELETE FROM {t} WHERE bot_id = ?", (bot_id,))

    async def _delete(self, sql: str, params: Sequence[Any]) -> int:
        """How many rows the ``DELETE`` ``sql`` (``{t}`` stands for the table) removed."""
        async with (
            self._connection() as db,
            db.execute(sql.format(t=self._table), params) as cursor,
        ):
            return cursor.rowcount

    async def close(self) -> None:
        """Close the connection (after in-flight calls finish). Idempotent."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()
