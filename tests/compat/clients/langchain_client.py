"""langchain-openai's ChatOpenAI against ``kubebots serve``: one case per run, JSON on stdout.

Runs in the compatibility suite's own venv (``tests/compat/installs.py``), never in ours:
``python langchain_client.py CASE`` with the server in ``COMPAT_BASE_URL`` / ``COMPAT_API_KEY``
/ ``COMPAT_MODEL``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

CALL = 'call get_weather {"city": "Paris"}'


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


class Weather(BaseModel):
    """A weather report."""

    city: str
    temperature_c: float
    sunny: bool


def model(**settings: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=os.environ["COMPAT_MODEL"],
        base_url=os.environ["COMPAT_BASE_URL"],
        api_key=os.environ["COMPAT_API_KEY"],  # type: ignore[arg-type]
        max_retries=0,
        timeout=60,
        **settings,
    )


def invoke() -> dict[str, Any]:
    reply = model(temperature=0.25, max_tokens=64, seed=7).invoke(
        [SystemMessage("the client's own instructions"), HumanMessage("hello from langchain")]
    )
    return {
        "content": reply.content,
        "finish_reason": reply.response_metadata.get("finish_reason"),
        "usage": dict(reply.usage_metadata or {}),
    }


def stream() -> dict[str, Any]:
    pieces = [chunk.content for chunk in model().stream("stream to langchain")]
    return {"text": "".join(str(piece) for piece in pieces), "chunks": len(pieces)}


def bind_tools() -> dict[str, Any]:
    reply = model().bind_tools([get_weather]).invoke(CALL)
    return {
        "content": reply.content,
        "finish_reason": reply.response_metadata.get("finish_reason"),
        "tool_calls": [
            {"id": call["id"], "name": call["name"], "args": call["args"]}
            for call in reply.tool_calls
        ],
    }


def bind_tools_stream() -> dict[str, Any]:
    chunks = list(model().bind_tools([get_weather]).stream(CALL))
    message = chunks[0]
    for chunk in chunks[1:]:
        message += chunk
    return {
        "chunks": len(chunks),
        "finish_reason": message.response_metadata.get("finish_reason"),
        "tool_calls": [
            {"id": call["id"], "name": call["name"], "args": call["args"]}
            for call in message.tool_calls  # type: ignore[attr-defined]
        ],
    }


def structured(method: str) -> dict[str, Any]:
    report = (
        model()
        .with_structured_output(Weather, method=method)  # type: ignore[arg-type]
        .invoke("the weather in Paris, please")
    )
    assert isinstance(report, Weather), type(report)
    return {"report": report.model_dump()}


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "invoke": invoke,
    "stream": stream,
    "bind_tools": bind_tools,
    "bind_tools_stream": bind_tools_stream,
    "structured_json_schema": lambda: structured("json_schema"),
    "structured_function_calling": lambda: structured("function_calling"),
}


if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]]()))
