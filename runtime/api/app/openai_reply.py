"""The ``/v1`` reply's JSON: OpenAI's message, delta, usage and chunk bodies."""

from __future__ import annotations

import json
from typing import Any

from ...llm.base import Completion, Delta, ToolCall, Usage


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def tool_calls_body(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def message_body(completion: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.content if completion.content or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = tool_calls_body(completion.tool_calls)
    return message


def delta_body(delta: Delta) -> dict[str, Any]:
    """OpenAI's ``choices[0].delta`` for a provider's delta (its finish reason aside)."""
    body: dict[str, Any] = {}
    if delta.content:
        body["content"] = delta.content
    if delta.tool_calls:
        pieces = []
        for call in delta.tool_calls:
            piece: dict[str, Any] = {"index": call.index}
            function: dict[str, Any] = {"arguments": call.arguments}
            if call.id is not None:
                piece["id"] = call.id
                piece["type"] = "function"
            if call.name is not None:
                function["name"] = call.name
            piece["function"] = function
            pieces.append(piece)
        body["tool_calls"] = pieces
    return body


def chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
