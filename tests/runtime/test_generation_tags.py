"""A bot knows its Bot generation and tags what its turns store with it; a rollout's candidate
entry is built as its Bot (same id for conversations, secrets and tools).

Bots are built by the real :class:`BotFactory` with real stores and tools; only the LLM is a
scripted provider (:class:`RecordingProvider`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubebots.runtime import BotContext, BotFactory
from kubebots.runtime.bot import BotVersion
from kubebots.runtime.configstore.rollout import candidate_id
from kubebots.runtime.llm.base import ChatMessage, Completion, LLMProvider, ToolCall
from kubebots.runtime.schema import LLMConfig, SecretKeyRef, parse_bot_config
from kubebots.runtime.secrets import MappingSecretResolver
from kubebots.runtime.tools import FunctionSource, FunctionTool, ToolSpec

from .support import RecordingProvider

BOT = "default:x"
CTX = BotContext(conversation_id="c1", client_id="tenant-a")
STABLE = BotVersion(revision=3, generation=7)
CANDIDATE = BotVersion(revision=4, generation=8)


class RecordingSecrets(MappingSecretResolver):
    """Real secrets from a mapping, noting which bot asked for each."""

    def __init__(self) -> None:
        super().__init__({("llm", "key"): "sk-test"})
        self.asked_by: list[str] = []

    async def get(self, ref: SecretKeyRef, *, bot_id: str) -> str:
        self.asked_by.append(bot_id)
        return await super().get(ref, bot_id=bot_id)


def factory_for(
    provider: RecordingProvider, **options: Any
) -> tuple[BotFactory, list[tuple[str, str]]]:
    """A factory whose bots use ``provider``; the Bot's function tool ``weather`` records the
    calls it gets (``tools`` are given per bot id: a candidate must find its Bot's)."""
    calls: list[tuple[str, str]] = []

    def weather(city: str) -> str:
        calls.append(("weather", city))
        return f"sunny in {city}"

    def providers(config: LLMConfig, api_key: str | None) -> LLMProvider:
        return provider

    tool = FunctionTool(ToolSpec("weather", "The weather of a city"), weather)
    factory = BotFactory(
        env={}, providers=providers, tools={BOT: [FunctionSource([tool])]}, **options
    )
    return factory, calls


def sqlite_spec(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    storage = {"backend": "sqlite", "path": str(tmp_path / "conversations.db")}
    return {"llm": {"provider": "echo"}, "conversationStorage": storage, **extra}


async def test_a_turn_tags_every_message_it_stores_with_the_bots_generation() -> None:
    provider = RecordingProvider()
    provider.replies = [
        Completion("", tool_calls=(ToolCall("call-1", "weather", '{"city": "Oslo"}'),)),
        Completion("sunny"),
    ]
    factory, calls = factory_for(provider)
    bot = await factory.build(BOT, parse_bot_config({"llm": {"provider": "echo"}}), STABLE)
    try:
        assert bot.generation == 7
        done = await bot.complete("weather in Oslo?", CTX)
        assert done.content == "sunny" and calls == [("weather", "Oslo")]
        _ = [d async for d in bot.stream_chat("and now?", CTX)]
        history = await bot.get_history(CTX)
    finally:
        await bot.close()
    assert [(m.role, m.generation) for m in history] == [
        ("user", 7),
        ("assistant", 7),  # the tool call
        ("tool", 7),
        ("assistant", 7),
        ("user", 7),  # the streamed turn
        ("assistant", 7),
    ]
    assert history[1].tool_calls[0].name == "weather" and history[2].tool_call_id == "call-1"


async def test_a_bot_built_without_a_version_tags_nothing() -> None:
    factory, _ = factory_for(RecordingProvider())
    bot = await factory.build(BOT, parse_bot_config({"llm": {"provider": "echo"}}))
    try:
        assert bot.generation is None
        await bot.complete("hi", CTX)
        await bot.complete_stored([ChatMessage("user", "again")], CTX)
        assert [m.generation for m in await bot.get_history(CTX)] == [None] * 4
    finally:
        await bot.close()


async def test_a_candidate_is_built_as_its_bot_and_shares_its_conversations(
    tmp_path: Path,
) -> None:
    provider = RecordingProvider()
    secrets = RecordingSecrets()
    factory, calls = factory_for(provider, secrets=secrets)
    llm = {"provider": "openai", "model": "m", "apiKeySecretRef": {"name": "llm", "key": "key"}}
    stable_config = parse_bot_config(sqlite_spec(tmp_path, llm=llm))
    candidate_config = parse_bot_config(sqlite_spec(tmp_path, llm=llm, systemPrompt="v2"))
    stable = await factory.build(BOT, stable_config, STABLE)
    candidate = await factory.build(candidate_id(BOT), candidate_config, CANDIDATE)
    try:
        assert (candidate.bot_id, candidate.generation) == (BOT, 8)
        assert secrets.asked_by == [BOT, BOT]  # the Bot's namespace resolves both keys
        assert factory.open_stores == 1  # one store, the Bot's

        await stable.complete("from stable", CTX)
        provider.replies = [
            Completion("", tool_calls=(ToolCall("call-1", "weather", '{"city": "Rome"}'),)),
            Completion("from candidate"),
        ]
        await candidate.complete("weather in Rome?", CTX)
        assert calls == [("weather", "Rome")]  # the Bot's tools, found under its id
        # The candidate read the stable bot's turn: one conversation, both generations.
        assert provider.prompts[1][-2:] == [
            ChatMessage("assistant", "rec: from stable"),
            ChatMessage("user", "weather in Rome?"),
        ]
        seen_by_stable = await stable.get_history(CTX)
        assert [m.generation for m in seen_by_stable] == [7, 7, 8, 8, 8, 8]
        assert await stable.list_conversations(CTX.client_id) == ["c1"]
        assert await candidate.get_history(CTX) == seen_by_stable
    finally:
        await candidate.close()
        await stable.close()

    # Without building either: the candidate entry's conversations are its Bot's.
    async with factory.conversations(candidate_id(BOT), candidate_config) as stored:
        assert stored.bot_id == BOT
        assert len(await stored.get_history(CTX)) == 6


async def test_a_memory_candidate_shares_the_stable_bots_memory_store() -> None:
    factory, _ = factory_for(RecordingProvider())
    config = parse_bot_config({"llm": {"provider": "echo"}})
    stable = await factory.build(BOT, config, STABLE)
    candidate = await factory.build(candidate_id(BOT), config, CANDIDATE)
    try:
        await candidate.complete("hi", CTX)
        assert [m.generation for m in await stable.get_history(CTX)] == [8, 8]
        assert factory.open_stores == 1
    finally:
        await candidate.close()
        await stable.close()
    assert factory.open_stores == 0
