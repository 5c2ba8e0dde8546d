"""The offline echo provider: deterministic replies, word-count usage, stream == complete, and
its conventions for tool calls, tool results and ``max_tokens``."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from kubebots.runtime.llm import (
    ChatMessage,
    Completion,
    Delta,
    EchoProvider,
    LLMProvider,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    build_provider,
    joined,
)
from kubebots.runtime.schema.llm import LLMConfig

HISTORY = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "first question"),
    ChatMessage("assistant", "echo: first question"),
    ChatMessage("user", "second  question, with   spaces "),
]


async def test_complete_echoes_the_last_user_message_with_word_counts() -> None:
    provider = EchoProvider()
    completion = await provider.complete(HISTORY)
    assert completion == Completion(
        "echo: second  question, with   spaces ",
        usage=Usage(prompt_tokens=3 + 2 + 3 + 4, completion_tokens=5),
    )
    assert completion.usage is not None and completion.usage.total_tokens == 17


async def test_complete_is_deterministic() -> None:
    provider = EchoProvider()
    assert [await provider.complete(HISTORY) for _ in range(3)] == [
        await EchoProvider().complete(HISTORY)
    ] * 3


async def test_stream_yields_words_that_join_to_the_complete_text() -> None:
    provider = EchoProvider()
    deltas = [delta async for delta in provider.stream(HISTORY)]
    words = ["echo: ", "second  ", "question, ", "with   ", "spaces "]
    assert deltas == [*(Delta(w) for w in words), Delta(finish_reason="stop")]
    completion = await provider.complete(HISTORY)
    assert joined(deltas, completion.usage) == completion


async def test_without_a_user_message_the_reply_is_the_bare_prefix() -> None:
    provider = EchoProvider()
    assert (await provider.complete([ChatMessage("system", "hi")])).content == "echo: "
    assert [d.content async for d in provider.stream([])] == ["echo: ", ""]


async def test_model_name_is_kept_and_it_is_an_llm_provider() -> None:
    provider = EchoProvider("my-echo")
    assert provider.model == "my-echo"
    assert isinstance(provider, LLMProvider)


async def test_close_is_idempotent() -> None:
    provider = EchoProvider()
    await provider.close()
    await provider.close()
    assert provider.closed


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = 'call get_weather {"city": "Paris"}'


async def both(
    provider: EchoProvider, messages: Sequence[ChatMessage], settings: Settings
) -> Completion:
    """The completion, checked to equal what the stream's deltas join to."""
    completion = await provider.complete(messages, settings=settings)
    usages: list[Usage] = []
    deltas = [d async for d in provider.stream(messages, settings=settings, on_usage=usages.append)]
    assert usages == [completion.usage]
    assert joined(deltas, completion.usage) == completion
    return completion


async def test_a_call_message_with_tools_is_answered_with_that_tool_call() -> None:
    completion = await both(EchoProvider(), [ChatMessage("user", CALL)], {"tools": [WEATHER]})
    assert completion.content == ""
    assert completion.tool_calls == (ToolCall("call_0", "get_weather", '{"city": "Paris"}'),)
    assert completion.finish_reason == "tool_calls"
    assert json.loads(completion.tool_calls[0].arguments) == {"city": "Paris"}


async def test_the_call_stream_sends_id_and_name_then_arguments() -> None:
    messages = [ChatMessage("user", CALL)]
    deltas = [d async for d in EchoProvider().stream(messages, settings={"tools": [WEATHER]})]
    assert deltas == [
        Delta(tool_calls=(ToolCallDelta(0, "call_0", "get_weather"),)),
        Delta(tool_calls=(ToolCallDelta(0, arguments='{"city": "Paris"}'),)),
        Delta(finish_reason="tool_calls"),
    ]


@pytest.mark.parametrize(
    ("text", "settings"),
    [
        (CALL, {}),  # no tools declared
        (CALL, {"tools": [WEATHER], "tool_choice": "none"}),
        ('call get_time {"tz": "UTC"}', {"tools": [WEATHER]}),  # not a declared tool
        ("please call get_weather", {"tools": [WEATHER]}),  # not at the start
    ],
)
async def test_otherwise_call_messages_are_echoed(text: str, settings: Settings) -> None:
    completion = await both(EchoProvider(), [ChatMessage("user", text)], settings)
    assert (completion.content, completion.tool_calls) == (f"echo: {text}", ())
    assert completion.finish_reason == "stop"


async def test_a_call_without_arguments_gets_an_empty_object() -> None:
    completion = await EchoProvider().complete(
        [ChatMessage("user", "call get_weather")], settings={"tools": [WEATHER]}
    )
    assert completion.tool_calls == (ToolCall("call_0", "get_weather", "{}"),)


async def test_tool_results_are_echoed_and_do_not_call_again() -> None:
    call = ToolCall("call_0", "get_weather", '{"city": "Paris"}')
    messages = [
        ChatMessage("user", CALL),
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", "18C and sunny", tool_call_id="call_0"),
    ]
    completion = await both(EchoProvider(), messages, {"tools": [WEATHER]})
    assert (completion.content, completion.tool_calls) == ("echo: 18C and sunny", ())
    assert completion.usage == Usage(prompt_tokens=4 + 2 + 3, completion_tokens=4)


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_cuts_the_words_and_says_length(name: str) -> None:
    messages = [ChatMessage("user", "one two three four")]
    completion = await both(EchoProvider(), messages, {name: 3})
    assert completion.content == "echo: one two "
    assert completion.finish_reason == "length"
    assert completion.usage == Usage(prompt_tokens=4, completion_tokens=3)
    uncut = await both(EchoProvider(), messages, {name: 5})
    assert (uncut.content, uncut.finish_reason) == ("echo: one two three four", "stop")


async def test_the_bots_max_tokens_is_the_default_and_a_request_wins() -> None:
    provider = build_provider(LLMConfig(provider="echo", max_tokens=2), api_key=None)
    assert isinstance(provider, EchoProvider)
    messages = [ChatMessage("user", "one two three")]
    assert (await provider.complete(messages)).content == "echo: one "
    wider = await provider.complete(messages, settings={"max_tokens": 10})
    assert (wider.content, wider.finish_reason) == ("echo: one two three", "stop")
