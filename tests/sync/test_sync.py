"""StoreSync: the store drives the BotManager (reload on PUT, remove on DELETE, resync)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubebots.runtime import BotContext, UnknownBotError
from kubebots.runtime.configstore import ConfigStore, MemoryConfigStore, ResyncRequired, StoreError
from kubebots.runtime.sync import StoreConfigLoader

from .conftest import make_runtime
from .flaky import FlakyStore
from .support import wait_synced

CTX = BotContext(conversation_id="c", client_id="t")


def spec(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"llm": {"provider": "echo", "model": prompt}, "systemPrompt": prompt, **extra}


async def test_loader_reads_the_store_with_its_version(store: ConfigStore) -> None:
    rev = await store.put("ns:a", spec("v1"), generation=3, uid="u1")
    versioned = await StoreConfigLoader(store)("ns:a")
    assert versioned.version.revision == rev and versioned.version.generation == 3
    with pytest.raises(UnknownBotError):
        await StoreConfigLoader(store)("ns:missing")


async def test_put_reloads_loaded_bots_and_delete_removes_them(store: ConfigStore) -> None:
    await store.put("ns:a", spec("v1"), generation=1, uid="u")
    await store.put("ns:lazy", spec("l1"), generation=1, uid="u")
    manager, sync = make_runtime(store)
    async with manager, sync:
        async with asyncio.timeout(10):
            await sync.ready.wait()
        bot = await manager.get_or_create("ns:a")
        assert bot.config.system_prompt == "v1"
        rev = await store.put("ns:a", spec("v2"), generation=2, uid="u")
        await store.put("ns:lazy", spec("l2"), generation=2, uid="u")
        await wait_synced(await store.current_revision(), sync)
        new = await manager.get("ns:a")
        assert new is not None and new.config.system_prompt == "v2"
        assert new.version is not None and new.version.revision == rev
        assert new.version.generation == 2
        assert manager.list_bots() == ["ns:a"]  # the lazy bot stayed lazy
        assert (await manager.get_or_create("ns:lazy")).config.system_prompt == "l2"
        await store.delete("ns:a")
        await wait_synced(await store.current_revision(), sync)
        assert await manager.get("ns:a") is None
        await new.wait_closed()
        with pytest.raises(UnknownBotError):
            await manager.get_or_create("ns:a")


@pytest.mark.parametrize("preload", [False, True])
async def test_a_change_is_applied_from_the_watched_entry_without_reading_it_again(
    preload: bool,
) -> None:
    """One path for a config change: the sync hands the manager the entry it validated."""
    flaky = FlakyStore(MemoryConfigStore())
    await flaky.put("ns:a", spec("v1"), generation=1, uid="u")
    manager, sync = make_runtime(flaky, preload=preload)  # type: ignore[arg-type]
    async with manager, sync:
        async with asyncio.timeout(10):
            await sync.ready.wait()
        bot = await manager.get_or_create("ns:a")
        reads = flaky.gets
        assert reads == (0 if preload else 1)
        for n in range(2, 5):
            rev = await flaky.put("ns:a", spec(f"v{n}"), generation=n, uid="u")
            await wait_synced(rev, sync)
            bot = await manager.get_or_create("ns:a")
            assert bot.config.system_prompt == f"v{n}"
            assert bot.version is not None and bot.version.revision == rev
        await flaky.put("ns:b", spec("b1"), generation=1, uid="u")
        await wait_synced(await flaky.current_revision(), sync)
        assert ("ns:b" in manager.list_bots()) is preload
        assert flaky.gets == reads


async def test_preload_loads_every_bot(store: ConfigStore) -> None:
    for i in range(5):
        await store.put(f"ns:b{i}", spec(f"p{i}"), generation=1, uid="u")
    manager, sync = make_runtime(store, preload=True)
    async with manager, sync:
        async with asyncio.timeout(10):
            await sync.ready.wait()
        assert sorted(manager.list_bots()) == [f"ns:b{i}" for i in range(5)]
        await store.put("ns:new", spec("n"), generation=1, uid="u")
        await wait_synced(await store.current_revision(), sync)
        assert "ns:new" in manager.list_bots()


async def test_invalid_config_never_replaces_a_good_bot(store: ConfigStore) -> None:
    await store.put("ns:a", spec("good"), generation=1, uid="u")
    manager, sync = make_runtime(store)
    async with manager, sync:
        await sync.ready.wait()
        good = await manager.get_or_create("ns:a")
        bad_rev = await store.put("ns:a", spec("bad", systemPromt="typo"), generation=2, uid="u")
        await wait_synced(await store.current_revision(), sync)
        assert await manager.get("ns:a") is good
        assert await good.chat("still", CTX) == "echo: still"
        problem = sync.status.problem("ns:a")
        assert problem is not None and "systemPromt" in problem.error
        report = sync.report()
        assert report.bots[0].generation == 1 and report.bots[0].error_revision == bad_rev
        # the report reaches the store
        async with asyncio.timeout(10):
            while True:
                reports = await store.replica_reports(max_age_seconds=60)
                if reports and reports[0].bots and reports[0].synced_revision >= bad_rev:
                    break
                await asyncio.sleep(0.05)
        assert reports[0].bots[0].error is not None
        await store.put("ns:a", spec("fixed"), generation=3, uid="u")
        await wait_synced(await store.current_revision(), sync)
        assert (await manager.get_or_create("ns:a")).config.system_prompt == "fixed"
        assert sync.status.problem("ns:a") is None


async def test_build_failure_keeps_the_old_bot_and_reports(store: ConfigStore) -> None:
    await store.put("ns:a", spec("good"), generation=1, uid="u")
    manager, sync = make_runtime(store)
    async with manager, sync:
        await sync.ready.wait()
        good = await manager.get_or_create("ns:a")
        needs_key = {"llm": {"provider": "openai", "model": "m", "apiKeyEnv": "NOT_SET_ANYWHERE"}}
        await store.put("ns:a", needs_key, generation=2, uid="u")
        await wait_synced(await store.current_revision(), sync)
        assert await manager.get("ns:a") is good
        problem = sync.status.problem("ns:a")
        assert problem is not None and "NOT_SET_ANYWHERE" in problem.error


async def test_not_ready_until_the_first_sync() -> None:
    flaky = FlakyStore(MemoryConfigStore())
    await flaky.put("ns:a", spec("v"), generation=1, uid="u")
    flaky.down = True
    manager, sync = make_runtime(flaky)  # type: ignore[arg-type]
    async with manager, sync:
        await asyncio.sleep(0.3)
        assert not sync.ready.is_set()
        flaky.down = False
        async with asyncio.timeout(10):
            await sync.ready.wait()


async def test_reconnect_relists_and_never_misses_a_delete() -> None:
    inner = MemoryConfigStore()
    flaky = FlakyStore(inner)
    for name in ("a", "b", "c"):
        await inner.put(f"ns:{name}", spec("v1"), generation=1, uid="u")
    manager, sync = make_runtime(flaky, preload=True)  # type: ignore[arg-type]
    async with manager, sync:
        await sync.ready.wait()
        assert len(manager.list_bots()) == 3
        flaky.up.clear()  # the next list waits: the runtime is "disconnected"
        flaky.break_watch = StoreError("connection lost (test)")
        await asyncio.sleep(0.1)
        flaky.break_watch = None
        # the connection breaks as a StoreError from the watch
        await inner.delete("ns:b")
        await inner.put("ns:a", spec("v2"), generation=2, uid="u")
        await inner.compact(0)  # history is gone: only a re-list can tell
        flaky.up.set()
        await wait_synced(await flaky.current_revision(), sync)
        assert sorted(manager.list_bots()) == ["ns:a", "ns:c"]
        assert (await manager.get_or_create("ns:a")).config.system_prompt == "v2"


async def test_resync_required_relists() -> None:
    inner = MemoryConfigStore()
    flaky = FlakyStore(inner)
    await inner.put("ns:a", spec("v1"), generation=1, uid="u")
    await inner.put("ns:b", spec("v1"), generation=1, uid="u")
    manager, sync = make_runtime(flaky, preload=True)  # type: ignore[arg-type]
    async with manager, sync:
        await sync.ready.wait()
        lists = flaky.lists
        await inner.delete("ns:b")
        flaky.break_watch = ResyncRequired(1, 5)
        await wait_synced(await flaky.current_revision(), sync)
        async with asyncio.timeout(10):
            while flaky.lists == lists:
                await asyncio.sleep(0.01)
        assert manager.list_bots() == ["ns:a"]
        assert sync.resyncs >= 2
