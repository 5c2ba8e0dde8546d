"""litellm as a client (``litellm.completion``, model ``openai/default:gpt``) of ``kubebots serve``.

Each test runs one case of ``clients/litellm_client.py`` in the clients' own venv and checks its
JSON result and what reached the fake upstream behind ``default:gpt``.
"""

from __future__ import annotations

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import ClientRunner
from .support import (
    SYSTEM,
    UNKNOWN_MODEL,
    assert_tool_request,
    assert_weather_call,
    reply,
    sent,
    words,
)


def test_chat_forwards_messages_and_settings(
    litellm_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = litellm_client("chat")
    body = sent(upstream)
    assert body["messages"] == [
        SYSTEM,
        {"role": "system", "content": "the client's own instructions"},
        {"role": "user", "content": "hello from litellm"},
    ]
    assert (body["temperature"], body["max_tokens"]) == (0.5, 64)
    assert result["content"] == reply("hello from litellm")
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == words(reply("hello from litellm"))


def test_stream(litellm_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = litellm_client("stream")
    body = sent(upstream)
    assert body["stream"] is True
    assert body["messages"] == [SYSTEM, {"role": "user", "content": "stream to litellm"}]
    assert result["text"] == reply("stream to litellm")
    assert result["finish_reasons"] == ["stop"]


def test_tool_call(litellm_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = litellm_client("tools")
    assert_tool_request(sent(upstream))
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert_weather_call(call["name"], call["arguments"], call["id"])


def test_not_found_error_carries_the_servers_message(
    litellm_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    error = litellm_client("not_found")["error"]
    assert error["class"] == "NotFoundError"
    assert error["status"] == 404
    assert f"Bot with ID '{UNKNOWN_MODEL}' not found" in error["message"]
    assert upstream.requests == []
