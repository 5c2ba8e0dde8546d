"""Request settings and tool calls through ``OpenAIProvider`` and the real ``openai`` client,
against the fake upstream: what reaches the wire, and what comes back (calls, finish reasons,
JSON replies, usage), streamed and not."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from kubebots.runtime.llm import (
    ChatMessage,
    Completion,
    Delta,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    joined,
)
from kubebots.runtime.llm.openai_provider import OpenAIProvider
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import MODEL, ProviderFactory

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
ASK = [
    ChatMessage("system", "Use tools."),
    ChatMessage("user", 'call get_weather {"city":"Paris"}'),
]
CALL = ToolCall("call_fake_0", "get_weather", '{"city":"Paris"}')
#: Every setting the /v1 route forwards, plus an endpoint's own (vLLM's ``top_k``).
SETTINGS: dict[str, Any] = {
    "temperature": 1.5,
    "top_p": 0.5,
    "max_tokens": 40,
    "stop": ["\n\n", "END"],
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "response_format": {"type": "text"},
    "tools": [WEATHER],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "user": "end-user-1",
    "top_k": 5,
}


async def both(
    provider: OpenAIProvider, messages: list[ChatMessage], settings: Settings
) -> Completion:
    """The completion, checked to equal what the stream's deltas join to (usage included)."""
    completion = await provider.complete(messages, settings=settings)
    usages: list[Usage] = []
    deltas = [d async for d in provider.stream(messages, settings=settings, on_usage=usages.append)]
    assert usages == [completion.usage]
    assert joined(deltas, completion.usage) == completion
    return completion


async def test_every_setting_reaches_the_upstream_over_the_bots_defaults(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    provider = make_provider(temperature=0.2, max_tokens=512)
    await both(provider, [*ASK[:1], ChatMessage("user", "hi")], SETTINGS)
    plain, streamed = (r["body"] for r in fake_openai.requests)
    for body in (plain, streamed):
        assert {k: body[k] for k in SETTINGS} == SETTINGS  # the request wins over 0.2 / 512
        assert body["model"] == MODEL
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


async def test_the_bots_defaults_fill_in_what_a_request_leaves_out(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    provider = make_provider(temperature=0.2, max_tokens=512)
    await provider.complete(ASK, settings={"seed": 1})
    await provider.complete(ASK, settings={"max_completion_tokens": 30})
    first, second = (r["body"] for r in fake_openai.requests)
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.2, 512, 1)
    # max_completion_tokens replaces the default max_tokens (the upstream refuses both)
    assert second["max_completion_tokens"] == 30
    assert "max_tokens" not in second


@pytest.mark.parametrize("name", ["model", "messages", "stream", "stream_options", "extra_body"])
async def test_settings_may_not_name_what_the_provider_sets(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer, name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        await make_provider().complete(ASK, settings={name: "x"})
    with pytest.raises(ValueError, match=name):
        await anext(make_provider().stream(ASK, settings={name: "x"}))
    assert fake_openai.requests == []


async def test_a_tool_call_round_trip(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    provider = make_provider()
    settings = {"tools": [WEATHER]}
    asked = await both(provider, ASK, settings)
    assert asked.content == ""
    assert asked.tool_calls == (CALL,)
    assert asked.finish_reason == "tool_calls"
    answered = [
        *ASK,
        ChatMessage("assistant", "", tool_calls=asked.tool_calls),
        ChatMessage("tool", '{"temp": 18}', tool_call_id=CALL.id),
    ]
    final = await both(provider, answered, settings)
    assert (
        final.content
        == f'[{MODEL}] Use tools. | {ASK[1].content} | tool get_weather: {{"temp": 18}}'
    )
    assert (final.tool_calls, final.finish_reason) == ((), "stop")
    wire = fake_openai.requests[-1]["body"]["messages"]
    assert wire[2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 18}', "tool_call_id": "call_fake_0"},
    ]


async def test_a_streamed_tool_call_comes_as_openais_deltas(
    make_provider: ProviderFactory,
) -> None:
    deltas = [d async for d in make_provider().stream(ASK, settings={"tools": [WEATHER]})]
    first, *arguments, last = deltas
    assert first == Delta(tool_calls=(ToolCallDelta(0, "call_fake_0", "get_weather"),))
    assert len(arguments) > 1  # the arguments come in pieces
    assert all(d.tool_calls[0].id is None and d.tool_calls[0].name is None for d in arguments)
    assert "".join(d.tool_calls[0].arguments for d in arguments) == CALL.arguments
    assert last == Delta(finish_reason="tool_calls")


async def test_scripted_parallel_calls_keep_their_order(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    calls = [("get_weather", '{"city": "Paris", "days": 1}'), ("get_weather", '{"city": "Oslo"}')]
    fake_openai.script("Checking both.", tool_calls=calls)
    fake_openai.script("Checking both.", tool_calls=calls)
    completion = await both(make_provider(), ASK, {"tools": [WEATHER]})
    assert completion.content == "Checking both."
    assert completion.tool_calls == tuple(
        ToolCall(f"call_fake_{i}", name, arguments) for i, (name, arguments) in enumerate(calls)
    )


async def test_a_forced_tool_choice_calls_with_schema_valid_arguments(
    make_provider: ProviderFactory,
) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    messages = [ChatMessage("user", "what is the weather like?")]
    completion = await both(make_provider(), messages, {"tools": [WEATHER], "tool_choice": forced})
    (call,) = completion.tool_calls
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER["function"]["parameters"])


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "minLength": 6},
        "confidence": {"type": "number", "minimum": 0.5},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2},
        "source": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "final": {"type": "boolean"},
        "meta": {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}},
    },
    "required": ["answer", "confidence", "tags", "source", "final", "meta"],
    "additionalProperties": False,
}


async def test_a_json_schema_response_format_gets_a_valid_json_reply(
    make_provider: ProviderFactory,
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    messages = [ChatMessage("user", "answer in JSON")]
    completion = await both(make_provider(), messages, {"response_format": response_format})
    jsonschema.validate(json.loads(completion.content), SCHEMA)


async def test_a_json_object_response_format_gets_a_json_object(
    make_provider: ProviderFactory,
) -> None:
    messages = [ChatMessage("user", "answer in JSON")]
    settings = {"response_format": {"type": "json_object"}}
    completion = await both(make_provider(), messages, settings)
    assert json.loads(completion.content) == {"reply": f"[{MODEL}] - | answer in JSON"}


async def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    make_provider: ProviderFactory,
) -> None:
    messages = [ChatMessage("user", "a b c d e f")]
    completion = await both(make_provider(), messages, {"max_tokens": 3})
    assert completion.content == f"[{MODEL}] - | "
    assert completion.finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    # the Bot's maxTokens is the default
    default = await both(make_provider(max_tokens=4), messages, {})
    assert (default.content, default.finish_reason) == (f"[{MODEL}] - | a ", "length")
