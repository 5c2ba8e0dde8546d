"""A replica builds a bot it never loaded from its last synced config while the store is down."""

from __future__ import annotations

import asyncio

import pytest

from kubebots.runtime import BotContext, BotManager
from kubebots.runtime.configstore import MemoryConfigStore, StoreError
from kubebots.runtime.sync import LastGoodConfigs, StoreConfigLoader, StoreSync, SyncSettings

from .flaky import FlakyStore
from .support import wait_synced
from .test_sync import spec


def runtime(store: FlakyStore) -> tuple[BotManager, StoreSync, LastGoodConfigs]:
    last_good = LastGoodConfigs()
    manager = BotManager(config_loader=StoreConfigLoader(store, last_good), env={})
    settings = SyncSettings(replica_id="r1", heartbeat_interval=0.5)
    return manager, StoreSync(store, manager, settings, last_good), last_good


async def test_a_lazy_bot_builds_from_the_last_synced_config_while_the_store_is_down() -> None:
    inner = MemoryConfigStore()
    flaky = FlakyStore(inner)
    rev = await inner.put("ns:a", spec("v1"), generation=4, uid="u")
    await inner.put("ns:b", spec("b1"), generation=1, uid="u")
    manager, sync, _ = runtime(flaky)
    async with manager, sync:
        await sync.ready.wait()
        assert manager.list_bots() == []  # lazy: nothing built yet
        flaky.down = True
        bot = await manager.get_or_create("ns:a")
        assert bot.config.system_prompt == "v1"
        assert bot.version is not None and (bot.version.revision, bot.version.generation) == (
            rev,
            4,
        )
        reply = await bot.chat("hi", BotContext("c1", "tenant"))
        assert reply == "echo: hi"
        # A bot the store never had is still unknown, with the store's error.
        with pytest.raises(StoreError):
            await manager.get_or_create("ns:never")


async def test_the_record_follows_puts_and_deletes_and_keeps_the_last_valid_config() -> None:
    inner = MemoryConfigStore()
    flaky = FlakyStore(inner)
    await inner.put("ns:a", spec("v1"), generation=1, uid="u")
    await inner.put("ns:gone", spec("x"), generation=1, uid="u")
    manager, sync, last_good = runtime(flaky)
    async with manager, sync:
        await sync.ready.wait()
        assert len(last_good) == 2
        await inner.put("ns:a", spec("v2"), generation=2, uid="u")
        await inner.delete("ns:gone")
        # an invalid config never replaces the last good one
        await inner.put("ns:a", {"llm": {"provider": "nope"}}, generation=3, uid="u")
        await wait_synced(await inner.current_revision(), sync)
        assert len(last_good) == 1
        good = last_good.get("ns:a")
        assert good is not None and good.version is not None
        assert good.config["systemPrompt"] == "v2" and good.version.generation == 2
        assert last_good.get("ns:gone") is None
        flaky.down = True
        assert (await manager.get_or_create("ns:a")).config.system_prompt == "v2"


async def test_a_relist_forgets_bots_deleted_meanwhile() -> None:
    inner = MemoryConfigStore()
    flaky = FlakyStore(inner)
    await inner.put("ns:a", spec("v1"), generation=1, uid="u")
    await inner.put("ns:b", spec("v1"), generation=1, uid="u")
    manager, sync, last_good = runtime(flaky)
    async with manager, sync:
        await sync.ready.wait()
        flaky.up.clear()
        flaky.break_watch = StoreError("connection lost (test)")
        await asyncio.sleep(0.1)
        flaky.break_watch = None
        await inner.delete("ns:b")
        await inner.compact(0)  # only a re-list can tell
        flaky.up.set()
        await wait_synced(await inner.current_revision(), sync)
        assert last_good.get("ns:b") is None and last_good.get("ns:a") is not None
