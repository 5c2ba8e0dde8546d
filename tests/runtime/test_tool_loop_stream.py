"""Streamed turns with tools (tool events between text deltas, server call pieces never shown),
the stateless path (tools run, nothing stored, no approval tools, client tools next to the
bot's), and the loop with the real OpenAI provider against the fake OpenAI server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubebots.runtime import MessageRejectedError
from kubebots.runtime.llm import OpenAIProvider
from kubebots.runtime.llm.base import (
    ChatMessage,
    Completion,
    Delta,
    ToolCall,
    ToolCallDelta,
    Usage,
    joined,
)
from kubebots.runtime.schema.llm import LLMConfig
from kubebots.runtime.testing import FakeOpenAIServer
from kubebots.runtime.tools import ToolFinished, ToolResult, ToolStarted

from .support import RecordingProvider
from .tool_support import CTX, shapes, tool_bot

ADD = ToolCall("call_0", "add", '{"a": 2, "b": 3}')
CLIENT_TOOLS = {"tools": [{"type": "function", "function": {"name": "client_fn"}}]}


async def test_a_streamed_turn_yields_tool_events_then_the_answer() -> None:
    bot, _ = await tool_bot()
    usages: list[Usage] = []
    events = [
        e async for e in bot.stream_turn(f"call add {ADD.arguments}", CTX, on_usage=usages.append)
    ]
    assert events[:2] == [ToolStarted(ADD), ToolFinished(ADD, ToolResult('{"sum": 5}'))]
    deltas = events[2:]
    assert all(isinstance(d, Delta) and not d.tool_calls for d in deltas)
    assert "".join(d.content for d in deltas if isinstance(d, Delta)) == 'echo: {"sum": 5}'
    assert deltas[-1] == Delta(finish_reason="stop")
    assert len(usages) == 1  # the turn's total, once: both LLM calls
    call_words, answer_words = len(f"add {ADD.arguments}".split()), 3
    assert usages[0].completion_tokens == call_words + answer_words
    assert [m.role for m in await bot.get_history(CTX)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    await bot.close()


async def test_text_of_every_step_streams_and_stream_chat_keeps_only_text() -> None:
    provider = RecordingProvider()
    provider.replies.append(
        Completion("let me see. ", None, (ToolCall("w", "weather", "{}"),), "tool_calls")
    )
    bot, tools = await tool_bot(provider)
    parts = [p async for p in bot.stream_chat("weather?", CTX)]
    assert "".join(parts) == "let me see. rec: sunny in Paris"
    assert tools.names() == ["weather"]
    assert shapes(await bot.get_history(CTX)) == [
        ("user", "weather?", (), None),
        ("assistant", "let me see. ", ("weather",), None),
        ("tool", "sunny in Paris", (), "w"),
        ("assistant", "rec: sunny in Paris", (), None),
    ]
    await bot.close()


async def test_stream_stored_yields_deltas_only_and_stores_the_turn() -> None:
    bot, _ = await tool_bot()
    deltas = [d async for d in bot.stream_stored([ChatMessage("user", "call weather")], CTX)]
    assert all(isinstance(d, Delta) and not d.tool_calls for d in deltas)
    assert joined(deltas).content == "echo: sunny in Paris"
    assert len(await bot.get_history(CTX)) == 4
    await bot.close()


async def test_an_abandoned_stream_stores_nothing_and_frees_the_conversation() -> None:
    bot, _ = await tool_bot()
    events = bot.stream_turn("call weather", CTX)
    assert isinstance(await anext(events), ToolStarted)
    await events.aclose()
    assert await bot.get_history(CTX) == []
    assert await bot.chat("hello", CTX) == "echo: hello"  # the turn lock was released
    assert bot.inflight == 0
    await bot.close()


async def test_the_stateless_path_runs_tools_and_stores_nothing() -> None:
    bot, tools = await tool_bot()
    messages = [ChatMessage("user", "call weather")]
    reply = await bot.complete_messages(messages)
    assert (reply.content, reply.tool_calls, reply.finish_reason) == (
        "echo: sunny in Paris", (), "stop"
    )  # fmt: skip
    deltas = [d async for d in bot.stream_messages(messages)]
    assert all(not d.tool_calls for d in deltas) and deltas[-1] == Delta(finish_reason="stop")
    assert joined(deltas).content == "echo: sunny in Paris"
    assert tools.names() == ["weather", "weather"]
    assert await bot.list_conversations(CTX.client_id) == []
    await bot.close()


async def test_the_stateless_path_offers_no_approval_tools_and_never_runs_them() -> None:
    provider = RecordingProvider()
    provider.replies.append(Completion("", None, (ToolCall("d", "deploy", "{}"),), "tool_calls"))
    bot, tools = await tool_bot(provider)
    reply = await bot.complete_messages([ChatMessage("user", "deploy it")])
    offered = provider.settings[0]
    assert offered is not None
    names = [t["function"]["name"] for t in offered["tools"]]
    assert "add" in names and "deploy" not in names and "wipe" not in names
    assert reply.tool_runs[0].result == ToolResult("error: there is no tool 'deploy'", True)
    assert tools.calls == [] and reply.pending == ()
    await bot.close()


async def test_client_tools_are_offered_next_to_the_bots_and_their_calls_returned() -> None:
    provider = RecordingProvider()
    mixed = (ToolCall("s", "weather", "{}"), ToolCall("c", "client_fn", '{"x": 1}'))
    provider.replies += [Completion("", None, mixed, "tool_calls")] * 2
    bot, tools = await tool_bot(provider)
    messages = [ChatMessage("user", "q")]
    reply = await bot.complete_messages(messages, settings=CLIENT_TOOLS)
    assert (reply.tool_calls, reply.finish_reason) == ((mixed[1],), "tool_calls")
    deltas = [d async for d in bot.stream_messages(messages, settings=CLIENT_TOOLS)]
    assert [c for d in deltas for c in d.tool_calls] == [
        ToolCallDelta(0, "c", "client_fn"),  # re-indexed: the server call is not shown
        ToolCallDelta(0, arguments='{"x": 1}'),
    ]
    assert deltas[-1] == Delta(finish_reason="tool_calls")
    assert tools.calls == []
    await bot.close()


async def test_a_client_tool_named_like_a_bot_tool_is_refused() -> None:
    provider = RecordingProvider()
    bot, _ = await tool_bot(provider)
    clash = {"tools": [{"type": "function", "function": {"name": "weather"}}]}
    with pytest.raises(MessageRejectedError, match=r"\['weather'\]") as caught:
        await bot.complete_messages([ChatMessage("user", "q")], settings=clash)
    assert caught.value.detail == {"tools": ["weather"]}
    with pytest.raises(MessageRejectedError, match="weather"):
        _ = [d async for d in bot.stream_messages([ChatMessage("user", "q")], settings=clash)]
    with pytest.raises(MessageRejectedError, match="weather"):
        await bot.complete("q", CTX, settings=clash)
    assert provider.prompts == []
    await bot.close()


# -- the real OpenAI provider against the fake OpenAI server ------------------------------------
@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-test-loop") as server:
        yield server


def _provider(server: FakeOpenAIServer) -> OpenAIProvider:
    config = LLMConfig(
        provider="openai", model="fake-model", base_url=server.base_url, max_retries=0, timeout=5
    )
    return OpenAIProvider(config, api_key="sk-test-loop")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_parallel_call_through_the_openai_provider(
    fake_openai: FakeOpenAIServer, stream: bool
) -> None:
    bot, tools = await tool_bot(_provider(fake_openai))
    ask = 'call add {"a": 2, "b": 3}\ncall weather {"city": "Rome"}'
    expected = f'[fake-model] - | {ask} | tool add: {{"sum": 5}} | tool weather: sunny in Rome'
    if stream:
        events = [e async for e in bot.stream_turn(ask, CTX)]
        names = [type(e).__name__ for e in events[:4]]
        assert names == ["ToolStarted", "ToolStarted", "ToolFinished", "ToolFinished"]
        text = "".join(e.content for e in events if isinstance(e, Delta))
    else:
        reply = await bot.complete(ask, CTX)
        assert [r.call.id for r in reply.tool_runs] == ["call_fake_0", "call_fake_1"]
        assert reply.usage is not None and reply.usage.prompt_tokens > 0
        text = reply.content
    assert text == expected
    assert sorted(tools.names()) == ["add", "weather"]
    first, second = (r["body"] for r in fake_openai.requests)
    assert [t["function"]["name"] for t in first["tools"]][:2] == ["add", "weather"]
    sent = second["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_fake_0", "call_fake_1"]
    assert json.loads(sent[2]["content"]) == {"sum": 5}
    await bot.close()


async def test_max_steps_through_the_openai_provider(fake_openai: FakeOpenAIServer) -> None:
    bot, tools = await tool_bot(_provider(fake_openai), tools={"maxToolSteps": 2})
    for _ in range(2):
        fake_openai.script(None, tool_calls=[("weather", '{"city": "Oslo"}')])
    reply = await bot.complete("weather, again and again", CTX)
    assert tools.names() == ["weather", "weather"]
    bodies = [r["body"] for r in fake_openai.requests]
    assert [b.get("tool_choice") for b in bodies] == [None, None, "none"]
    assert reply.finish_reason == "stop" and reply.content.startswith("[fake-model] - |")
    await bot.close()
