"""Conversation storage: the :class:`ConversationStore` protocol, three backends and a factory.

Each backend is opened with its async ``open`` classmethod; :func:`open_conversation_store`
picks one from a ``conversationStorage`` config. :func:`storage_key` names the physical store a
config points at, so callers can share one store (one SQLite connection, one PostgreSQL pool)
between every bot configured the same way.

An append can name the position it expects to follow (``after``); a store that finds another
last message stores nothing and raises :class:`ConversationChanged`. That is what lets the
PostgreSQL store cache windows: each replica keeps the last messages of up to 10,000 recent
conversations (:mod:`.window`), so a turn whose window is cached costs one round trip (the
append, one statement). Every write notifies a channel named like the table (``pg_notify``
in the same statement; the payload holds a hash of the conversation or bot, never an id, and the
new last seq), each store listens on it over a connection of its own and drops the windows other
writers changed, and while that connection is down the cache is empty and bypassed. A
notification still in flight is caught by ``after``: a bot that sees
:class:`ConversationChanged` reads the conversation afresh and asks its model again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigurationError
from ..persistence.redaction import url_without_password
from ..schema.storage import MemoryStorageConfig, PostgresStorageConfig, SqliteStorageConfig
from .base import (
    ConversationChanged,
    ConversationKey,
    ConversationStore,
    MessageRole,
    Messages,
    NewMessage,
    StoredMessage,
    StoredToolCall,
    store_problem,
)
from .deferred import DeferredConversationStore
from .memory import MemoryConversationStore
from .postgres import PostgresConversationStore
from .sqlite import SqliteConversationStore

__all__ = [
    "ConversationChanged",
    "ConversationKey",
    "ConversationStore",
    "DeferredConversationStore",
    "MemoryConversationStore",
    "MessageRole",
    "Messages",
    "NewMessage",
    "PostgresConversationStore",
    "SqliteConversationStore",
    "StorageConfig",
    "StoredMessage",
    "StoredToolCall",
    "open_conversation_store",
    "storage_key",
    "store_problem",
]

StorageConfig = MemoryStorageConfig | SqliteStorageConfig | PostgresStorageConfig


def storage_key(config: StorageConfig) -> str:
    """A stable name for the physical store ``config`` points at; never holds a password.

    ``"memory"``, ``"sqlite:<absolute real path>"``, ``"postgres:<url without password>"``, or
    ``"postgres-env:<VARIABLE>"`` when the URL comes from an environment variable. Settings
    that do not change the store (``poolSize``) are not part of the key.
    """
    if isinstance(config, MemoryStorageConfig):
        return "memory"
    if isinstance(config, SqliteStorageConfig):
        return f"sqlite:{os.path.realpath(config.path)}"
    if config.url is not None:
        return f"postgres:{url_without_password(config.url)}"
    return f"postgres-env:{config.url_env}"


def _postgres_url(config: PostgresStorageConfig, env: Mapping[str, str]) -> str:
    if config.url is not None:
        return config.url
    name = config.url_env or ""
    url = env.get(name)
    if not url:
        raise ConfigurationError(
            f"conversationStorage.urlEnv: environment variable {name} is not set or empty",
            errors=[("conversationStorage.urlEnv", f"environment variable {name} is not set")],
        )
    return url


async def open_conversation_store(
    config: StorageConfig, *, env: Mapping[str, str], defer: bool = False
) -> ConversationStore:
    """Open the store ``config`` describes (PostgreSQL's ``urlEnv`` is looked up in ``env``).

    Raises :class:`ConfigurationError` for a missing URL variable and
    :class:`~kubebots.runtime.errors.StorageError` when the store cannot be opened. With
    ``defer``, an unreachable PostgreSQL is not an error: the store is returned anyway and
    connects on a later call (:class:`DeferredConversationStore`), so a bot can be built during
    a database outage.
    """
    if isinstance(config, MemoryStorageConfig):
        return await MemoryConversationStore.open()
    if isinstance(config, SqliteStorageConfig):
        return await SqliteConversationStore.open(config.path)
    url = _postgres_url(config, env)
    pool_size = config.pool_size
    if not defer:
        return await PostgresConversationStore.open(url, pool_size=pool_size)

    async def connect() -> ConversationStore:
        return await PostgresConversationStore.open(url, pool_size=pool_size)

    store = DeferredConversationStore(connect)
    await store.try_open()
    return store
