"""Tool calls through ``/v1/chat/completions`` with the official SDK, stream and non-stream.

``default:gpt`` is an ``openai`` bot on the fake upstream, ``default:echo`` the echo provider;
both answer a request declaring ``tools`` whose last user message is ``call NAME ARGS`` with that
call (``finish_reason: "tool_calls"``), and mention the tool results they are sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .helpers import TIMEOUT, default_bots_server
from .v1_support import WEATHER_TOOL, upstream_body

KEY_A = "key-a-0123456789"
ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": 'call get_weather {"city": "Paris"}'}
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    with default_bots_server(tmp_path_factory.mktemp("v1tools"), fake_llm) as running:
        yield running


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


def streamed_calls(chunks: list[ChatCompletionChunk]) -> dict[int, dict[str, str]]:
    """The tool calls a stream's deltas assemble, as an SDK user assembles them."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            if piece.id:
                assert not call["id"], "the id comes once, in the call's first piece"
                call["id"] = piece.id
                assert piece.type == "function"
            if piece.function and piece.function.name:
                call["name"] = piece.function.name
            if piece.function and piece.function.arguments:
                call["arguments"] += piece.function.arguments
    return calls


@pytest.mark.parametrize("bot_id", ["default:gpt", "default:echo"])
def test_tool_call_non_stream(client: openai.OpenAI, bot_id: str) -> None:
    completion = client.chat.completions.create(
        model=bot_id,
        messages=ASK,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert completion.usage is not None and completion.usage.completion_tokens > 0


@pytest.mark.parametrize("bot_id", ["default:gpt", "default:echo"])
def test_tool_call_stream(client: openai.OpenAI, bot_id: str) -> None:
    with client.chat.completions.create(
        model=bot_id,
        messages=ASK,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    calls = streamed_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tools_reach_the_upstream_and_results_come_back(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer
) -> None:
    first = client.chat.completions.create(
        model="default:gpt",
        messages=ASK,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    sent = upstream_body(fake_llm)
    assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "auto"
    message = first.choices[0].message
    assert message.tool_calls
    call = message.tool_calls[0]
    # The client sends the assistant's call back (as the SDK returned it) with the result.
    history: list[Any] = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"},
    ]
    second = client.chat.completions.create(
        model="default:gpt",
        messages=history,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    upstream = upstream_body(fake_llm)["messages"]
    assert upstream[0] == {"role": "system", "content": "be brief"}
    assert upstream[1] == ASK[0]
    assert upstream[2]["role"] == "assistant"
    assert upstream[2]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},  # type: ignore[union-attr]
        }
    ]
    assert upstream[3] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert answer.message.content is not None
    assert "tool get_weather: sunny, 24 C" in answer.message.content


def test_the_echo_bot_answers_a_tool_result(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default:echo",
        messages=[
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "rainy"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content == "echo: rainy"
    assert completion.choices[0].finish_reason == "stop"


def test_tool_choice_none_gets_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default:echo",
        messages=ASK,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
