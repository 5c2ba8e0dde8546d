"""Tool calls in a stored conversation (``X-Conversation-Id``), with the official SDK.

The request sends only what is new: the user's message, then the tool results; the runtime
keeps the assistant's tool calls, so the upstream sees system + user + assistant(tool_calls) +
tool, and the conversation's history shows the four messages in order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A
from .helpers import TIMEOUT, conversation_path, default_bots_server
from .test_v1_tools import ASK, KEY_A, streamed_calls
from .v1_support import WEATHER_TOOL, assert_openai_error, upstream_body

TOOLS: Any = [WEATHER_TOOL]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    with default_bots_server(tmp_path_factory.mktemp("v1stored"), fake_llm) as running:
        yield running


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


def history(server: ThreadedServer, conversation: str) -> list[dict[str, Any]]:
    response = httpx.get(
        server.url + conversation_path("default:gpt", conversation),
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def ask_for_the_weather(client: openai.OpenAI, conversation: str, *, stream: bool) -> str:
    """The first request: the model asks for ``get_weather``; the call's id."""
    headers = {"X-Conversation-Id": conversation}
    if not stream:
        completion = client.chat.completions.create(
            model="default:gpt", messages=ASK, tools=TOOLS, extra_headers=headers
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls
        return choice.message.tool_calls[0].id
    with client.chat.completions.create(
        model="default:gpt", messages=ASK, tools=TOOLS, extra_headers=headers, stream=True
    ) as chunks:
        received = list(chunks)
    assert [c.choices[0].finish_reason for c in received if c.choices][-1] == "tool_calls"
    return streamed_calls(received)[0]["id"]


def answer_the_call(client: openai.OpenAI, conversation: str, call_id: str, *, stream: bool) -> str:
    """The second request: the tool's result only; the reply's text."""
    result: Any = [{"role": "tool", "tool_call_id": call_id, "content": "sunny, 24 C"}]
    headers = {"X-Conversation-Id": conversation}
    if not stream:
        completion = client.chat.completions.create(
            model="default:gpt", messages=result, tools=TOOLS, extra_headers=headers
        )
        assert completion.choices[0].finish_reason == "stop"
        return completion.choices[0].message.content or ""
    with client.chat.completions.create(
        model="default:gpt", messages=result, tools=TOOLS, extra_headers=headers, stream=True
    ) as chunks:
        received = list(chunks)
    assert [c.choices[0].finish_reason for c in received if c.choices][-1] == "stop"
    return "".join(c.choices[0].delta.content or "" for c in received if c.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_stored_tool_round_trip(
    client: openai.OpenAI, server: ThreadedServer, fake_llm: FakeOpenAIServer, stream: bool
) -> None:
    conversation = f"tools-{uuid.uuid4().hex}"
    call_id = ask_for_the_weather(client, conversation, stream=stream)
    assert upstream_body(fake_llm)["tools"] == [WEATHER_TOOL]

    reply = answer_the_call(client, conversation, call_id, stream=stream)
    assert "tool get_weather: sunny, 24 C" in reply
    upstream = upstream_body(fake_llm)["messages"]
    assert upstream[:2] == [{"role": "system", "content": "be brief"}, ASK[0]]
    assert upstream[2]["role"] == "assistant"
    assert [(c["id"], c["function"]["name"]) for c in upstream[2]["tool_calls"]] == [
        (call_id, "get_weather")
    ]
    assert json.loads(upstream[2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert upstream[3] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 24 C"}
    assert len(upstream) == 4

    stored = history(server, conversation)
    assert [(m["seq"], m["role"]) for m in stored] == [
        (1, "user"),
        (2, "assistant"),
        (3, "tool"),
        (4, "assistant"),
    ]
    assert stored[0]["content"] == ASK[0]["content"]
    # no tool fields
    assert set(stored[0]) == {"seq", "role", "content", "created_at", "generation"}
    assert stored[1]["tool_calls"] == [
        {
            "id": call_id,
            "type": "function",
            "function": {
                "name": "get_weather",
                "arguments": upstream[2]["tool_calls"][0]["function"]["arguments"],
            },
        }
    ]
    assert "tool_call_id" not in stored[1]
    assert stored[2]["tool_call_id"] == call_id and stored[2]["content"] == "sunny, 24 C"
    assert "tool_calls" not in stored[2]
    assert stored[3]["content"] == reply and set(stored[3]) == set(stored[0])


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_tool_message_answering_an_unknown_call_is_refused(
    server: ThreadedServer, client: openai.OpenAI, stream: bool
) -> None:
    conversation = f"unknown-{uuid.uuid4().hex}"
    call_id = ask_for_the_weather(client, conversation, stream=False)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "default:gpt",
            "messages": [{"role": "tool", "tool_call_id": "call_nope", "content": "x"}],
            "tools": TOOLS,
            "stream": stream,
        },
        headers={**HEADERS_A, "X-Conversation-Id": conversation},
        timeout=TIMEOUT,
    )
    error = assert_openai_error(response, 400, "invalid_request_error", param="message")
    assert "call_nope" in error["message"] and call_id in error["message"]
    assert [m["role"] for m in history(server, conversation)] == ["user", "assistant"]


def test_a_user_message_cannot_skip_pending_tool_calls(
    server: ThreadedServer, client: openai.OpenAI
) -> None:
    conversation = f"pending-{uuid.uuid4().hex}"
    call_id = ask_for_the_weather(client, conversation, stream=False)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "default:gpt", "messages": [{"role": "user", "content": "never mind"}]},
        headers={**HEADERS_A, "X-Conversation-Id": conversation},
        timeout=TIMEOUT,
    )
    error = assert_openai_error(response, 400, "invalid_request_error", param="message")
    assert call_id in error["message"]


def test_tool_messages_without_pending_calls_are_refused(server: ThreadedServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "default:gpt",
            "messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}],
        },
        headers={**HEADERS_A, "X-Conversation-Id": f"fresh-{uuid.uuid4().hex}"},
        timeout=TIMEOUT,
    )
    assert_openai_error(response, 400, "invalid_request_error", param="message")
