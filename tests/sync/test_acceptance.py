"""Issue 3's acceptance scenarios, on real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kubebots.runtime import BotContext, BotFactory, DynaBot
from kubebots.runtime.bot import BotVersion
from kubebots.runtime.configstore import ConfigStore, SqliteConfigStore
from kubebots.runtime.schema import BotConfig
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import make_runtime
from .support import wait_synced


def spec(prompt: str) -> dict[str, Any]:
    return {"llm": {"provider": "echo"}, "systemPrompt": prompt}


async def assert_runtime_equals_store(store: ConfigStore, manager: Any) -> None:
    entries, _ = await store.list()
    expected = {e.bot_id: e.revision for e in entries}
    loaded = {b: v.revision for b, v in manager.loaded_versions().items() if v is not None}
    assert loaded == expected


class CountingFactory(BotFactory):
    """A real factory that records which (bot, revision) it built."""

    def __init__(self) -> None:
        super().__init__(env={})
        self.built: list[tuple[str, int]] = []

    async def build(
        self, bot_id: str, config: BotConfig, version: BotVersion | None = None
    ) -> DynaBot:
        self.built.append((bot_id, version.revision if version else -1))
        return await super().build(bot_id, config, version)


async def test_pg_watcher_connection_killed_during_updates_and_deletes(
    pg_store_factory: Callable[..., Any], postgres_url: str
) -> None:
    app_name = f"kb-watch-{uuid.uuid4().hex[:8]}"
    writer = await pg_store_factory()
    runtime_store = await pg_store_factory(watch_application_name=app_name)
    for i in range(100):
        await writer.put(f"ns:b{i}", spec("v0"), generation=1, uid="u")
    manager, sync = make_runtime(runtime_store, preload=True)
    killed = 0

    async def write() -> None:
        deletes = iter(range(50))
        for n in range(500):
            i = 50 + n % 50
            await writer.put(f"ns:b{i}", spec(f"v{n}"), generation=2 + n // 50, uid="u")
            if n % 10 == 9:
                await writer.delete(f"ns:b{next(deletes)}")

    async def kill() -> None:
        nonlocal killed
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            for _ in range(6):
                await asyncio.sleep(0.15)
                cur = await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app_name,),
                )
                killed += sum(1 for (ok,) in await cur.fetchall() if ok)

    async with manager, sync:
        async with asyncio.timeout(30):
            await sync.ready.wait()
        await asyncio.gather(write(), kill())
        await wait_synced(await writer.current_revision(), sync, 30)
        await assert_runtime_equals_store(writer, manager)
        assert len(manager.list_bots()) == 50
        assert killed >= 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_burst_of_1000_updates_to_100_bots(
    backend: str, tmp_path: Path, pg_store_factory: Callable[..., Any]
) -> None:
    if backend == "sqlite":
        writer: ConfigStore = await SqliteConfigStore.open(str(tmp_path / "s.db"))
        reader: ConfigStore = await SqliteConfigStore.open(str(tmp_path / "s.db"))
    else:
        writer, reader = await pg_store_factory(), await pg_store_factory()
    for i in range(100):
        await writer.put(f"ns:b{i}", spec("v0"), generation=1, uid="u")
    factory = CountingFactory()
    manager, sync = make_runtime(reader, preload=True, factory=factory)
    async with manager, sync:
        async with asyncio.timeout(30):
            await sync.ready.wait()
        rng = random.Random(7)
        generations = dict.fromkeys(range(100), 1)
        for n in range(1000):
            i = rng.randrange(100)
            generations[i] += 1
            await writer.put(f"ns:b{i}", spec(f"u{n}"), generation=generations[i], uid="u")
        await wait_synced(await writer.current_revision(), sync, 30)
        await assert_runtime_equals_store(writer, manager)
        duplicates = [key for key, count in Counter(factory.built).items() if count > 1]
        assert duplicates == []
        for i in range(100):  # never more builds than revisions the bot had
            builds = sum(1 for bot_id, _ in factory.built if bot_id == f"ns:b{i}")
            assert builds <= generations[i]
    if backend == "sqlite":
        await writer.close()
        await reader.close()


async def test_200_concurrent_chats_during_reloads(pg_store_factory: Callable[..., Any]) -> None:
    store = await pg_store_factory()
    with FakeOpenAIServer(chunk_delay=0.001) as fake:

        def bot_spec(i: int, gen: int) -> dict[str, Any]:
            return {
                "llm": {"provider": "openai", "model": f"m{i}", "baseUrl": fake.base_url},
                "systemPrompt": f"gen-{gen}",
            }

        for i in range(10):
            await store.put(f"ns:b{i}", bot_spec(i, 1), generation=1, uid="u")
        manager, sync = make_runtime(store)
        errors: list[BaseException] = []
        replies: list[tuple[int, str, str]] = []

        async def chat(n: int) -> None:
            i = n % 10
            try:
                bot = await manager.get_or_create(f"ns:b{i}")
                context = BotContext(conversation_id=f"c{n}", client_id="t")
                if n % 2:
                    reply = await bot.chat(f"msg{n}", context)
                else:
                    reply = "".join([d async for d in bot.stream_chat(f"msg{n}", context)])
                replies.append((i, f"msg{n}", reply))
            except Exception as exc:
                errors.append(exc)

        async def reload_all() -> None:
            for gen in range(2, 7):
                for i in range(10):
                    await store.put(f"ns:b{i}", bot_spec(i, gen), generation=gen, uid="u")
                await asyncio.sleep(0.02)

        async with manager, sync:
            async with asyncio.timeout(30):
                await sync.ready.wait()
            await asyncio.gather(reload_all(), *(chat(n) for n in range(200)))
            await wait_synced(await store.current_revision(), sync, 30)
        assert errors == []
        assert len(replies) == 200
        for i, msg, reply in replies:
            assert reply in {f"[m{i}] gen-{g} | {msg}" for g in range(1, 7)}, reply
        assert manager.stats.reloads > 0
