"""langchain-openai's ``ChatOpenAI`` against ``kubebots serve`` (in the clients' own venv).

Each test runs one case of ``clients/langchain_client.py`` and checks its JSON result and what
reached the fake upstream behind ``default:gpt``.
"""

from __future__ import annotations

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import ClientRunner
from .support import CALL, SYSTEM, assert_weather_call, reply, sent


def test_invoke_forwards_messages_and_settings(
    langchain_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = langchain_client("invoke")
    body = sent(upstream)
    assert body["messages"] == [
        SYSTEM,
        {"role": "system", "content": "the client's own instructions"},
        {"role": "user", "content": "hello from langchain"},
    ]
    # ChatOpenAI sends max_tokens under OpenAI's current name
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0.25, 64, 7)
    assert result["content"] == reply("hello from langchain")
    assert result["finish_reason"] == "stop"
    assert result["usage"]["output_tokens"] == len(reply("hello from langchain").split())


def test_stream(langchain_client: ClientRunner, upstream: FakeOpenAIServer) -> None:
    result = langchain_client("stream")
    body = sent(upstream)
    assert body["stream"] is True
    assert body["messages"] == [SYSTEM, {"role": "user", "content": "stream to langchain"}]
    assert result["text"] == reply("stream to langchain")
    assert result["chunks"] >= 3


def test_bind_tools_returns_tool_calls(
    langchain_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = langchain_client("bind_tools")
    body = sent(upstream)
    assert body["messages"][1:] == [{"role": "user", "content": CALL}]
    [tool] = body["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert_weather_call(call["name"], call["args"], call["id"])


def test_streamed_bind_tools_assemble_the_tool_call(
    langchain_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = langchain_client("bind_tools_stream")
    body = sent(upstream)
    assert body["stream"] is True
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert result["chunks"] >= 3
    assert result["finish_reason"] == "tool_calls"
    [call] = result["tool_calls"]
    assert_weather_call(call["name"], call["args"], call["id"])


#: The fake's sample of the Weather schema (strings "fake", numbers 0, booleans true).
SAMPLE = {"city": "fake", "temperature_c": 0.0, "sunny": True}


def test_with_structured_output_json_schema(
    langchain_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = langchain_client("structured_json_schema")
    response_format = sent(upstream)["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Weather"
    schema = response_format["json_schema"]["schema"]
    assert set(schema["properties"]) == set(SAMPLE)
    assert result["report"] == SAMPLE  # parsed into the client's pydantic model


def test_with_structured_output_function_calling(
    langchain_client: ClientRunner, upstream: FakeOpenAIServer
) -> None:
    result = langchain_client("structured_function_calling")
    body = sent(upstream)
    [tool] = body["tools"]
    assert tool["function"]["name"] == "Weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    assert result["report"] == SAMPLE  # the forced tool call, parsed into the model
