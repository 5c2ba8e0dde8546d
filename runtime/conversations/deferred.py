"""A conversation store that connects on first use: a bot can be built while its database is down.

A runtime replica builds a bot when it is first asked for it. If that happens during a database
outage (a replica that started, or evicted the bot, while PostgreSQL was away), building must not
fail: the bot still answers stateless turns (``/v1`` without ``X-Conversation-Id``), and its
stateful turns get the open's :class:`StorageError` (a 503, never quoting credentials) until the
database is back, when the next call opens the pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..errors import StorageError
from ._deferred import Deferred
from .base import ConversationKey, ConversationStore, MessageRole, StoredMessage


async def _close(store: ConversationStore) -> None:
    await store.close()


class DeferredConversationStore:
    """A :class:`ConversationStore` around ``open()``, which is awaited on the first call."""

    def __init__(
        self, open: Callable[[], Awaitable[ConversationStore]], *, retry_interval: float = 1.0
    ) -> None:
        self._store = Deferred(
            open, _close, what="conversation store", retry_interval=retry_interval
        )

    @property
    def last_error(self) -> StorageError | None:
        """Why the store could not be opened last time (None once it is open)."""
        return self._store.last_error

    async def try_open(self) -> bool:
        """Open now if possible; ``False`` (the error kept in :attr:`last_error`) if not."""
        try:
            await self._store.get()
        except StorageError:
            return False
        return True

    async def append(
        self, key: ConversationKey, messages: Sequence[tuple[MessageRole, str]]
    ) -> int:
        return await (await self._store.get()).append(key, messages)

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        return await (await self._store.get()).recent(key, limit)

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        return await (await self._store.get()).history(key, offset=offset, limit=limit)

    async def count(self, key: ConversationKey) -> int:
        return await (await self._store.get()).count(key)

    async def exists(self, key: ConversationKey) -> bool:
        return await (await self._store.get()).exists(key)

    async def delete(self, key: ConversationKey) -> bool:
        return await (await self._store.get()).delete(key)

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        return await (await self._store.get()).list_conversations(bot_id, client_id)

    async def delete_bot(self, bot_id: str) -> int:
        return await (await self._store.get()).delete_bot(bot_id)

    async def close(self) -> None:
        await self._store.close()
