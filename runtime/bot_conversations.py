"""A bot's conversations as its clients read them: with the built bot, or from its store alone.

Listing, reading or deleting a conversation needs the bot's conversation store, never its LLM
client. :class:`BotConversations` is what those calls need. A built :class:`~.bot.DynaBot` has
it (its deletes wait for a turn in progress on the same conversation);
:class:`StoredConversations` gives it from the store alone, for a bot that is not built.
"""

from __future__ import annotations

from typing import Protocol

from .context import BotContext
from .conversations import ConversationKey, ConversationStore, StoredMessage


class BotConversations(Protocol):
    """One bot's conversations, each keyed by (bot, client, conversation id)."""

    async def list_conversations(self, client_id: str) -> list[str]: ...

    async def conversation_exists(self, context: BotContext) -> bool: ...

    async def get_history(
        self, context: BotContext, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]: ...

    async def delete_conversation(self, context: BotContext) -> bool: ...


class StoredConversations:
    """:class:`BotConversations` of ``bot_id`` straight from its conversation store."""

    __slots__ = ("_store", "bot_id")

    def __init__(self, bot_id: str, store: ConversationStore) -> None:
        self.bot_id = bot_id
        self._store = store

    async def list_conversations(self, client_id: str) -> list[str]:
        return await self._store.list_conversations(self.bot_id, client_id)

    async def conversation_exists(self, context: BotContext) -> bool:
        return await self._store.exists(self._key(context))

    async def get_history(
        self, context: BotContext, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        return await self._store.history(self._key(context), offset=offset, limit=limit)

    async def delete_conversation(self, context: BotContext) -> bool:
        return await self._store.delete(self._key(context))

    def _key(self, context: BotContext) -> ConversationKey:
        return ConversationKey(self.bot_id, context.client_id, context.conversation_id)
