"""A PostgreSQL-backed bot is built while its database is down (found by the e2e scenario f: a
replica that had not built the quick start's bot answered 503 to a stateless ``/v1`` turn during
the outage). Stateless turns work; stateful ones fail with a :class:`StorageError` that quotes no
credentials, and succeed once the database is up, without rebuilding the bot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kubebots.runtime import BotContext, BotManager, StorageError
from kubebots.runtime.conversations import (
    DeferredConversationStore,
    open_conversation_store,
)
from kubebots.runtime.llm.base import ChatMessage
from kubebots.runtime.schema import PostgresStorageConfig
from tests.private_postgres import PrivatePostgres

SECRET = "pw-deferred-never-quoted-51c2"
CTX = BotContext(conversation_id="c1", client_id="tenant")


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


async def test_bot_built_during_outage_serves_stateless_then_stateful_once_up(
    pg: PrivatePostgres,
) -> None:
    config = {
        "llm": {"provider": "echo", "model": "echo"},
        "conversationStorage": {"backend": "postgres", "urlEnv": "DB_URL", "poolSize": 1},
    }
    async with BotManager(env={"DB_URL": pg.url(password=SECRET)}) as manager:
        bot = await manager.get_or_create("stored", config)
        done = await bot.complete_messages([ChatMessage("user", "stateless")])
        assert done.content == "echo: stateless"
        with pytest.raises(StorageError) as caught:
            await bot.complete("remember me", CTX)
        assert SECRET not in str(caught.value)
        pg.start()
        # Failed opens are retried at most every second: the next turn after that connects.
        await asyncio.sleep(1.1)
        assert (await bot.complete("remember me", CTX)).content == "echo: remember me"
        assert await manager.get("stored") is bot
        history = await bot.get_history(CTX)
        assert [m.content for m in history] == ["remember me", "echo: remember me"]


@pytest.mark.postgres
async def test_defer_opens_at_once_when_the_database_is_up(postgres_url: str) -> None:
    store = await open_conversation_store(
        PostgresStorageConfig(url=postgres_url), env={}, defer=True
    )
    try:
        assert isinstance(store, DeferredConversationStore)
        assert store.last_error is None
        assert await store.try_open()
    finally:
        await store.close()


async def test_without_defer_an_unreachable_database_is_an_error(pg: PrivatePostgres) -> None:
    with pytest.raises(StorageError) as caught:
        await open_conversation_store(
            PostgresStorageConfig(url_env="DB_URL"), env={"DB_URL": pg.url(password=SECRET)}
        )
    assert SECRET not in str(caught.value)
