"""The reads and deletes both SQL conversation stores run: one query text, two drivers.

Queries name the table ``{t}`` and take ``%s`` placeholders; the SQLite store runs them with
``?``. Each store supplies how a query runs and how a fetched row becomes a message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ..persistence.checks import check_count
from .base import ConversationKey, NewMessage, StoredMessage
from .messages import calls_json, check_aware, check_key

_KEY: Final = "bot_id = %s AND client_id = %s AND conversation_id = %s"
#: What a message row holds besides its key and seq (tool_calls: :func:`.messages.calls_json`;
#: generation: the Bot generation that produced the message, NULL when not recorded).
COLUMNS: Final = "role, content, created_at, tool_calls, tool_call_id, generation"
_MESSAGES: Final = f"SELECT seq, {COLUMNS} FROM {{t}} WHERE {_KEY}"
#: The last ``limit`` messages, newest first.
RECENT: Final = f"{_MESSAGES} ORDER BY seq DESC LIMIT %s"
#: The last seq of a conversation (0 for a new one); an append takes the next ones.
LAST_SEQ: Final = f"SELECT COALESCE(MAX(seq), 0) FROM {{t}} WHERE {_KEY}"
INSERT: Final = (
    f"INSERT INTO {{t}} (bot_id, client_id, conversation_id, seq, {COLUMNS})"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
#: The columns tool calling added: a table made before them gets them when a store opens it.
TOOL_COLUMNS: Final = ("tool_calls", "tool_call_id")
#: The (integer) column the generation tag added; a table made before it gets it likewise.
GENERATION_COLUMN: Final = "generation"


def new_rows(
    key: ConversationKey, last: int, messages: list[NewMessage], now: object
) -> list[tuple[object, ...]]:
    """The :data:`INSERT` rows of ``messages`` appended after seq ``last``, stamped ``now``."""
    return [
        (
            *key,
            last + i,
            m.role,
            m.content,
            now,
            calls_json(m.tool_calls),
            m.tool_call_id,
            m.generation,
        )
        for i, m in enumerate(messages, start=1)
    ]


class SqlQueries(ABC):
    """Every :class:`~kubebots.runtime.conversations.base.ConversationStore` method but
    ``append`` and ``close``, over :meth:`_fetch` and :meth:`_rowcount`."""

    @abstractmethod
    async def _fetch(self, query: str, params: Sequence[Any]) -> list[Any]:
        """The rows ``query`` returns."""

    @abstractmethod
    async def _rowcount(self, query: str, params: Sequence[Any]) -> int:
        """How many rows the data-changing ``query`` touched."""

    @abstractmethod
    def _message(self, row: Sequence[Any]) -> StoredMessage:
        """A fetched ``(seq, role, content, created_at, tool_calls, tool_call_id, generation)``
        row as a message."""

    async def _delete(self, query: str, params: Sequence[Any], scope: ConversationKey | str) -> int:
        """Run the DELETE ``query`` of one conversation (``scope``: its key) or across a bot
        (``scope``: its id); how many rows went."""
        return await self._rowcount(query, params)

    def _timestamp(self, at: datetime) -> object:
        """``at`` as the driver compares it with ``created_at`` (PostgreSQL: as is)."""
        return at

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation)."""
        check_count("limit", limit)
        rows = await self._fetch(RECENT, (*check_key(key), limit))
        return [self._message(row) for row in reversed(rows)]

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Messages from position ``offset`` (0-based), oldest first, at most ``limit``."""
        query = f"{_MESSAGES} AND seq > %s ORDER BY seq"
        params: tuple[object, ...] = (*check_key(key), check_count("offset", offset))
        if limit is not None:
            query, params = f"{query} LIMIT %s", (*params, check_count("limit", limit))
        return [self._message(row) for row in await self._fetch(query, params)]

    async def exists(self, key: ConversationKey) -> bool:
        """Whether the conversation holds at least one message."""
        return bool(await self._fetch(f"SELECT 1 FROM {{t}} WHERE {_KEY} LIMIT 1", check_key(key)))

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation; True if it existed."""
        key = check_key(key)
        return await self._delete(f"DELETE FROM {{t}} WHERE {_KEY}", key, key) > 0

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        """Conversation ids of one client of one bot, sorted."""
        bot_id, client_id, _ = check_key(ConversationKey(bot_id, client_id, ""))
        query = "SELECT DISTINCT conversation_id FROM {t} WHERE bot_id = %s AND client_id = %s"
        return sorted(str(row[0]) for row in await self._fetch(query, (bot_id, client_id)))

    async def delete_bot(self, bot_id: str) -> int:
        """Delete every conversation of a bot; return how many messages went."""
        bot_id = check_key(ConversationKey(bot_id, "", "")).bot_id
        return await self._delete("DELETE FROM {t} WHERE bot_id = %s", (bot_id,), bot_id)

    async def prune(self, bot_id: str, older_than: datetime) -> int:
        """Delete the bot's messages created before ``older_than``; return how many went (one
        DELETE on the ``(bot_id, created_at)`` index)."""
        bot_id = check_key(ConversationKey(bot_id, "", "")).bot_id
        cutoff = self._timestamp(check_aware(older_than))
        query = "DELETE FROM {t} WHERE bot_id = %s AND created_at < %s"
        return await self._delete(query, (bot_id, cutoff), bot_id)
