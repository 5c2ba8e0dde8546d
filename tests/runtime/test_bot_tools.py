"""``DynaBot`` with request settings and tool calls: settings reach the provider on every path,
stateless prompts forward tool calls and results in order, and the memory window never splits
an assistant's tool calls from their answers."""

from __future__ import annotations

from typing import Any

import pytest

from kubebots.runtime import BotContext, BotFactory, DynaBot, MessageRejectedError, create_bot
from kubebots.runtime.llm.base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    ToolCall,
    ToolCallDelta,
    Usage,
    joined,
)
from kubebots.runtime.schema import LLMConfig, parse_bot_config

from .support import RecordingProvider

CTX = BotContext(conversation_id="c1", client_id="tenant-a")
SETTINGS = {"temperature": 0.1, "tools": [{"type": "function", "function": {"name": "f"}}]}


async def make_bot(**spec: Any) -> tuple[DynaBot, RecordingProvider]:
    provider = RecordingProvider()

    def providers(config: LLMConfig, api_key: str | None) -> LLMProvider:
        return provider

    bot = await BotFactory(env={}, providers=providers).build("bot", parse_bot_config(spec))
    return bot, provider


def call(n: int) -> ToolCall:
    return ToolCall(f"id{n}", f"tool{n}", f'{{"n": {n}}}')


def round_trip(n: int, answers: int = 1) -> list[ChatMessage]:
    """A user question, the assistant's tool calls (``answers`` of them) and their results."""
    calls = tuple(call(10 * n + i) for i in range(answers))
    return [
        ChatMessage("user", f"q{n}"),
        ChatMessage("assistant", "", tool_calls=calls),
        *(ChatMessage("tool", f"r{c.id}", tool_call_id=c.id) for c in calls),
    ]


async def test_settings_reach_the_provider_on_every_path() -> None:
    bot, provider = await make_bot()
    await bot.complete("one", CTX, settings=SETTINGS)
    _ = [d async for d in bot.stream_chat("two", CTX, settings=SETTINGS)]
    await bot.complete_messages([ChatMessage("user", "three")], settings=SETTINGS)
    _ = [d async for d in bot.stream_messages([ChatMessage("user", "four")], settings=SETTINGS)]
    await bot.complete("five", CTX)
    assert provider.settings == [SETTINGS] * 4 + [None]


async def test_tool_calls_and_results_are_forwarded_in_order_after_the_system_prompt() -> None:
    bot, provider = await make_bot(system_prompt="be useful")
    messages = [*round_trip(1, answers=2), ChatMessage("assistant", "done"), *round_trip(2)]
    await bot.complete_messages(messages, settings=SETTINGS)
    assert provider.prompts[-1] == [ChatMessage("system", "be useful"), *messages]


@pytest.mark.parametrize("window", [0, 1, 2, 3, 4, 5, 6, 7])
async def test_the_window_never_splits_tool_calls_from_their_answers(window: int) -> None:
    bot, provider = await make_bot(memory={"maxMessages": window})
    messages = [*round_trip(1, answers=3), *round_trip(2, answers=2)]  # 5 + 4 messages
    await bot.complete_messages(messages)
    prompt = provider.prompts[-1]
    assert prompt == messages[len(messages) - len(prompt) :]  # a tail, in order
    assert len(prompt) >= min(window + 1, len(messages))  # at least the window
    assert prompt[0].role != "tool"
    answered = {m.tool_call_id for m in prompt if m.role == "tool"}
    made = {c.id for m in prompt for c in m.tool_calls}
    assert answered <= made  # every result's call is there
    assert made <= answered  # and every call's results


async def test_the_window_grows_only_by_the_split_group() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 1})
    messages = [*round_trip(1), ChatMessage("assistant", "ok"), *round_trip(2, answers=2)]
    await bot.complete_messages(messages)
    # the last result and a window of 1 (the other result) need the calls: one message more,
    # not the user's question before them
    assert provider.prompts[-1] == messages[-3:]
    thanks = ChatMessage("user", "thanks")
    await bot.complete_messages([*messages, thanks])  # a window starting at a result
    assert provider.prompts[-1] == [*messages[-3:], thanks]
    await bot.complete_messages([*messages[:4], thanks])
    assert provider.prompts[-1] == [ChatMessage("assistant", "ok"), thanks]  # nothing to widen


async def test_a_window_starting_inside_a_group_takes_the_whole_group() -> None:
    bot, provider = await make_bot(memory={"maxMessages": 2})
    messages = [*round_trip(1, answers=2), ChatMessage("user", "thanks")]
    await bot.complete_messages(messages)
    assert provider.prompts[-1] == messages[1:]  # the calls, both answers, the new message


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "last message"),
        ([ChatMessage("user", "q"), ChatMessage("assistant", "a")], "last message"),
        ([ChatMessage("user", "  ")], "non-empty"),
        ([ChatMessage("user", "q"), ChatMessage("tool", "bad\x1b", tool_call_id="x")], "control"),
        ([ChatMessage("assistant", "x" * 51), ChatMessage("user", "q")], "at most 50"),
    ],
)
async def test_stateless_messages_are_checked(messages: list[ChatMessage], match: str) -> None:
    bot, provider = await make_bot(limits={"maxMessageChars": 50})
    with pytest.raises(MessageRejectedError, match=match):
        await bot.complete_messages(messages)
    assert provider.prompts == []


async def test_a_call_without_text_and_an_empty_tool_result_are_accepted() -> None:
    bot, provider = await make_bot()
    messages = [
        ChatMessage("user", "q"),
        ChatMessage("assistant", "", tool_calls=(call(1),)),
        ChatMessage("tool", "", tool_call_id="id1"),
    ]
    assert (await bot.complete_messages(messages)).content == "rec: "
    assert provider.prompts[-1] == messages


async def test_stream_messages_yields_the_providers_deltas() -> None:
    bot, provider = await make_bot()
    provider.replies.append(Completion("ok", None, (call(7),), "tool_calls"))
    deltas = [d async for d in bot.stream_messages([ChatMessage("user", "q")])]
    assert deltas == [
        Delta("ok"),
        Delta(tool_calls=(ToolCallDelta(0, "id7", "tool7"),)),
        Delta(tool_calls=(ToolCallDelta(0, arguments='{"n": 7}'),)),
        Delta(finish_reason="tool_calls"),
    ]
    assert joined(deltas) == Completion("ok", None, (call(7),), "tool_calls")


async def test_stream_chat_yields_only_the_text_and_stores_it() -> None:
    bot, provider = await make_bot()
    provider.replies.append(Completion("the text", None, (call(7),), "tool_calls"))
    parts = [d async for d in bot.stream_chat("q", CTX)]
    assert parts == ["the", " te", "xt"]
    assert [m.content for m in await bot.get_history(CTX)] == ["q", "the text"]


async def test_complete_returns_the_providers_calls_and_finish_reason() -> None:
    bot, provider = await make_bot()
    reply = Completion("", Usage(3, 2), (call(1),), "tool_calls")
    provider.replies.append(reply)
    assert plain(await bot.complete_messages([ChatMessage("user", "q")])) == reply
    provider.replies.append(reply)
    assert plain(await bot.complete("q", CTX)) == reply


def plain(completion: Completion) -> Completion:
    """The :class:`Completion` part of a turn's result (a ``TurnCompletion``)."""
    c = completion
    return Completion(c.content, c.usage, c.tool_calls, c.finish_reason)


async def test_an_echo_bot_does_a_tool_round_trip() -> None:
    bot = await create_bot({"llm": {"provider": "echo"}, "system_prompt": "s"}, bot_id="e")
    tools = {"tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    ask = [ChatMessage("user", 'call get_weather {"city": "Paris"}')]
    asked = await bot.complete_messages(ask, settings=tools)
    assert asked.tool_calls == (ToolCall("call_0", "get_weather", '{"city": "Paris"}'),)
    assert asked.finish_reason == "tool_calls"
    answer = [
        *ask,
        ChatMessage("assistant", "", tool_calls=asked.tool_calls),
        ChatMessage("tool", "sunny", tool_call_id="call_0"),
    ]
    final = await bot.complete_messages(answer, settings=tools)
    assert (final.content, final.finish_reason) == ("echo: sunny", "stop")
    streamed = [d async for d in bot.stream_messages(ask, settings=tools)]
    assert joined(streamed, asked.usage) == plain(asked)
    await bot.close()
