"""The echo provider and the fake OpenAI server share the ``call NAME ARGS`` convention: one call
per line, all at once (a parallel call), only when every line names a declared function."""

from __future__ import annotations

from typing import Any

from kubebots.runtime.llm.base import ChatMessage, ToolCall
from kubebots.runtime.llm.echo import EchoProvider, asked_calls
from kubebots.runtime.testing._fake_reply import FakeCall, reply_for

TOOLS: dict[str, Any] = {
    "tools": [
        {"type": "function", "function": {"name": "add"}},
        {"type": "function", "function": {"name": "weather"}},
    ]
}
ASK = 'call add {"a": 1, "b": 2}\n\n  call weather\n'


def test_every_line_is_a_call_in_order() -> None:
    assert asked_calls(ASK, TOOLS) == [("add", '{"a": 1, "b": 2}'), ("weather", "{}")]


def test_a_line_that_is_not_a_declared_call_makes_it_text() -> None:
    assert asked_calls(ASK + "call other", TOOLS) == []
    assert asked_calls(ASK + "and thanks", TOOLS) == []
    assert asked_calls(ASK, {**TOOLS, "tool_choice": "none"}) == []
    assert asked_calls(ASK, {}) == []


async def test_echo_and_fake_answer_a_parallel_call_with_their_ids() -> None:
    echo = await EchoProvider().complete([ChatMessage("user", ASK)], settings=TOOLS)
    assert echo.tool_calls == (
        ToolCall("call_0", "add", '{"a": 1, "b": 2}'),
        ToolCall("call_1", "weather", "{}"),
    )
    assert (echo.content, echo.finish_reason) == ("", "tool_calls")
    body = {"model": "m", "messages": [{"role": "user", "content": ASK}], **TOOLS}
    fake = reply_for(body)
    assert fake.tool_calls == (
        FakeCall("call_fake_0", "add", '{"a": 1, "b": 2}'),
        FakeCall("call_fake_1", "weather", "{}"),
    )
    assert (fake.content, fake.finish_reason) == (None, "tool_calls")
