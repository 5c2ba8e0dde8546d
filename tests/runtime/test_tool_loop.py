"""The tool loop of ``DynaBot`` on stored conversations: the model's calls of the bot's tools run
(in parallel), their results go back to the model, failures and timeouts become tool errors the
model reads, the step and deadline limits hold, usage is summed, and the turn is stored in order
in one append; the memory window never starts inside a call group."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from kubebots.runtime.conversations.base import ConversationKey, Messages
from kubebots.runtime.conversations.memory import MemoryConversationStore
from kubebots.runtime.llm.base import ChatMessage, Completion, ToolCall, Usage
from kubebots.runtime.tools import ToolFinished, ToolResult, TurnCompletion

from .support import RecordingProvider
from .tool_support import CTX, EchoLog, shapes, tool_bot


async def test_a_call_runs_and_the_model_answers_with_its_result() -> None:
    bot, tools = await tool_bot(system_prompt="sys")
    reply = await bot.complete('call add {"a": 2, "b": 3}', CTX)
    assert isinstance(reply, TurnCompletion)
    assert (reply.content, reply.finish_reason, reply.pending) == ('echo: {"sum": 5}', "stop", ())
    call = ToolCall("call_0", "add", '{"a": 2, "b": 3}')
    assert reply.tool_runs == (ToolFinished(call, ToolResult('{"sum": 5}')),)
    assert tools.calls == [("add", {"a": 2, "b": 3})]
    assert shapes(await bot.get_history(CTX)) == [
        ("user", 'call add {"a": 2, "b": 3}', (), None),
        ("assistant", "", ("add",), None),
        ("tool", '{"sum": 5}', (), "call_0"),
        ("assistant", 'echo: {"sum": 5}', (), None),
    ]
    assert await bot.chat("thanks", CTX) == "echo: thanks"  # the conversation goes on
    assert bot.tools is not None
    assert bot.tools.stats.snapshot().calls == {("bot", "add", "ok"): 1}
    await bot.close()


async def test_every_llm_call_offers_the_tools_and_the_request_settings() -> None:
    provider = RecordingProvider()
    provider.replies.append(Completion("", None, (ToolCall("x", "weather", "{}"),), "tool_calls"))
    bot, _ = await tool_bot(provider)
    await bot.complete("weather?", CTX, settings={"temperature": 0.2, "tool_choice": "required"})
    first, second = provider.settings
    assert first is not None and second is not None
    names = [t["function"]["name"] for t in first["tools"]]
    assert names[:2] == ["add", "weather"] and "deploy" in names  # approval tools offered here
    assert first["tools"][0]["function"]["description"] == "Adds a and b"
    assert (first["temperature"], first["tool_choice"]) == (0.2, "required")
    assert second["tools"] == first["tools"] and second["temperature"] == 0.2
    assert "tool_choice" not in second  # the request's choice holds for the first call only
    await bot.close()


async def test_a_parallel_call_runs_its_tools_concurrently_and_answers_in_call_order() -> None:
    bot, tools = await tool_bot()
    reply = await bot.complete("call pong\ncall ping", CTX)
    assert [(r.call.id, r.call.name, r.result) for r in reply.tool_runs] == [
        ("call_0", "pong", ToolResult("pong saw ping")),
        ("call_1", "ping", ToolResult("ping saw pong")),
    ]
    assert reply.content == "echo: pong saw ping\nping saw pong"
    assert sorted(tools.names()) == ["ping", "pong"]
    assert shapes(await bot.get_history(CTX))[1:4] == [
        ("assistant", "", ("pong", "ping"), None),
        ("tool", "pong saw ping", (), "call_0"),
        ("tool", "ping saw pong", (), "call_1"),
    ]
    await bot.close()


async def test_failing_tools_become_errors_the_model_reads() -> None:
    bot, _ = await tool_bot()
    reply = await bot.complete("call boom\ncall refuse\ncall add [1]", CTX)
    results = [r.result for r in reply.tool_runs]
    assert all(r.is_error for r in results)
    assert [r.content for r in results] == [
        "error: tool 'boom' failed (ValueError)",
        "error: the city is unknown",
        "error: the arguments of add must be a JSON object",
    ]
    assert "secret" not in reply.content and reply.finish_reason == "stop"
    history = await bot.get_history(CTX)
    assert [m.content for m in history if m.role == "tool"] == [r.content for r in results]
    assert "secret" not in repr(history)
    await bot.close()


async def test_a_slow_tool_times_out_as_a_tool_error() -> None:
    bot, tools = await tool_bot()
    started = time.monotonic()
    reply = await bot.complete("call slow", CTX)
    assert time.monotonic() - started < 2
    (run,) = reply.tool_runs
    assert run.result == ToolResult("error: slow did not answer within 0.1 seconds", True)
    assert reply.content == "echo: error: slow did not answer within 0.1 seconds"
    assert tools.names() == ["slow"]
    await bot.close()


async def test_the_deadline_cuts_tools_short_and_forces_an_answer() -> None:
    provider = RecordingProvider()
    slow = Completion("", Usage(1, 1), (ToolCall("s1", "slow", "{}"),), "tool_calls")
    provider.replies += [slow, slow]
    bot, _ = await tool_bot(provider, tools={"deadlineSeconds": 0.05, "maxToolSteps": 5})
    reply = await bot.complete("go", CTX)
    (run,) = reply.tool_runs  # one step: the deadline passed while it ran
    assert run.result.content.startswith("error: slow did not answer within 0.0")
    assert len(provider.prompts) == 2
    last = provider.settings[-1]
    assert last is not None and last["tool_choice"] == "none"
    # The second scripted call came back anyway: not run, the turn ends with what it said.
    assert (reply.content, reply.tool_calls, reply.finish_reason) == ("", (), "stop")
    assert reply.usage == Usage(2, 2)
    await bot.close()


async def test_max_tool_steps_then_one_answer_without_tools() -> None:
    provider = RecordingProvider()
    step = Completion("thinking", Usage(10, 1), (ToolCall("w", "weather", "{}"),), "tool_calls")
    provider.replies += [step, step, Completion("done", Usage(30, 2))]
    bot, tools = await tool_bot(provider, tools={"maxToolSteps": 2})
    reply = await bot.complete("go", CTX)
    assert tools.names() == ["weather", "weather"]
    assert [s and s.get("tool_choice") for s in provider.settings] == [None, None, "none"]
    assert (reply.content, reply.finish_reason) == ("done", "stop")
    assert reply.usage == Usage(50, 4)  # every LLM call of the turn
    assert [m.role for m in await bot.get_history(CTX)] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant"
    ]  # fmt: skip
    await bot.close()


async def test_calls_of_client_tools_end_the_loop_and_only_they_are_returned() -> None:
    provider = RecordingProvider()
    mixed = (ToolCall("s", "weather", "{}"), ToolCall("c", "client_fn", '{"x": 1}'))
    provider.replies.append(Completion("", None, mixed, "tool_calls"))
    bot, tools = await tool_bot(provider)
    client_tools = {"tools": [{"type": "function", "function": {"name": "client_fn"}}]}
    reply = await bot.complete_stored([ChatMessage("user", "q")], CTX, settings=client_tools)
    assert (reply.tool_calls, reply.finish_reason) == ((mixed[1],), "tool_calls")
    assert reply.tool_runs == () and tools.calls == []  # the server call did not run
    sent = provider.settings[0]
    assert sent is not None
    assert [t["function"]["name"] for t in sent["tools"]][-1] == "client_fn"
    assert "deploy" not in str(sent["tools"])  # no approval tools on the /v1 path
    # The client answers its call; the conversation goes on.
    answer = ChatMessage("tool", "42", tool_call_id="c")
    final = await bot.complete_stored([answer], CTX, settings=client_tools)
    assert final.content == "rec: 42"
    assert shapes(await bot.get_history(CTX)) == [
        ("user", "q", (), None),
        ("assistant", "", ("client_fn",), None),
        ("tool", "42", (), "c"),
        ("assistant", "rec: 42", (), None),
    ]
    await bot.close()


class RacingStore(MemoryConversationStore):
    """Stores another writer's turn right before this replica's first append."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def append(
        self, key: ConversationKey, messages: Messages, *, after: int | None = None
    ) -> int:
        if not self.raced:
            self.raced = True
            await super().append(key, [("user", "other"), ("assistant", "theirs")])
        return await super().append(key, messages, after=after)


async def test_a_turn_that_ran_a_tool_is_never_asked_again_on_a_concurrent_write() -> None:
    store = RacingStore()
    bot, tools = await tool_bot(storage=store)
    reply = await bot.complete("call weather", CTX)
    assert store.raced and tools.names() == ["weather"]  # ran once
    assert reply.content == "echo: sunny in Paris"
    roles = [m.role for m in await bot.get_history(CTX)]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    await bot.close()


async def test_a_turn_without_tool_runs_is_asked_again_on_a_concurrent_write() -> None:
    store = RacingStore()
    bot, _ = await tool_bot(storage=store)
    reply = await bot.complete("hello", CTX)
    assert store.raced and reply.content == "echo: hello"
    assert reply.usage is not None and reply.usage.completion_tokens == 4  # two calls summed
    assert [m.content for m in await bot.get_history(CTX)] == [
        "other", "theirs", "hello", "echo: hello"
    ]  # fmt: skip
    await bot.close()


def _clean(prompt: Sequence[ChatMessage]) -> bool:
    """The prompt starts at a user message, answers only calls it holds, and answers each call
    it holds (an LLM call is asked after all of a reply's calls are answered)."""
    answered = [m.tool_call_id for m in prompt if m.role == "tool"]
    called = [c.id for m in prompt for c in m.tool_calls]
    return prompt[0].role == "user" and sorted(answered) == sorted(called)


@pytest.mark.parametrize("window", range(9))
async def test_tool_messages_count_toward_the_window_which_starts_at_a_user_message(
    window: int,
) -> None:
    echo = EchoLog()
    bot, _ = await tool_bot(echo, memory={"maxMessages": window})
    await bot.complete('call weather\ncall add {"a": 1, "b": 1}', CTX)  # 5 messages
    await bot.complete("call pong\ncall ping", CTX)  # 5 more
    await bot.complete("next", CTX)
    for prompt in echo.prompts:  # every LLM call of every turn
        assert _clean(prompt), (window, prompt)
    history = echo.prompts[-1][:-1]
    assert len(history) <= window
    if window >= 5:
        assert [m.role for m in history[-5:]] == ["user", "assistant", "tool", "tool", "assistant"]
    else:
        assert history == []  # a window inside a turn: no user message to start at
    await bot.close()
