"""The npm ``openai`` package under the machine's node against ``kubebots serve``.

Each test runs one case of ``clients/openai_node.cjs`` (a fresh node process) and checks its
JSON result and what reached the fake upstream behind ``default:gpt``.
"""

from __future__ import annotations

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import MODEL, ClientRunner
from .support import (
    SYSTEM,
    TOOL_REPLY,
    UNKNOWN_MODEL,
    assert_tool_request,
    assert_tool_round_trip,
    assert_weather_call,
    reply,
    sent,
    words,
)


def test_chat(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = node_client("chat")
    assert sent(upstream)["messages"] == [
        SYSTEM,
        {"role": "system", "content": "the client's own instructions"},
        {"role": "user", "content": "hello from node"},
    ]
    assert result["object"] == "chat.completion"
    assert result["model"] == MODEL
    assert result["content"] == reply("hello from node")
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == words(reply("hello from node"))


def test_stream(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = node_client("stream")
    body = sent(upstream)
    assert body["stream"] is True
    assert body["messages"] == [SYSTEM, {"role": "user", "content": "stream to node"}]
    assert result["text"] == reply("stream to node")
    assert result["finish_reasons"] == ["stop"]
    assert result["usage"]["completion_tokens"] == words(reply("stream to node"))
    assert result["chunks"] >= 4


def test_tool_call(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = node_client("tools")
    assert_tool_request(sent(upstream))
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert call["type"] == "function"
    assert_weather_call(call["name"], call["arguments"], call["id"])


def test_streamed_tool_call(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = node_client("tools_stream")
    body = sent(upstream)
    assert body["stream"] is True
    assert_tool_request(body)
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert_weather_call(call["name"], call["arguments"], call["id"])


def test_tool_result_round_trip(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = node_client("tool_result")
    assert_tool_round_trip(sent(upstream), "call_node_1")
    assert result["finish_reason"] == "stop"
    assert result["content"] == TOOL_REPLY


def test_models_retrieve(node_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    assert node_client("models_retrieve") == {
        "id": MODEL,
        "object": "model",
        "owned_by": "kubebots",
    }
    assert upstream.requests == []


def test_not_found_error_carries_the_servers_message(
    node_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    error = node_client("not_found")["error"]
    assert error["class"] == "NotFoundError"
    assert error["status"] == 404
    assert UNKNOWN_MODEL in error["body"]["message"]
    assert error["message"] == f"404 {error['body']['message']}"
    assert error["code"] == "model_not_found"
    assert upstream.requests == []


def test_bad_request_error_names_the_param(
    node_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    error = node_client("bad_request")["error"]
    assert error["class"] == "BadRequestError"
    assert error["status"] == 400
    assert error["param"] == "temperature"
    assert error["type"] == "invalid_request_error"
    assert error["message"] == f"400 {error['body']['message']}"
    assert upstream.requests == []
