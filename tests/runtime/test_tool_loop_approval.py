"""Approval: a call of a tool that requires it stops the turn (the reply's other calls run, the
turn is stored so far); ``resume`` runs the approved calls, answers the rejected ones as rejected
and goes on; decisions must name exactly the calls waiting; a new message waits for them."""

from __future__ import annotations

import pytest

from kubebots.runtime import MessageRejectedError
from kubebots.runtime.llm.base import ChatMessage, Completion, Delta, ToolCall
from kubebots.runtime.tools import ApprovalRequired, ToolFinished, ToolResult, ToolStarted

from .support import RecordingProvider
from .tool_support import CTX, shapes, tool_bot

ASK = 'call weather {"city": "Oslo"}\ncall deploy {"env": "staging"}\ncall wipe'
DEPLOY = ToolCall("call_1", "deploy", '{"env": "staging"}')
WIPE = ToolCall("call_2", "wipe", "{}")
STOPPED = [
    ("user", ASK, (), None),
    ("assistant", "", ("weather", "deploy", "wipe"), None),
    ("tool", "sunny in Oslo", (), "call_0"),
]


async def test_a_turn_stops_for_approval_after_running_the_other_calls() -> None:
    bot, tools = await tool_bot()
    reply = await bot.complete(ASK, CTX)
    assert (reply.content, reply.finish_reason, reply.tool_calls) == ("", "tool_calls", ())
    assert reply.pending == (DEPLOY, WIPE)
    assert [r.call.name for r in reply.tool_runs] == ["weather"]
    assert tools.names() == ["weather"]
    assert shapes(await bot.get_history(CTX)) == STOPPED
    await bot.close()


async def test_approved_calls_run_rejected_ones_do_not_and_the_turn_goes_on() -> None:
    bot, tools = await tool_bot()
    await bot.complete(ASK, CTX)
    reply = await bot.resume(CTX, {"call_2": False, "call_1": True})
    assert tools.names() == ["weather", "deploy"]  # wipe was rejected
    rejected = ToolResult("the user rejected this call of wipe", is_error=True)
    assert reply.tool_runs == (
        ToolFinished(DEPLOY, ToolResult("deployed to staging")),
        ToolFinished(WIPE, rejected),
    )
    assert reply.content == "echo: sunny in Oslo\ndeployed to staging\n" + rejected.content
    assert (reply.finish_reason, reply.pending) == ("stop", ())
    assert shapes(await bot.get_history(CTX)) == [
        *STOPPED,
        ("tool", "deployed to staging", (), "call_1"),
        ("tool", rejected.content, (), "call_2"),
        ("assistant", reply.content, (), None),
    ]
    assert bot.tools is not None
    calls = bot.tools.stats.snapshot().calls
    assert (calls[("bot", "deploy", "ok")], calls[("bot", "wipe", "rejected")]) == (1, 1)
    assert await bot.chat("thanks", CTX) == "echo: thanks"
    await bot.close()


@pytest.mark.parametrize(
    ("decisions", "match"),
    [
        ({}, r"waiting are \['call_1', 'call_2'\]"),
        ({"call_1": True}, r"waiting are \['call_1', 'call_2'\]"),
        (
            {"call_1": True, "call_2": True, "call_9": False},
            r"decide \['call_1', 'call_2', 'call_9'",
        ),
        ({"call_0": True, "call_1": True}, "waiting are"),  # already answered
        ({"call_1": True, "call_2": "yes"}, "approve .true. or reject .false."),
    ],
)
async def test_decisions_must_name_exactly_the_calls_waiting(
    decisions: dict[str, bool], match: str
) -> None:
    bot, tools = await tool_bot()
    await bot.complete(ASK, CTX)
    with pytest.raises(MessageRejectedError, match=match) as caught:
        await bot.resume(CTX, decisions)
    assert caught.value.detail == {"pending_tool_call_ids": ["call_1", "call_2"]}
    with pytest.raises(MessageRejectedError, match=match):
        _ = [e async for e in bot.stream_resume(CTX, decisions)]
    assert tools.names() == ["weather"] and len(await bot.get_history(CTX)) == 3
    await bot.close()


async def test_nothing_to_resume() -> None:
    bot, _ = await tool_bot()
    with pytest.raises(MessageRejectedError, match=r"no tool calls .* wait for approval"):
        await bot.resume(CTX, {"call_0": True})
    await bot.complete("call weather", CTX)
    with pytest.raises(MessageRejectedError, match=r"no tool calls .* wait for approval"):
        await bot.resume(CTX, {"call_0": True})
    await bot.close()


async def test_a_new_message_waits_for_the_decisions() -> None:
    bot, tools = await tool_bot()
    await bot.complete(ASK, CTX)
    expected = r"tool calls \['call_1', 'call_2'\] wait for approval"
    with pytest.raises(MessageRejectedError, match=expected):
        await bot.complete("never mind", CTX)
    with pytest.raises(MessageRejectedError, match=expected):
        _ = [d async for d in bot.stream_chat("never mind", CTX)]
    # Nor may a client answer them itself (the OpenAI-compatible stored route).
    fake = [ChatMessage("tool", "done", tool_call_id=i) for i in ("call_1", "call_2")]
    with pytest.raises(MessageRejectedError, match=expected):
        await bot.complete_stored(fake, CTX)
    assert tools.names() == ["weather"] and len(await bot.get_history(CTX)) == 3
    await bot.close()


async def test_a_resumed_turn_may_stop_for_approval_again() -> None:
    provider = RecordingProvider()
    bot, tools = await tool_bot(provider)
    provider.replies.append(_calls(ToolCall("a", "deploy", "{}")))
    provider.replies.append(_calls(ToolCall("b", "wipe", "{}")))
    first = await bot.complete("go", CTX)
    assert first.pending == (ToolCall("a", "deploy", "{}"),)
    second = await bot.resume(CTX, {"a": True})
    assert second.pending == (ToolCall("b", "wipe", "{}"),)
    third = await bot.resume(CTX, {"b": False})
    assert third.content == "rec: the user rejected this call of wipe"
    assert tools.names() == ["deploy"]
    assert [m.role for m in await bot.get_history(CTX)] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant"
    ]  # fmt: skip
    await bot.close()


async def test_the_prompt_of_a_resumed_turn_holds_the_call_group_whatever_the_window() -> None:
    provider = RecordingProvider()
    bot, _ = await tool_bot(provider, system_prompt="sys", memory={"maxMessages": 1})
    calls = [ToolCall(f"w{i}", "weather", "{}") for i in range(3)]
    provider.replies.append(_calls(*calls, ToolCall("d", "deploy", "{}")))
    await bot.complete("go", CTX)  # user, assistant, 3 tool answers: more than the window
    await bot.resume(CTX, {"d": True})
    prompt = provider.prompts[-1]
    assert [m.role for m in prompt] == ["system", "assistant", *["tool"] * 4]
    assert [m.tool_call_id for m in prompt[2:]] == ["w0", "w1", "w2", "d"]
    await bot.close()


async def test_streamed_approval_and_resume_events() -> None:
    bot, _ = await tool_bot()
    events = [e async for e in bot.stream_turn(ASK, CTX)]
    weather = ToolCall("call_0", "weather", '{"city": "Oslo"}')
    assert events == [
        ToolStarted(weather),
        ToolFinished(weather, ToolResult("sunny in Oslo")),
        ApprovalRequired((DEPLOY, WIPE)),
        Delta(finish_reason="tool_calls"),
    ]
    resumed = [e async for e in bot.stream_resume(CTX, {"call_1": True, "call_2": True})]
    assert resumed[:4] == [
        ToolStarted(DEPLOY),
        ToolStarted(WIPE),
        ToolFinished(DEPLOY, ToolResult("deployed to staging")),
        ToolFinished(WIPE, ToolResult("wiped")),
    ]
    assert all(isinstance(e, Delta) for e in resumed[4:])
    text = "".join(e.content for e in resumed[4:] if isinstance(e, Delta))
    assert text == "echo: sunny in Oslo\ndeployed to staging\nwiped"
    assert resumed[-1] == Delta(finish_reason="stop")
    history = await bot.get_history(CTX)
    assert (history[-1].role, history[-1].content) == ("assistant", text)
    await bot.close()


def _calls(*calls: ToolCall) -> Completion:
    return Completion("", None, calls, "tool_calls")
