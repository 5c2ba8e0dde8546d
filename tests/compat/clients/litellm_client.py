"""litellm as a client of ``kubebots serve`` (model ``openai/<bot>``): one case per run, JSON out.

Runs in the compatibility suite's own venv (``tests/compat/installs.py``), never in ours:
``python litellm_client.py CASE`` with the server in ``COMPAT_BASE_URL`` / ``COMPAT_API_KEY``
/ ``COMPAT_MODEL``. The suite sets ``LITELLM_LOCAL_MODEL_COST_MAP`` so nothing is fetched.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import litellm

CALL = 'call get_weather {"city": "Paris"}'
WEATHER_TOOL = {
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


def complete(**kwargs: Any) -> Any:
    return litellm.completion(
        model=f"openai/{os.environ['COMPAT_MODEL']}",
        api_base=os.environ["COMPAT_BASE_URL"],
        api_key=os.environ["COMPAT_API_KEY"],
        num_retries=0,
        timeout=60,
        **kwargs,
    )


def chat() -> dict[str, Any]:
    reply = complete(
        messages=[
            {"role": "system", "content": "the client's own instructions"},
            {"role": "user", "content": "hello from litellm"},
        ],
        temperature=0.5,
        max_tokens=64,
    )
    choice = reply.choices[0]
    return {
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": {
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "total_tokens": reply.usage.total_tokens,
        },
    }


def stream() -> dict[str, Any]:
    text = []
    finish_reasons = []
    for chunk in complete(messages=[{"role": "user", "content": "stream to litellm"}], stream=True):
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    return {"text": "".join(text), "finish_reasons": finish_reasons}


def tools() -> dict[str, Any]:
    reply = complete(messages=[{"role": "user", "content": CALL}], tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    return {
        "finish_reason": choice.finish_reason,
        "tool_calls": [
            {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
            for call in choice.message.tool_calls or []
        ],
    }


def not_found() -> dict[str, Any]:
    try:
        litellm.completion(
            model="openai/default:no-such-bot",
            api_base=os.environ["COMPAT_BASE_URL"],
            api_key=os.environ["COMPAT_API_KEY"],
            num_retries=0,
            messages=[{"role": "user", "content": "hi"}],
        )
    except litellm.exceptions.NotFoundError as error:
        return {
            "error": {
                "class": type(error).__name__,
                "status": error.status_code,
                "message": str(error),
            }
        }
    return {"error": None}


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "chat": chat,
    "stream": stream,
    "tools": tools,
    "not_found": not_found,
}


if __name__ == "__main__":
    print(json.dumps(CASES[sys.argv[1]]()))
