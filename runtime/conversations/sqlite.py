"""Conversation storage in a SQLite file (WAL mode, so several processes can share it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..persistence.checks import check_count, check_identifier
from ..persistence.owner import Owner
from ..persistence.sqlite import SharedConnection, add_columns, open_sqlite
from .base import ConversationChanged, ConversationKey, Messages, StoredMessage
from .messages import DEFAULT_TABLE, check_key, check_messages, to_message
from .queries import GENERATION_COLUMN, INSERT, LAST_SEQ, TOOL_COLUMNS, SqlQueries, new_rows

_OWNER = Owner(StorageError, "conversation store")
_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} ("
    " bot_id TEXT NOT NULL, client_id TEXT NOT NULL, conversation_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
    " created_at TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT, generation INTEGER,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
#: What a retention's prune deletes by (created through ``open``, existing files included).
_INDEX = "CREATE INDEX IF NOT EXISTS {t}_created ON {t} (bot_id, created_at)"


class SqliteConversationStore(SqlQueries):
    """A :class:`~kubebots.runtime.conversations.base.ConversationStore` in one SQLite file.

    Open it with :meth:`open`. One connection serves the store, one call at a time, and
    ``busy_timeout`` makes other processes' writers wait for each other instead of failing.
    Times are ISO 8601 text.
    """

    def __init__(self, conn: SharedConnection[StorageError], table: str) -> None:
        """Wrap an open connection whose schema exists; use :meth:`open` instead."""
        self._conn = conn
        self._table = table

    @classmethod
    async def open(
        cls, path: str | Path, *, table: str = DEFAULT_TABLE, busy_timeout: float = 10.0
    ) -> SqliteConversationStore:
        """Open (creating if needed) the database file at ``path``, its directory and schema.

        ``busy_timeout`` is how many seconds a write waits for another connection's write.
        """
        check_identifier("table", table)
        prepare = ("PRAGMA journal_mode = WAL", _DDL.format(t=table), _INDEX.format(t=table))
        conn = await open_sqlite(Path(path), _OWNER, busy_timeout=busy_timeout, prepare=prepare)
        store = cls(SharedConnection(conn, _OWNER), table)
        try:
            await store._add_columns()
        except BaseException:
            await store.close()
            raise
        return store

    async def _add_columns(self) -> None:
        """Give a table made by an older release the columns added since: tool calling's
        :data:`TOOL_COLUMNS` and the :data:`GENERATION_COLUMN` (in one write transaction, so
        processes opening the file at once add them once; old rows read NULL)."""
        added = {**dict.fromkeys(TOOL_COLUMNS, "TEXT"), GENERATION_COLUMN: "INTEGER"}
        async with self._conn.transaction() as conn:
            await add_columns(conn, self._table, added)

    def _sql(self, query: str) -> str:
        return query.format(t=self._table).replace("%s", "?")

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        async with self._conn.hold() as conn:
            return list(await conn.execute_fetchall(self._sql(query), params))

    async def _rowcount(self, query: str, params: Sequence[Any]) -> int:
        async with self._conn.hold() as conn, conn.execute(self._sql(query), params) as cursor:
            return cursor.rowcount

    def _message(self, row: Sequence[Any]) -> StoredMessage:
        seq, role, content, created_at, tool_calls, tool_call_id, generation = row
        created = datetime.fromisoformat(created_at)
        return to_message(
            seq,
            role,
            content,
            created,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            generation=generation,
        )

    def _timestamp(self, at: datetime) -> object:
        # Stored times are UTC ``isoformat()`` text, which sorts as the times do.
        return at.isoformat()

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count.

        With ``after``, a conversation whose last seq is not ``after`` raises
        :class:`ConversationChanged` and stores nothing (checked inside the write transaction).
        """
        key = check_key(key)
        checked = check_messages(messages)
        expected = None if after is None else check_count("after", after)
        async with self._conn.transaction() as conn:
            ((last,),) = await conn.execute_fetchall(self._sql(LAST_SEQ), key)
            if expected is not None and int(last) != expected:
                raise ConversationChanged(expected, int(last))
            rows = new_rows(key, last, checked, datetime.now(UTC).isoformat())
            await conn.executemany(self._sql(INSERT), rows)
        return int(last) + len(checked)

    async def close(self) -> None:
        """Close the connection (after in-flight calls finish). Idempotent."""
        await self._conn.close()
