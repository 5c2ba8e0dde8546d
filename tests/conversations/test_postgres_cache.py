"""The PostgreSQL store's window cache on the real server (issue 15.5): a warm turn costs one
round trip, replicas see each other's turns through NOTIFY, a stale window is caught by
``after``, and a lost listener leaves nothing stale behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import pytest

from kubebots.runtime import BotContext, DynaBot, StorageError
from kubebots.runtime.conversations import (
    ConversationChanged,
    ConversationKey,
    MessageRole,
    PostgresConversationStore,
)
from kubebots.runtime.llm.base import ChatMessage, Completion, Delta, Settings, UsageSink
from kubebots.runtime.llm.echo import EchoProvider
from kubebots.runtime.schema import parse_bot_config
from tests.private_postgres import PrivatePostgres

from .proxy import CountingProxy
from .util import new_key

pytestmark = pytest.mark.postgres

T = TypeVar("T")
WINDOW = 20


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (for 15 s at most) until it holds."""
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def retried(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` once the database answers again (for 30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await call()
        except StorageError:
            assert time.monotonic() < deadline, "the database never answered again"
            await asyncio.sleep(0.1)


def pair(text: str) -> list[tuple[MessageRole, str]]:
    return [("user", text), ("assistant", f"echo: {text}")]


def bot_on(store: PostgresConversationStore, bot_id: str) -> DynaBot:
    config = parse_bot_config({"llm": {"provider": "echo"}, "memory": {"maxMessages": WINDOW}})
    return DynaBot(bot_id, config, llm=EchoProvider(), storage=store)


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[CountingProxy]:
    async with CountingProxy(postgres_url) as counting:
        yield counting


async def open_listening(url: str, table: str, **options: int) -> PostgresConversationStore:
    store = await PostgresConversationStore.open(url, table=table, **options)
    await until(lambda: store.listening, "the store to listen")
    return store


async def test_a_warm_turn_takes_one_round_trip_and_a_cold_one_two(
    proxy: CountingProxy, pg_table: str
) -> None:
    store = await open_listening(proxy.url, pg_table, pool_size=2)
    bot = bot_on(store, f"bot-{uuid.uuid4().hex[:12]}")
    try:
        # Warm up: psycopg prepares a statement on its 5th run (one extra round trip, once).
        for i in range(6):
            for turn in range(2):
                await bot.complete(f"warm-up {turn}", BotContext(f"warm-{i}", "tenant"))
        context = BotContext("measured", "tenant")

        proxy.reset()
        await bot.complete("first", context)  # cold: the window is read, then the append
        assert proxy.round_trips == 2

        for text in ("second", "third"):
            proxy.reset()
            await bot.complete(text, context)  # warm: the append alone
            assert proxy.round_trips == 1

        proxy.reset()
        stream = [d async for d in bot.stream_chat("streamed", context)]
        assert "".join(stream) == "echo: streamed"
        assert proxy.round_trips == 1

        history = await bot.get_history(context)
        assert [m.content for m in history][-2:] == ["streamed", "echo: streamed"]
        assert [m.seq for m in history] == list(range(1, 9))
    finally:
        await bot.close()
        await store.close()


async def test_a_store_without_its_listener_reads_every_time(
    proxy: CountingProxy, pg_table: str
) -> None:
    store = await PostgresConversationStore.open(proxy.url, table=pg_table, cache_size=0)
    key = new_key()
    try:
        await store.append(key, pair("hi"))
        assert not store.listening
        proxy.reset()
        assert len(await store.recent(key, 10)) == 2
        assert len(await store.recent(key, 10)) == 2
        assert proxy.round_trips == 2
    finally:
        await store.close()


async def test_a_turn_stored_by_one_replica_is_seen_by_the_other(
    postgres_url: str, proxy: CountingProxy, pg_table: str
) -> None:
    first = await open_listening(postgres_url, pg_table)
    second = await open_listening(proxy.url, pg_table)
    key = new_key()
    try:
        await first.append(key, pair("one"))
        assert [m.content for m in await second.recent(key, WINDOW)] == ["one", "echo: one"]
        # A read the append's notification overtook is not cached; the next one is.
        assert len(await second.recent(key, WINDOW)) == 2
        proxy.reset()
        assert len(await second.recent(key, WINDOW)) == 2
        assert proxy.round_trips == 0  # cached

        await first.append(key, pair("two"), after=2)

        async def seen() -> list[str]:
            return [m.content for m in await second.recent(key, WINDOW)]

        deadline = time.monotonic() + 15
        while len(await seen()) != 4:  # the notification drops the window: read afresh
            assert time.monotonic() < deadline, "the second replica never saw the turn"
            await asyncio.sleep(0.01)
        assert await seen() == ["one", "echo: one", "two", "echo: two"]

        await first.delete(key)
        deadline = time.monotonic() + 15
        while await seen():
            assert time.monotonic() < deadline, "the second replica never saw the delete"
            await asyncio.sleep(0.01)
    finally:
        await first.close()
        await second.close()


async def test_a_stale_window_is_caught_by_after(postgres_url: str, pg_table: str) -> None:
    first = await open_listening(postgres_url, pg_table)
    second = await open_listening(postgres_url, pg_table)
    key = new_key()
    try:
        await first.append(key, pair("one"))
        stale = await second.recent(key, WINDOW)
        await first.append(key, pair("two"), after=2)
        # Whether or not the notification has arrived yet: the append checks the database.
        with pytest.raises(ConversationChanged):
            await second.append(key, pair("late"), after=stale[-1].seq)
        fresh = await second.recent(key, WINDOW)  # the store forgot its window
        assert [m.seq for m in fresh] == [1, 2, 3, 4]
        assert await second.append(key, pair("late"), after=4) == 6
    finally:
        await first.close()
        await second.close()


class OtherReplicaWrites:
    """An LLM provider (a real implementation of the protocol) that, while it answers, lets
    another replica store turns on the same conversation: the race a cache meets in production."""

    def __init__(self, other: DynaBot, context: BotContext, turns: list[str]) -> None:
        self._echo = EchoProvider()
        self._other = other
        self._context = context
        self._turns = list(turns)
        self.prompts: list[list[str]] = []

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        self.prompts.append([m.content for m in messages])
        if self._turns:
            await self._other.complete(self._turns.pop(0), self._context)
        return await self._echo.complete(messages, settings=settings)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        self.prompts.append([m.content for m in messages])
        if self._turns:
            await self._other.complete(self._turns.pop(0), self._context)
        async for delta in self._echo.stream(messages, settings=settings, on_usage=on_usage):
            yield delta

    async def close(self) -> None:
        await self._echo.close()


@pytest.fixture
async def replicas(
    postgres_url: str, pg_table: str
) -> AsyncIterator[tuple[PostgresConversationStore, PostgresConversationStore]]:
    first = await open_listening(postgres_url, pg_table)
    second = await open_listening(postgres_url, pg_table)
    yield first, second
    await first.close()
    await second.close()


async def test_a_bot_answers_again_when_another_replica_stored_a_turn_meanwhile(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    first, second = replicas
    bot_id = f"bot-{uuid.uuid4().hex[:12]}"
    context = BotContext("shared", "tenant")
    other = bot_on(first, bot_id)
    await other.complete("zero", context)
    provider = OtherReplicaWrites(other, context, ["one"])
    config = parse_bot_config({"llm": {"provider": "echo"}, "memory": {"maxMessages": WINDOW}})
    bot = DynaBot(bot_id, config, llm=provider, storage=second)
    try:
        assert len(await second.recent(ConversationKey(bot_id, "tenant", "shared"), 5)) == 2
        completion = await bot.complete("mine", context)
        assert completion.content == "echo: mine"
        # The first answer saw a window without "one"; the one stored saw it.
        assert provider.prompts == [
            ["zero", "echo: zero", "mine"],
            ["zero", "echo: zero", "one", "echo: one", "mine"],
        ]
        assert completion.usage is not None
        history = [m.content for m in await bot.get_history(context)]
        assert history == ["zero", "echo: zero", "one", "echo: one", "mine", "echo: mine"]
    finally:
        await bot.close()
        await other.close()


async def test_a_second_conflict_stores_the_answer_after_whatever_is_there(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    first, second = replicas
    bot_id = f"bot-{uuid.uuid4().hex[:12]}"
    context = BotContext("shared", "tenant")
    other = bot_on(first, bot_id)
    provider = OtherReplicaWrites(other, context, ["one", "two"])
    config = parse_bot_config({"llm": {"provider": "echo"}})
    bot = DynaBot(bot_id, config, llm=provider, storage=second)
    try:
        assert (await bot.complete("mine", context)).content == "echo: mine"
        assert len(provider.prompts) == 2  # asked again once, not twice
        history = [m.content for m in await bot.get_history(context)]
        assert history == ["one", "echo: one", "two", "echo: two", "mine", "echo: mine"]
    finally:
        await bot.close()
        await other.close()


async def test_a_stream_is_stored_after_a_turn_stored_meanwhile(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    first, second = replicas
    bot_id = f"bot-{uuid.uuid4().hex[:12]}"
    context = BotContext("shared", "tenant")
    other = bot_on(first, bot_id)
    provider = OtherReplicaWrites(other, context, ["one"])
    config = parse_bot_config({"llm": {"provider": "echo"}})
    bot = DynaBot(bot_id, config, llm=provider, storage=second)
    try:
        deltas = [d async for d in bot.stream_chat("mine", context)]
        assert "".join(deltas) == "echo: mine"
        assert len(provider.prompts) == 1  # a reply already sent is never asked again
        history = [m.content for m in await bot.get_history(context)]
        assert history == ["one", "echo: one", "mine", "echo: mine"]
    finally:
        await bot.close()
        await other.close()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        server.start()
        yield server


async def test_a_lost_listener_leaves_no_stale_window(private_pg: PrivatePostgres) -> None:
    url = private_pg.url()
    cached = await open_listening(url, "kubebots_messages", pool_size=2)
    writer = await PostgresConversationStore.open(url, pool_size=1, cache_size=0)
    key = ConversationKey("bot", "client", "c1")
    try:
        await cached.append(key, pair("before"))
        assert len(await cached.recent(key, WINDOW)) == 2  # cached now

        private_pg.stop()
        await until(lambda: not cached.listening, "the listener to notice the outage")
        with pytest.raises(StorageError):  # never the cached window: the database is away
            await cached.recent(key, WINDOW)

        private_pg.start()
        # Another replica stores a turn as soon as it can: maybe before ``cached`` listens again.
        await retried(lambda: writer.append(key, pair("during"), after=2))
        window = await retried(lambda: cached.recent(key, WINDOW))
        assert [m.content for m in window] == ["before", "echo: before", "during", "echo: during"]

        await until(lambda: cached.listening, "the listener to reconnect")
        await cached.recent(key, WINDOW)
        await writer.append(key, pair("after"), after=4)

        async def count() -> int:
            return len(await cached.recent(key, WINDOW))

        deadline = time.monotonic() + 15
        while await count() != 6:  # notifications flow again
            assert time.monotonic() < deadline, "notifications did not resume"
            await asyncio.sleep(0.01)
    finally:
        await cached.close()
        await writer.close()
