"""``BotManager.conversations``: a bot's stored conversations, without building the bot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime import (
    BotContext,
    BotFactory,
    BotManager,
    ConfigurationError,
    UnknownBotError,
)
from kubebots.runtime.errors import InvalidBotIdError
from kubebots.runtime.llm.base import LLMProvider
from kubebots.runtime.schema import LLMConfig
from tests.runtime.support import RecordingProvider

CTX = BotContext(conversation_id="c1", client_id="tenant-a")


class CountingFactory(BotFactory):
    """A real factory whose LLM providers are recorded: one per LLM client built."""

    def __init__(self) -> None:
        super().__init__(env={}, providers=self._provider)
        self.providers: list[RecordingProvider] = []

    def _provider(self, config: LLMConfig, api_key: str | None) -> LLMProvider:
        provider = RecordingProvider()
        self.providers.append(provider)
        return provider


def configs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "notes": {
            "llm": {"provider": "echo"},
            "conversation_storage": {"backend": "sqlite", "path": str(tmp_path / "c.db")},
        },
        "scratch": {"llm": {"provider": "echo"}},  # memory: its conversations go with the bot
    }


async def test_an_unloaded_bot_is_read_from_its_store_without_an_llm_client(
    tmp_path: Path,
) -> None:
    factory = CountingFactory()
    async with BotManager(config_loader=configs(tmp_path).get, factory=factory) as manager:
        bot = await manager.get_or_create("notes")
        await bot.chat("hi", CTX)
        assert await manager.remove("notes")
        await manager.wait_retired()
        assert factory.open_stores == 0

        async with manager.conversations("notes") as conversations:
            assert factory.open_stores == 1
            assert await conversations.list_conversations("tenant-a") == ["c1"]
            assert await conversations.list_conversations("tenant-b") == []
            assert await conversations.conversation_exists(CTX)
            history = await conversations.get_history(CTX, offset=1)
            assert [(m.seq, m.content) for m in history] == [(2, "rec: hi")]
            assert await conversations.delete_conversation(CTX)
            assert not await conversations.conversation_exists(CTX)
        assert factory.open_stores == 0  # borrowed for the block only

        async with manager.conversations("scratch") as conversations:
            assert await conversations.list_conversations("tenant-a") == []
        assert len(factory.providers) == 1  # the one chat's
        assert manager.list_bots() == []
        assert manager.stats.builds == 1


async def test_unknown_bad_and_unconfigured_ids_fail_as_get_or_create_does(
    tmp_path: Path,
) -> None:
    async with BotManager(config_loader=configs(tmp_path).get) as manager:
        with pytest.raises(UnknownBotError):
            async with manager.conversations("nobody"):
                pass
        with pytest.raises(InvalidBotIdError):
            async with manager.conversations("bad id"):
                pass
    async with BotManager() as without_loader:
        with pytest.raises(ConfigurationError):
            async with without_loader.conversations("notes"):
                pass


async def test_a_loaded_bot_lends_itself_and_a_delete_waits_for_its_turn(tmp_path: Path) -> None:
    factory = CountingFactory()
    async with BotManager(config_loader=configs(tmp_path).get, factory=factory) as manager:
        bot = await manager.get_or_create("notes")
        provider = factory.providers[0]
        provider.gate = asyncio.Event()
        turn = asyncio.create_task(bot.chat("hi", CTX))
        await provider.started.wait()

        async with manager.conversations("notes") as conversations:
            assert conversations is bot
            delete = asyncio.create_task(conversations.delete_conversation(CTX))
            await asyncio.sleep(0.05)
            assert not delete.done()  # the turn in progress holds the conversation
            provider.gate.set()
            assert await turn == "rec: hi"
            assert await delete is True
            assert await conversations.get_history(CTX) == []
        assert len(factory.providers) == 1
