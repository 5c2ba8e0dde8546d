"""In-process conversation storage: fast, and lost when the process exits."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime

from ..errors import StorageError
from ..persistence.checks import check_count
from .base import ConversationChanged, ConversationKey, Messages, StoredMessage
from .messages import check_aware, check_key, check_messages, stored_message

# bot_id -> client_id -> conversation_id -> messages, by seq (gapless until a prune drops a prefix)
_Conversations = dict[str, dict[str, dict[str, list[StoredMessage]]]]


class MemoryConversationStore:
    """A :class:`~kubebots.runtime.conversations.base.ConversationStore` kept in dictionaries.

    Every method runs without awaiting anything, so each call is atomic with respect to other
    coroutines on the event loop. After :meth:`close` every call raises :class:`StorageError`.
    """

    def __init__(self) -> None:
        self._bots: _Conversations = {}
        self._closed = False

    @classmethod
    async def open(cls) -> MemoryConversationStore:
        """A new, empty store (async for symmetry with the SQL stores)."""
        return cls()

    def _messages(self, key: ConversationKey) -> list[StoredMessage] | None:
        if self._closed:
            raise StorageError("the conversation store is closed")
        bot_id, client_id, conversation_id = check_key(key)
        return self._bots.get(bot_id, {}).get(client_id, {}).get(conversation_id)

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        """Append ``messages`` atomically (all or none) in order; return the new message count.

        With ``after``, a conversation whose last seq is not ``after`` raises
        :class:`ConversationChanged` and stores nothing.
        """
        existing = self._messages(key)
        checked = check_messages(messages)
        last = existing[-1].seq if existing else 0
        if after is not None and check_count("after", after) != last:
            raise ConversationChanged(after, last)
        if not checked:
            return last
        if existing is None:
            clients = self._bots.setdefault(key.bot_id, {})
            existing = clients.setdefault(key.client_id, {}).setdefault(key.conversation_id, [])
        now = datetime.now(UTC)
        existing.extend(stored_message(m, last + i, now) for i, m in enumerate(checked, start=1))
        return existing[-1].seq

    async def recent(self, key: ConversationKey, limit: int) -> list[StoredMessage]:
        """The last ``limit`` messages, oldest first (``[]`` for an unknown conversation)."""
        check_count("limit", limit)
        existing = self._messages(key)
        if not existing or limit == 0:
            return []
        return existing[-limit:]

    async def history(
        self, key: ConversationKey, *, offset: int = 0, limit: int | None = None
    ) -> list[StoredMessage]:
        """Messages from position ``offset`` (0-based), oldest first, at most ``limit``."""
        check_count("offset", offset)
        count = None if limit is None else check_count("limit", limit)
        existing = self._messages(key) or []
        first = bisect.bisect_right(existing, offset, key=lambda m: m.seq)
        return existing[first:] if count is None else existing[first : first + count]

    async def exists(self, key: ConversationKey) -> bool:
        """Whether the conversation holds at least one message."""
        return bool(self._messages(key))

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation; True if it existed."""
        if self._messages(key) is None:
            return False
        clients = self._bots[key.bot_id]
        conversations = clients[key.client_id]
        del conversations[key.conversation_id]
        if not conversations:
            del clients[key.client_id]
        if not clients:
            del self._bots[key.bot_id]
        return True

    async def list_conversations(self, bot_id: str, client_id: str) -> list[str]:
        """Conversation ids of one client of one bot, sorted."""
        self._messages(ConversationKey(bot_id, client_id, ""))  # validates, checks closed
        return sorted(self._bots.get(bot_id, {}).get(client_id, {}))

    async def delete_bot(self, bot_id: str) -> int:
        """Delete every conversation of a bot; return how many messages went."""
        self._messages(ConversationKey(bot_id, "", ""))  # validates, checks closed
        clients = self._bots.pop(bot_id, {})
        return sum(len(m) for convs in clients.values() for m in convs.values())

    async def prune(self, bot_id: str, older_than: datetime) -> int:
        """Delete the bot's messages created before ``older_than``; return how many went."""
        self._messages(ConversationKey(bot_id, "", ""))  # validates, checks closed
        cutoff = check_aware(older_than)
        pruned = 0
        clients = self._bots.get(bot_id, {})
        for client_id, conversations in list(clients.items()):
            for conversation_id, messages in list(conversations.items()):
                old = bisect.bisect_left(messages, cutoff, key=lambda m: m.created_at)
                if old:
                    pruned += old
                    del messages[:old]
                if not messages:
                    del conversations[conversation_id]
            if not conversations:
                del clients[client_id]
        if not clients:
            self._bots.pop(bot_id, None)
        return pruned

    async def close(self) -> None:
        """Mark the store closed (its messages are dropped). Idempotent."""
        self._closed = True
        self._bots = {}
