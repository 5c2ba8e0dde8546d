"""Helpers for the storage tests."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from kubebots.runtime.conversations import ConversationKey, ConversationStore

#: Opens one more store on the same location (same SQLite file, same PostgreSQL table).
StoreFactory = Callable[[], Awaitable[ConversationStore]]


def new_key(bot_id: str | None = None, client_id: str | None = None) -> ConversationKey:
    """A key no other test (or test run) uses."""
    return ConversationKey(
        bot_id or f"bot-{uuid.uuid4().hex}", client_id or f"client-{uuid.uuid4().hex}", "conv"
    )
