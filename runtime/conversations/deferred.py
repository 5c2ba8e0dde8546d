"""A conversation store that connects on first use: a bot can be built while its database is down.

A runtime replica builds a bot when it is first asked for it. If that happens during a database
outage (a replica that started, or evicted the bot, while PostgreSQL was away), building must not
fail: the bot still answers stateless turns (``/v1`` without ``X-Conversation-Id``), and its
stateful turns get the open's :class:`StorageError` (a 503, never quoting credentials) until the
database is back, when the next call opens the pool.
"""

from __future__ import annotations

from datetime import datetime

from ..persistence.deferred import Deferred
from .base import ConversationKey, ConversationStore, Messages, StoredMessage, store_problem


class DeferredConversationStore(Deferred[ConversationStore]):
    """A :class:`ConversationStore` around ``open()``, which is awaited on the first call."""

    what = "conversation store"

    @property
    def problem(self) -> str | None:
        """Why the database is unreachable: the failed open, or the opened pool's last failure."""
        if self.last_error is not None:
            return self.last_error.message
        return store_problem(self.current) if self.current is not None else None

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        return await (await self.opened()).append(key, messages, after=after)

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        return await (await self.opened()).recent(key, limit)

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        return await (await self.opened()).history(key, offset=offset, limit=limit)

    async def exists(self, key: ConversationKey) -> bool:
        return await (await self.opened()).exists(key)

    async def delete(self, key: ConversationKey) -> bool:
        return await (await self.opened()).delete(key)

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        return await (await self.opened()).list_conversations(bot_id, client_id)

    async def delete_bot(self, bot_id: str) -> int:
        return await (await self.opened()).delete_bot(bot_id)

    async def prune(self, bot_id: str, older_than: datetime) -> int:
        return await (await self.opened()).prune(bot_id, older_than)
