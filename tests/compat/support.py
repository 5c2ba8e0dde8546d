"""What every client of the compatibility suite sends and expects (plain data and checks).

The fake upstream's conventions (``runtime/testing/fake_openai.py``): a plain reply is
``"[fake-model] <system prompt> | <last user message>"``; a request with ``tools`` whose last user
message is ``call NAME {json}`` gets that tool call back (``finish_reason: "tool_calls"``); a
``response_format`` with a JSON schema gets a JSON object valid for it; a ``tool`` message in the
request is mentioned in the reply.
"""

from __future__ import annotations

import json
from typing import Any

from kubebots.runtime.testing import FakeOpenAIServer

#: The bot's system prompt (``default:gpt``): always the first message upstream.
SYSTEM = {"role": "system", "content": "be brief"}
CALL = 'call get_weather {"city": "Paris"}'
TOOL_RESULT = "sunny, 21 C"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
UNKNOWN_MODEL = "default:no-such-bot"


def reply(user: str) -> str:
    """The fake's plain reply through ``default:gpt`` to the last user message ``user``."""
    return f"[fake-model] be brief | {user}"


#: The fake's reply once the tool answered :data:`CALL` with :data:`TOOL_RESULT`.
TOOL_REPLY = f"{reply(CALL)} | tool get_weather: {TOOL_RESULT}"


def sent(fake: FakeOpenAIServer) -> dict[str, Any]:
    """The body of the one chat completion the upstream received since the last reset."""
    chats = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert len(chats) == 1, [r["path"] for r in fake.requests]
    body: dict[str, Any] = chats[0]["body"]
    assert body["model"] == "fake-model"
    assert body["messages"][0] == SYSTEM
    return body


def words(text: str) -> int:
    return len(text.split())


def assert_weather_call(name: str, arguments: str | dict[str, Any], call_id: str) -> None:
    """One tool call as the fake answers :data:`CALL`."""
    assert name == "get_weather"
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    assert args == {"city": "Paris"}
    assert isinstance(call_id, str) and call_id


def assert_tool_request(body: dict[str, Any], *, tool_choice: Any = None) -> None:
    """The upstream got the client's tool definition and :data:`CALL`."""
    assert body["tools"] == [WEATHER_TOOL]
    assert body["messages"][1:] == [{"role": "user", "content": CALL}]
    if tool_choice is not None:
        assert body["tool_choice"] == tool_choice


def assert_tool_round_trip(body: dict[str, Any], call_id: str) -> None:
    """The upstream got the assistant's tool call and the tool's answer, in order."""
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool"]
    assistant, tool = body["messages"][2], body["messages"][3]
    assert not assistant.get("content")
    assert assistant["tool_calls"] == [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": TOOL_RESULT}
