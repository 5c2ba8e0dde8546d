"""What the ``/v1`` tests share: a tool, OpenAI's error shape, the fake's last request."""

from __future__ import annotations

from typing import Any

from kubebots.runtime.testing import FakeOpenAIServer

from .helpers import assert_error

#: A function tool, as clients declare it.
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}

#: The keys of OpenAI's error object.
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


def assert_openai_error(
    response: Any,
    status: int,
    kind: str,
    *,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """``response`` (httpx's, or the SDK's) is a ``status`` in OpenAI's error shape of type
    ``kind`` with ``code`` and ``param``; returns the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == OPENAI_ERROR_KEYS, error
    assert error["type"] == kind, error
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert isinstance(error["message"], str) and error["message"], error
    return dict(error)


def upstream_body(fake: FakeOpenAIServer) -> dict[str, Any]:
    """The body of the last request the fake upstream received."""
    request = fake.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    body: dict[str, Any] = request["body"]
    return body


def assert_refusal(response: Any, status: int, error: str) -> dict[str, Any]:
    """``response`` refused as the guide's ``status`` / ``error`` says, in the shape of its route:
    OpenAI's under ``/v1`` (where a 422 is a 400), the guide's elsewhere. Returns the body with
    the ``message``."""
    if not response.request.url.path.startswith("/v1/"):
        return assert_error(response, status, error)
    assert response.status_code == (400 if status == 422 else status), response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == OPENAI_ERROR_KEYS, body
    return dict(body["error"])
