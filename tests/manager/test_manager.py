from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from kubebots.runtime import (
    BotContext,
    BotFactory,
    BotManager,
    ConfigurationError,
    DynaBot,
    UnknownBotError,
)
from kubebots.runtime.bot import BotVersion
from kubebots.runtime.errors import InvalidBotIdError
from kubebots.runtime.llm.base import LLMProvider
from kubebots.runtime.schema import BotConfig, LLMConfig
from tests.runtime.support import RecordingProvider

CFG = {"llm": {"provider": "echo"}, "system_prompt": "v1"}
CTX = BotContext(conversation_id="c1", client_id="tenant-a")


class TrackingFactory(BotFactory):
    """A real factory whose providers are recorded (and optionally slow to start)."""

    def __init__(self, startup_delay: float = 0.0) -> None:
        super().__init__(env={}, providers=self._provider)
        self.providers: list[RecordingProvider] = []
        self.startup_delay = startup_delay

    def _provider(self, config: LLMConfig, api_key: str | None) -> LLMProvider:
        p = RecordingProvider(tag=config.model)
        self.providers.append(p)
        return p

    async def build(
        self, bot_id: str, config: BotConfig, version: BotVersion | None = None
    ) -> DynaBot:
        if self.startup_delay:
            await asyncio.sleep(self.startup_delay)
        return await super().build(bot_id, config, version)


async def test_guide_basic_usage_caches_the_instance() -> None:
    manager = BotManager()
    bot = await manager.get_or_create("support-bot", config=CFG)
    assert await manager.get_or_create("support-bot") is bot
    assert await manager.get("support-bot") is bot
    assert manager.list_bots() == ["support-bot"]
    assert manager.get_bot_count() == 1
    assert await bot.chat("Hello", CTX) == "echo: Hello"
    await manager.close()


async def test_sync_loader_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def load(bot_id: str) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return CFG

    async with BotManager(config_loader=load) as manager:
        await manager.get_or_create("a")
    assert seen and seen[0] != loop_thread


async def test_async_function_loader() -> None:
    async def load(bot_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"system_prompt": bot_id}

    async with BotManager(config_loader=load) as manager:
        bot = await manager.get_or_create("x")
        assert bot.config.system_prompt == "x"


class SyncLoad:
    def load(self, bot_id: str) -> dict[str, Any]:
        return {"system_prompt": f"sync {bot_id}"}


class AsyncLoad:
    async def load(self, bot_id: str) -> dict[str, Any]:
        return {"system_prompt": f"async {bot_id}"}


class AsyncCall:
    async def __call__(self, bot_id: str) -> dict[str, Any]:
        return {"system_prompt": f"call {bot_id}"}


@pytest.mark.parametrize(
    ("loader", "expected"),
    [(SyncLoad(), "sync b"), (AsyncLoad(), "async b"), (AsyncCall(), "call b")],
)
async def test_object_loaders(loader: Any, expected: str) -> None:
    async with BotManager(config_loader=loader) as manager:
        assert (await manager.get_or_create("b")).config.system_prompt == expected


async def test_no_config_and_no_loader_is_a_value_error() -> None:
    manager = BotManager()
    with pytest.raises(ConfigurationError) as info:
        await manager.get_or_create("nobody")
    assert isinstance(info.value, ValueError)
    assert manager.get_bot_count() == 0


@pytest.mark.parametrize("result", [["not", "a", "mapping"], "text", 42])
async def test_loader_returning_non_mapping(result: Any) -> None:
    async with BotManager(config_loader=lambda _id: result) as manager:
        with pytest.raises(ConfigurationError, match="not a mapping"):
            await manager.get_or_create("a")


async def test_loader_returning_invalid_config_names_the_field() -> None:
    async with BotManager(config_loader=lambda _id: {"llm": {"modle": "x"}}) as manager:
        with pytest.raises(ConfigurationError) as info:
            await manager.get_or_create("a")
    assert info.value.fields == ["llm.modle"]
    assert info.value.bot_id == "a"


async def test_unknown_bot_from_loader() -> None:
    configs: dict[str, Any] = {}
    async with BotManager(config_loader=lambda bot_id: configs[bot_id]) as manager:
        with pytest.raises(UnknownBotError):
            await manager.get_or_create("missing")
    async with BotManager(config_loader=lambda _id: None) as manager:
        with pytest.raises(UnknownBotError):
            await manager.get_or_create("missing")


async def test_loader_failure_is_a_configuration_error() -> None:
    def load(bot_id: str) -> dict[str, Any]:
        raise ValueError(f"Unknown bot: {bot_id}")

    async with BotManager(config_loader=load) as manager:
        with pytest.raises(ConfigurationError, match="Unknown bot: z"):
            await manager.get_or_create("z")


async def test_single_flight_with_awaiting_loader_and_startup() -> None:
    calls = 0

    async def load(bot_id: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        return CFG

    factory = TrackingFactory(startup_delay=0.02)
    async with BotManager(config_loader=load, factory=factory) as manager:
        bots = await asyncio.gather(*(manager.get_or_create("one") for _ in range(100)))
        assert calls == 1
        assert manager.stats.builds == 1
        assert len(factory.providers) == 1
        assert all(b is bots[0] for b in bots)


async def test_different_ids_never_wait_on_each_other() -> None:
    release = asyncio.Event()

    async def load(bot_id: str) -> dict[str, Any]:
        if bot_id == "slow":
            await release.wait()
        return CFG

    async with BotManager(config_loader=load) as manager:
        slow = asyncio.create_task(manager.get_or_create("slow"))
        await asyncio.sleep(0.01)
        fast = await asyncio.wait_for(manager.get_or_create("fast"), timeout=2)
        assert fast.bot_id == "fast"
        assert not slow.done()
        release.set()
        assert (await slow).bot_id == "slow"


async def test_cancelled_first_caller_does_not_break_the_others() -> None:
    gate = asyncio.Event()

    async def load(bot_id: str) -> dict[str, Any]:
        await gate.wait()
        return CFG

    async with BotManager(config_loader=load) as manager:
        first = asyncio.create_task(manager.get_or_create("a"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(manager.get_or_create("a"))
        await asyncio.sleep(0.01)
        first.cancel()
        gate.set()
        bot = await asyncio.wait_for(second, timeout=2)
        assert manager.list_bots() == ["a"]
        assert bot is await manager.get("a")


async def test_max_bots_evicts_least_recently_used_and_closes_it() -> None:
    factory = TrackingFactory()
    async with BotManager(max_bots=2, factory=factory) as manager:
        a = await manager.get_or_create("a", CFG)
        b = await manager.get_or_create("b", CFG)
        await manager.get_or_create("a")  # a is now the most recently used
        await manager.get_or_create("c", CFG)
        assert sorted(manager.list_bots()) == ["a", "c"]
        await b.wait_closed()
        assert b.closed and not a.closed
        assert factory.providers[1].closed == 1
        assert manager.stats.evictions == 1


async def test_idle_ttl_evicts_with_injected_clock() -> None:
    now = [100.0]
    factory = TrackingFactory()
    async with BotManager(idle_ttl=60, factory=factory, clock=lambda: now[0]) as manager:
        a = await manager.get_or_create("a", CFG)
        now[0] += 30
        b = await manager.get_or_create("b", CFG)
        now[0] += 31
        assert await manager.evict_idle() == ["a"]
        await a.wait_closed()
        assert a.closed and not b.closed
        assert manager.list_bots() == ["b"]


async def test_idle_sweeper_runs_on_its_own() -> None:
    async with BotManager(idle_ttl=0.05) as manager:
        bot = await manager.get_or_create("a", CFG)
        for _ in range(100):
            if manager.get_bot_count() == 0:
                break
            await asyncio.sleep(0.02)
        assert manager.get_bot_count() == 0
        await bot.wait_closed()
        assert bot.closed


async def test_remove_and_clear_all_close_bots() -> None:
    factory = TrackingFactory()
    manager = BotManager(factory=factory)
    a = await manager.get_or_create("a", CFG)
    b = await manager.get_or_create("b", CFG)
    assert await manager.remove("a") is True
    assert await manager.remove("a") is False
    await a.wait_closed()
    assert a.closed and factory.providers[0].closed == 1
    await manager.clear_all()
    assert b.closed and factory.providers[1].closed == 1
    assert manager.get_bot_count() == 0
    assert factory.open_stores == 0  # every memory store released


async def test_reload_swaps_atomically_and_keeps_conversations() -> None:
    configs = {"bot": {"system_prompt": "v1"}}
    async with BotManager(config_loader=lambda i: configs[i]) as manager:
        old = await manager.get_or_create("bot")
        await old.chat("remember me", CTX)
        configs["bot"] = {"system_prompt": "v2"}
        new = await manager.reload("bot")
        assert new is not old
        assert new.config.system_prompt == "v2"
        assert await manager.get("bot") is new
        await old.wait_closed()
        assert old.closed
        history = await new.get_history(CTX)
        assert [m.content for m in history] == ["remember me", "echo: remember me"]


async def test_failed_reload_keeps_the_old_bot_serving() -> None:
    configs: dict[str, Any] = {"bot": {"system_prompt": "good"}}
    async with BotManager(config_loader=lambda i: configs[i]) as manager:
        old = await manager.get_or_create("bot")
        configs["bot"] = {"system_prompt": "bad", "typo": 1}
        with pytest.raises(ConfigurationError):
            await manager.reload("bot")
        assert await manager.get("bot") is old
        assert not old.closed
        assert await old.chat("still here", CTX) == "echo: still here"


async def test_in_flight_chat_finishes_on_the_instance_it_started_on() -> None:
    factory = TrackingFactory()
    async with BotManager(factory=factory) as manager:
        old = await manager.get_or_create("bot", {"llm": {"provider": "echo", "model": "v1"}})
        provider = factory.providers[0]
        provider.gate = asyncio.Event()
        chat = asyncio.create_task(old.chat("hi", CTX))
        await provider.started.wait()
        new = await manager.reload("bot", {"llm": {"provider": "echo", "model": "v2"}})
        await asyncio.sleep(0.01)
        assert not old.closed  # draining, not closed, while the chat is in flight
        provider.gate.set()
        assert await chat == "v1: hi"
        await old.wait_closed()
        assert old.closed and provider.closed == 1
        assert await new.chat("again", CTX) == "v2: again"


async def test_reload_without_loader_or_config_fails() -> None:
    async with BotManager() as manager:
        await manager.get_or_create("a", CFG)
        with pytest.raises(ConfigurationError):
            await manager.reload("a")
        assert manager.list_bots() == ["a"]


async def test_reload_of_unloaded_bot_builds_it() -> None:
    async with BotManager(config_loader=lambda _i: CFG) as manager:
        bot = await manager.reload("fresh")
        assert await manager.get("fresh") is bot


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 300, "a\nb"])
async def test_bot_ids_are_validated(bad: str) -> None:
    async with BotManager(config_loader=lambda _i: CFG) as manager:
        with pytest.raises(InvalidBotIdError):
            await manager.get_or_create(bad)
        with pytest.raises(InvalidBotIdError):
            await manager.reload(bad)
        assert manager.get_bot_count() == 0


async def test_remove_waits_for_a_pending_build() -> None:
    gate = asyncio.Event()

    async def load(bot_id: str) -> dict[str, Any]:
        await gate.wait()
        return CFG

    async with BotManager(config_loader=load) as manager:
        creating = asyncio.create_task(manager.get_or_create("a"))
        await asyncio.sleep(0.01)
        removing = asyncio.create_task(manager.remove("a"))
        await asyncio.sleep(0.01)
        gate.set()
        bot = await creating
        assert await removing is True
        await bot.wait_closed()
        assert bot.closed and manager.get_bot_count() == 0
