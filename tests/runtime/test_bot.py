from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubebots.runtime import (
    BotClosedError,
    BotContext,
    BotFactory,
    DynaBot,
    LLMUnavailableError,
    MessageRejectedError,
    create_bot,
)
from kubebots.runtime.llm.base import ChatMessage, LLMProvider
from kubebots.runtime.schema import LLMConfig, parse_bot_config

from .support import RecordingProvider


def ctx(conversation: str = "c1", client: str = "tenant-a") -> BotContext:
    return BotContext(conversation_id=conversation, client_id=client)


async def make_bot(**spec: Any) -> tuple[DynaBot, RecordingProvider]:
    provider = RecordingProvider()

    def providers(config: LLMConfig, api_key: str | None) -> LLMProvider:
        return provider

    factory = BotFactory(env={}, providers=providers)
    bot = await factory.build("bot", parse_bot_config(spec))
    return bot, provider


async def test_echo_bot_chats_and_stores_the_turn() -> None:
    bot = await create_bot({"llm": {"provider": "echo"}}, bot_id="e")
    assert await bot.chat("Hello", ctx()) == "echo: Hello"
    history = await bot.get_history(ctx())
    assert [(m.seq, m.role, m.content) for m in history] == [
        (1, "user", "Hello"),
        (2, "assistant", "echo: Hello"),
    ]
    await bot.close()


async def test_system_prompt_and_history_reach_the_llm() -> None:
    bot, provider = await make_bot(system_prompt="be nice")
    await bot.chat("one", ctx())
    await bot.chat("two", ctx())
    roles = [(m.role, m.content) for m in provider.prompts[-1]]
    assert roles == [
        ("system", "be nice"),
        ("user", "one"),
        ("assistant", "rec: one"),
        ("user", "two"),
    ]


async def test_memory_is_per_conversation_and_clients_are_isolated() -> None:
    bot, provider = await make_bot()
    await bot.chat("secret of A", ctx("shared-id", "tenant-a"))
    await bot.chat("hello from B", ctx("shared-id", "tenant-b"))
    assert [m.content for m in provider.prompts[-1]] == ["hello from B"]
    await bot.chat("other conversation", ctx("c2", "tenant-a"))
    assert [m.content for m in provider.prompts[-1]] == ["other conversation"]
    b_history = await bot.get_history(ctx("shared-id", "tenant-b"))
    assert all("secret" not in m.content for m in b_history)
    assert await bot.list_conversations("tenant-a") == ["c2", "shared-id"]
    assert await bot.list_conversations("tenant-b") == ["shared-id"]
    assert await bot.delete_conversation(ctx("shared-id", "tenant-b")) is True
    assert len(await bot.get_history(ctx("shared-id", "tenant-a"))) == 2


async def test_concurrent_chats_on_one_conversation_are_serialized() -> None:
    bot, _ = await make_bot()
    await asyncio.gather(*(bot.chat(f"m{i}", ctx()) for i in range(30)))
    history = await bot.get_history(ctx())
    assert len(history) == 60
    for user, answer in zip(history[::2], history[1::2], strict=True):
        assert user.role == "user" and answer.role == "assistant"
        assert answer.content == f"rec: {user.content}"


async def test_memory_window_bounds_the_prompt() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 4}, system_prompt="s")
    for i in range(10):
        await bot.chat(f"m{i}", ctx())
    prompt = provider.prompts[-1]
    assert len(prompt) == 1 + 4 + 1
    assert prompt[1].role == "user" and prompt[1].content == "m7"


async def test_odd_window_starts_at_a_user_turn() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 3})
    for i in range(4):
        await bot.chat(f"m{i}", ctx())
    assert [m.role for m in provider.prompts[-1]] == ["user", "assistant", "user"]


async def test_zero_window_sends_only_the_message() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 0})
    await bot.chat("a", ctx())
    await bot.chat("b", ctx())
    assert [m.content for m in provider.prompts[-1]] == ["b"]


async def test_message_limits() -> None:
    bot, provider = await make_bot(limits={"maxMessageChars": 5, "maxHistoryMessages": 4})
    with pytest.raises(MessageRejectedError, match="at most 5"):
        await bot.chat("toolong", ctx())
    with pytest.raises(MessageRejectedError):
        await bot.chat("   ", ctx())
    await bot.chat("a", ctx())
    await bot.chat("b", ctx())
    with pytest.raises(MessageRejectedError, match="at most 4"):
        await bot.chat("c", ctx())
    assert len(await bot.get_history(ctx())) == 4
    assert len(provider.prompts) == 2


@pytest.mark.parametrize("bad", ["\x1b[2Jcleared", "a\x01b", "bell\x07", "del\x7f", "nul\x00"])
async def test_control_characters_are_rejected_before_anything_is_stored(bad: str) -> None:
    bot, provider = await make_bot()
    with pytest.raises(MessageRejectedError, match="control characters"):
        await bot.chat(bad, ctx())
    with pytest.raises(MessageRejectedError, match="control characters"):
        await bot.complete_messages([ChatMessage("user", bad)])
    assert await bot.get_history(ctx()) == []
    assert provider.prompts == []


async def test_tabs_and_line_breaks_are_text() -> None:
    bot, _ = await make_bot()
    text = "line 1\r\n\tline 2\n"
    assert await bot.chat(text, ctx())
    history = await bot.get_history(ctx())
    assert [m.content for m in history] == [text, f"rec: {text}"]


async def test_failed_llm_call_stores_nothing() -> None:
    bot, provider = await make_bot()
    provider.fail_next = 1
    with pytest.raises(LLMUnavailableError):
        await bot.chat("lost?", ctx())
    assert await bot.get_history(ctx()) == []
    assert await bot.chat("retry", ctx()) == "rec: retry"


async def test_stream_chat_yields_deltas_and_stores_the_turn() -> None:
    bot = await create_bot({"llm": {"provider": "echo"}})
    parts = [d async for d in bot.stream_chat("stream this please", ctx())]
    assert len(parts) > 1
    assert "".join(parts) == "echo: stream this please"
    assert [m.content for m in await bot.get_history(ctx())][-1] == "echo: stream this please"
    await bot.close()


async def test_abandoned_stream_stores_nothing_and_frees_the_conversation() -> None:
    bot, _ = await make_bot()
    stream = bot.stream_chat("abandon me", ctx())
    assert await anext(stream)
    await stream.aclose()
    assert await bot.get_history(ctx()) == []
    assert await asyncio.wait_for(bot.chat("next", ctx()), timeout=2) == "rec: next"


async def test_close_waits_for_in_flight_then_refuses() -> None:
    bot, provider = await make_bot()
    provider.gate = asyncio.Event()
    chat = asyncio.create_task(bot.chat("hi", ctx()))
    await provider.started.wait()
    closing = asyncio.create_task(bot.close())
    await asyncio.sleep(0.01)
    assert not bot.closed and provider.closed == 0
    provider.gate.set()
    assert await chat == "rec: hi"
    await closing
    assert bot.closed and provider.closed == 1
    with pytest.raises(BotClosedError):
        await bot.chat("after", ctx())
    await bot.close()  # idempotent
    assert provider.closed == 1


async def test_turn_reads_only_the_window_not_the_whole_conversation() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 6})
    for i in range(200):
        await bot.chat(f"m{i}", ctx())
    assert max(len(p) for p in provider.prompts) == 7
    assert len(await bot.get_history(ctx())) == 400
