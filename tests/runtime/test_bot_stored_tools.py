"""``DynaBot`` stored turns with tool calls: the new messages (a user's, or the tool results
answering the conversation's last calls) and the reply are stored in order; the prompt holds
the system prompt, the memory window (never starting inside a tool call group) and them."""

from __future__ import annotations

from typing import Any

import pytest

from kubebots.runtime import BotContext, BotFactory, DynaBot, MessageRejectedError
from kubebots.runtime.conversations import StoredMessage, StoredToolCall
from kubebots.runtime.llm.base import ChatMessage, Completion, LLMProvider, ToolCall, joined
from kubebots.runtime.schema import LLMConfig, parse_bot_config

from .support import RecordingProvider

CTX = BotContext(conversation_id="c1", client_id="tenant-a")
CALLS = (ToolCall("id1", "weather", '{"city": "Paris"}'), ToolCall("id2", "time", "{}"))
ANSWERS = [
    ChatMessage("tool", "sunny", tool_call_id="id1"),
    ChatMessage("tool", "noon", tool_call_id="id2"),
]
ASK = [ChatMessage("user", "weather and time?")]


async def make_bot(**spec: Any) -> tuple[DynaBot, RecordingProvider]:
    provider = RecordingProvider()

    def providers(config: LLMConfig, api_key: str | None) -> LLMProvider:
        return provider

    spec = {"systemPrompt": "sys", **spec}
    bot = await BotFactory(env={}, providers=providers).build("bot", parse_bot_config(spec))
    return bot, provider


def shapes(messages: list[StoredMessage]) -> list[tuple[object, ...]]:
    return [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in messages]


STORED_CALLS = tuple(StoredToolCall(c.id, c.name, c.arguments) for c in CALLS)
ROUND = [
    ("user", "weather and time?", (), None),
    ("assistant", "", STORED_CALLS, None),
    ("tool", "sunny", (), "id1"),
    ("tool", "noon", (), "id2"),
    ("assistant", "rec: noon", (), None),
]


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_stored_tool_round_trip(stream: bool) -> None:
    bot, provider = await make_bot()
    provider.replies.append(Completion("", None, CALLS, "tool_calls"))
    for messages in (ASK, ANSWERS):
        if stream:
            deltas = [d async for d in bot.stream_stored(messages, CTX)]
            reply = joined(deltas)
        else:
            reply = await bot.complete_stored(messages, CTX)
        if messages is ASK:
            assert (reply.tool_calls, reply.finish_reason) == (CALLS, "tool_calls")
    assert provider.prompts[-1] == [
        ChatMessage("system", "sys"),
        *ASK,
        ChatMessage("assistant", "", CALLS),
        *ANSWERS,
    ]
    assert shapes(await bot.get_history(CTX)) == ROUND
    # The next user turn sees the whole group in its window.
    await bot.complete("thanks", CTX)
    assert provider.prompts[-1][1:] == [
        *ASK,
        ChatMessage("assistant", "", CALLS),
        *ANSWERS,
        ChatMessage("assistant", "rec: noon"),
        ChatMessage("user", "thanks"),
    ]
    await bot.close()


@pytest.mark.parametrize("window", [0, 1, 2, 3, 4])
async def test_the_window_never_starts_inside_a_tool_call_group(window: int) -> None:
    bot, provider = await make_bot(memory={"maxMessages": window})
    provider.replies.append(Completion("", None, CALLS, "tool_calls"))
    await bot.complete_stored(ASK, CTX)
    await bot.complete_stored(ANSWERS, CTX)
    prompt = provider.prompts[-1]
    # The answered calls always reach the model, right before their answers.
    assert prompt[-3:] == [ChatMessage("assistant", "", CALLS), *ANSWERS]
    await bot.complete("next", CTX)
    history = provider.prompts[-1][1:-1]
    assert not history or history[0].role == "user"
    await bot.close()


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([ChatMessage("user", "hi"), ChatMessage("user", "again")], "one user message"),
        ([ChatMessage("user", "hi"), *ANSWERS], "one user message"),
        ([ChatMessage("assistant", "me")], "one user message"),
        (ANSWERS[:1], r"answer each of them once"),
        ([*ANSWERS, ANSWERS[0]], r"answer each of them once"),
        ([ANSWERS[0], ChatMessage("tool", "x", tool_call_id="id9")], r"'id9'"),
        ([ChatMessage("user", "skip them")], r"awaits the results of tool calls \['id1', 'id2'\]"),
        ([ChatMessage("tool", "x")], "names a tool_call_id"),
    ],
)
async def test_new_messages_must_fit_the_conversation(
    messages: list[ChatMessage], match: str
) -> None:
    bot, provider = await make_bot()
    provider.replies.append(Completion("", None, CALLS, "tool_calls"))
    await bot.complete_stored(ASK, CTX)
    asked = len(provider.prompts)
    with pytest.raises(MessageRejectedError, match=match):
        await bot.complete_stored(messages, CTX)
    with pytest.raises(MessageRejectedError, match=match):
        _ = [d async for d in bot.stream_stored(messages, CTX)]
    assert len(provider.prompts) == asked  # the model was not asked
    assert len(await bot.get_history(CTX)) == 2  # nothing stored
    await bot.close()


async def test_tool_results_without_pending_calls_are_refused() -> None:
    bot, _ = await make_bot()
    with pytest.raises(MessageRejectedError, match="answer each of them once"):
        await bot.complete_stored(ANSWERS, CTX)
    await bot.complete("hi", CTX)
    with pytest.raises(MessageRejectedError, match="answer each of them once"):
        await bot.complete_stored(ANSWERS, CTX)
    await bot.close()


async def test_the_history_cap_counts_every_new_message() -> None:
    bot, provider = await make_bot(limits={"maxHistoryMessages": 4})
    provider.replies.append(Completion("", None, CALLS, "tool_calls"))
    await bot.complete_stored(ASK, CTX)
    with pytest.raises(MessageRejectedError, match="at most 4"):
        await bot.complete_stored(ANSWERS, CTX)  # 2 + 2 answers + the reply
    await bot.close()
