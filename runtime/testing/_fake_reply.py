"""What the fake OpenAI server answers to a request body: text, tool calls, JSON, truncation.

The rules (deterministic; the echo provider's conventions where they overlap):

1. A reply scripted with :meth:`FakeOpenAIServer.script` is the next reply, whatever was asked.
2. ``tools`` declared and the last message a user message of lines ``call NAME ARGS`` (one call
   per line, each naming one of them): those calls in order (``ARGS`` JSON text, ``{}`` when
   absent), ids ``call_fake_0``, ``call_fake_1``, ... (several lines: a parallel call),
   ``finish_reason`` ``"tool_calls"``; the echo provider's convention
   (:func:`~kubebots.runtime.llm.echo.asked_calls`). After tool results the reply is text.
3. ``tool_choice`` ``"required"`` or ``{"type": "function", "function": {"name": N}}`` after a
   user message: a call of ``N`` (``required``: the first tool) with arguments made from its
   ``parameters`` schema (see :func:`sample`).
4. Otherwise text: ``f"[{model}] {system} | {user}"`` (the first system message or ``-``, the
   last user message), followed by ``f" | tool {name}: {content}"`` for each ``tool`` message
   after the last user message (so tests see a tool result arrive).
5. ``response_format`` ``json_schema``: the text is replaced by JSON made from the schema;
   ``json_object``: by ``{"reply": <the text>}``.
6. ``max_tokens`` / ``max_completion_tokens`` cut the text after that many words,
   ``finish_reason`` ``"length"``.

Usage counts whitespace-separated words (prompt: all message contents; completion: the text,
or each call's name and arguments).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..llm.echo import asked_calls, count_words, cut_words, function_names, token_limit


@dataclass(frozen=True, slots=True)
class FakeCall:
    """A tool call in a fake reply."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A fake reply: its text (None: no content, as with tool calls), calls, finish reason."""

    content: str | None
    tool_calls: tuple[FakeCall, ...] = ()
    finish_reason: str = "stop"

    def completion_tokens(self) -> int:
        calls = sum(count_words(f"{c.name} {c.arguments}") for c in self.tool_calls)
        return count_words(self.content or "") + calls


def text_of(content: Any) -> str:
    """A message's text: a string, or the ``text`` of its content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def sample(schema: Any) -> Any:
    """A value valid against a simple JSON schema: ``const``, the first of ``enum`` or of
    ``anyOf`` / ``oneOf``, and per ``type``: objects with every listed property, arrays of
    ``minItems`` (at least one unless ``maxItems`` is 0) samples, strings ``"fake"`` sized to
    ``minLength`` / ``maxLength``, numbers at ``minimum`` (or 0), ``true``, ``null``."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return sample(schema[key][0])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    make = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    return make(schema) if make is not None else {}


def _object(schema: dict[str, Any]) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: sample(sub) for name, sub in properties.items()}


def _array(schema: dict[str, Any]) -> Any:
    count = int(schema.get("minItems", 0))
    if count == 0 and schema.get("maxItems") != 0:
        count = 1
    return [sample(schema.get("items", {"type": "string"})) for _ in range(count)]


def _string(schema: dict[str, Any]) -> Any:
    text = "fake".ljust(int(schema.get("minLength", 0)), "x")
    return text[: int(schema["maxLength"])] if "maxLength" in schema else text


def _number(schema: dict[str, Any]) -> Any:
    if "minimum" in schema:
        return schema["minimum"]
    if "exclusiveMinimum" in schema:
        return schema["exclusiveMinimum"] + 1
    return 0


_BY_TYPE: Mapping[str, Callable[[dict[str, Any]], Any]] = MappingProxyType(
    {
        "object": _object,
        "array": _array,
        "string": _string,
        "integer": lambda schema: int(_number(schema)),
        "number": lambda schema: float(_number(schema)),
        "boolean": lambda schema: True,
        "null": lambda schema: None,
    }
)


def _forced_call(body: dict[str, Any]) -> tuple[str, str] | None:
    """The call ``tool_choice`` forces (rule 3), its arguments sampled from the schema."""
    names = function_names(body.get("tools"))
    choice = body.get("tool_choice")
    if choice == "required" and names:
        name = names[0]
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = str(choice["function"].get("name"))
    else:
        return None
    for tool in body["tools"] if name in names else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name") == name:
            parameters = function.get("parameters", {"type": "object"})
            return name, json.dumps(sample(parameters))
    return None


def _text(model: str, messages: list[dict[str, Any]]) -> str:
    """Rule 4's text."""
    system = next((text_of(m.get("content")) for m in messages if m.get("role") == "system"), "-")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    user = text_of(messages[last_user].get("content")) if last_user >= 0 else ""
    names = {
        call.get("id"): (call.get("function") or {}).get("name", "?")
        for m in messages
        for call in (m.get("tool_calls") or [])
        if isinstance(call, dict)
    }
    results = [
        f" | tool {names.get(m.get('tool_call_id'), '?')}: {text_of(m.get('content'))}"
        for m in messages[last_user + 1 :]
        if m.get("role") == "tool"
    ]
    return f"[{model}] {system} | {user}" + "".join(results)


def _json_text(text: str, response_format: Any) -> str:
    """Rule 5."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return json.dumps({"reply": text})
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        return json.dumps(sample(spec.get("schema") if isinstance(spec, dict) else None))
    return text


def reply_for(body: dict[str, Any], scripted: FakeReply | None = None) -> FakeReply:
    """The reply to a chat completions request ``body`` (the module's rules)."""
    if scripted is not None:
        return scripted
    model = str(body.get("model", ""))
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "user":
        asked = asked_calls(text_of(messages[-1].get("content")), body)
        forced = _forced_call(body)
        calls = asked or ([forced] if forced is not None else [])
        if calls:
            fake = tuple(FakeCall(f"call_fake_{i}", *call) for i, call in enumerate(calls))
            return FakeReply(None, fake, "tool_calls")
    text = _json_text(_text(model, messages), body.get("response_format"))
    text, cut = cut_words(text, token_limit(body))
    return FakeReply(text, (), "length" if cut else "stop")


def prompt_tokens(body: dict[str, Any]) -> int:
    """The request's word count over its messages' contents."""
    messages = body.get("messages", [])
    return sum(count_words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
