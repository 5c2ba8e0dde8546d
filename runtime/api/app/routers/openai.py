"""OpenAI-compatible ``POST /v1/chat/completions``, ``GET /v1/models[/{model}]`` (model = bot id).

The official ``openai`` SDK (and clients built like it) works unchanged against these routes.
Completions are stateless, as in OpenAI's API: the client sends the history (tool calls and tool
results included), the bot puts its system prompt first. Send ``X-Conversation-Id`` to use the
bot's stored conversation instead: only the request's new messages are taken then (its last
user message, or the tool messages it ends with, answering the conversation's last tool calls),
and they are stored with the reply, tool calls included.

Request settings (``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``,
``stop``, ``seed``, the penalties, ``response_format``, ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``user``) are validated by OpenAI's rules and reach the upstream within
the Bot's bounds (:mod:`kubebots.runtime.llm.request_settings`); what kubebots cannot do (``n``
above 1, ``logprobs``, ``audio``, ...) and arguments OpenAI does not know are refused with 400
naming the ``param``, never ignored. Errors have OpenAI's shape (:mod:`..openai_errors`).

Usage is the provider's. When it reports none, the route estimates it in words (as the echo
provider counts) and says so: the ``x-kubebots-usage: estimated`` header on a completion, and
``"estimated": true`` in a stream's usage chunk (a header cannot follow the stream). The turn is
charged to the client's token budget either way. Clients with limits get OpenAI's
``x-ratelimit-*`` headers (:func:`..quota.rate_limit_headers`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ....context import BotContext
from ....errors import KubebotsError
from ....llm.base import ChatMessage, Completion, Delta, Settings, ToolCall, Usage
from ....llm.echo import count_words
from ....llm.request_settings import REQUEST_SETTINGS, RequestSettingsError, bound_settings
from ....ratelimit import Decision
from ...http_errors import BotNotFoundError, ValidationError
from ..access import BotTurn, StreamCharge, open_turn
from ..openai_errors import openai_error_body
from ..quota import rate_limit_headers
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])

#: The header saying a reply's usage is kubebots' estimate, not the provider's count.
USAGE_HEADER: Final = "x-kubebots-usage"
#: OpenAI request arguments kubebots does not support, and the values that ask for nothing.
UNSUPPORTED: Final[Mapping[str, tuple[Any, ...]]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None,),
    "logit_bias": (None, {}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "functions": (None,),
    "function_call": (None,),
    "web_search_options": (None,),
    "store": (None, False),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "service_tier": (None, "auto", "default"),
}
#: OpenAI request arguments that ask nothing of the model and are accepted without effect.
NO_EFFECT: Final = frozenset({"metadata", "prompt_cache_key", "safety_identifier"})
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


# -- the request ------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class InFunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=1_000_000)


class InToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: InFunctionCall


class InMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # SDKs echo replies back (refusal, annotations)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[InToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str | None = Field(default=None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDefinition


class ToolName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: ToolName


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: Name
    description: str | None = Field(default=None, max_length=100_000)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only then")
        return self


class CompletionRequest(BaseModel):
    """OpenAI's chat completion request. Arguments not declared here are checked by
    :func:`check_arguments` (refused unless they ask for nothing)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=253)
    messages: list[InMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Number | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, strict=True)
    presence_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = Field(default=None, max_length=256)

    def requested_settings(self) -> dict[str, Any]:
        """The upstream settings the client set (OpenAI's names and JSON values)."""
        return self.model_dump(
            include=set(REQUEST_SETTINGS), exclude_none=True, by_alias=True, mode="json"
        )


def _invalid(param: str, message: str) -> ValidationError:
    field = f"body.{param}"
    return ValidationError(
        message, detail={"param": param, "errors": [{"field": field, "reason": message}]}
    )


def check_arguments(body: CompletionRequest) -> None:
    """Refuse what the model cannot be asked (400 naming the ``param``)."""
    for name, value in (body.model_extra or {}).items():
        if name in NO_EFFECT:
            continue
        if name not in UNSUPPORTED:
            raise _invalid(name, f"Unrecognized request argument supplied: {name}")
        if value not in UNSUPPORTED[name]:
            only = " (only n=1 is)" if name == "n" else ""
            raise _invalid(name, f"'{name}' is not supported by kubebots{only}")
    if isinstance(body.stop, list) and len(body.stop) > 4:
        raise _invalid("stop", "'stop' may hold at most 4 sequences")
    if body.tool_choice is not None and not body.tools:
        raise _invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if body.parallel_tool_calls is not None and not body.tools:
        raise _invalid(
            "parallel_tool_calls",
            "'parallel_tool_calls' is only allowed when 'tools' are specified",
        )
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise _invalid(
            "max_completion_tokens", "set one of 'max_tokens' and 'max_completion_tokens'"
        )


def _text(message: InMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for number, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise _invalid(
                f"messages.[{index}].content.[{number}].type",
                f"content parts of type '{part.type}' are not supported (only 'text' is)",
            )
        parts.append(part.text)
    return "".join(parts)


def to_chat(message: InMessage, index: int) -> ChatMessage:
    """``message`` as a :class:`ChatMessage` (``developer`` is ``system``), or a 400."""
    where = f"messages.[{index}]"
    if message.tool_calls and message.role != "assistant":
        raise _invalid(f"{where}.tool_calls", "only assistant messages may carry tool_calls")
    if message.content is None and not (message.role == "assistant" and message.tool_calls):
        raise _invalid(f"{where}.content", f"a {message.role} message needs content")
    text = _text(message, index)
    if message.role == "tool":
        if message.tool_call_id is None:
            raise _invalid(f"{where}.tool_call_id", "a tool message needs tool_call_id")
        return ChatMessage("tool", text, tool_call_id=message.tool_call_id)
    if message.role == "assistant":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
        )
        return ChatMessage("assistant", text, tool_calls=calls)
    return ChatMessage("user" if message.role == "user" else "system", text)


def new_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    """What a stored-conversation request adds: its last (user) message, or the tool messages
    it ends with."""
    if messages[-1].role != "tool":
        return messages[-1:]
    start = len(messages) - 1
    while start > 0 and messages[start - 1].role == "tool":
        start -= 1
    return messages[start:]


def to_messages(body: CompletionRequest) -> list[ChatMessage]:
    messages = [to_chat(message, i) for i, message in enumerate(body.messages)]
    if messages[-1].role not in ("user", "tool"):
        raise _invalid("messages", "the last message must be a user or a tool message")
    return messages


# -- admission ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompletionCall:
    """What a client sends: the request, its messages, and the stored conversation to use
    (or ``None``)."""

    request: CompletionRequest
    messages: list[ChatMessage]
    conversation_id: str | None


async def completion_turn(
    body: CompletionRequest,
    state: StateDep,
    caller: CallerDep,
    conversation_id: Annotated[
        str | None, Header(alias="X-Conversation-Id", max_length=256)
    ] = None,
) -> BotTurn[CompletionCall]:
    """The turn of ``body`` with the bot it names as ``model``; the client is the key's. The
    request is checked before it is admitted (a refused request is not counted)."""
    check_arguments(body)
    call = CompletionCall(body, to_messages(body), conversation_id)
    return await open_turn(state, caller, body.model, call, claimed_client_id=None)


CompletionTurnDep = Annotated[BotTurn[CompletionCall], Depends(completion_turn)]


def _bounded(turn: BotTurn[CompletionCall]) -> Settings | None:
    requested = turn.body.request.requested_settings()
    if not requested:
        return None
    try:
        return bound_settings(requested, turn.bot.config.llm)
    except RequestSettingsError as exc:
        raise _invalid(exc.param, exc.message) from exc


def _limit_headers(decision: Decision | None) -> dict[str, str]:
    return rate_limit_headers(decision) if decision is not None else {}


# -- the reply ----------------------------------------------------------------------------------


def estimate_usage(messages: list[ChatMessage], reply: str) -> Usage:
    """The usage kubebots reports when the provider gives none: words, as echo counts."""
    prompt = sum(count_words(m.content) for m in messages)
    return Usage(prompt_tokens=prompt, completion_tokens=count_words(reply))


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


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


@dataclass(slots=True)
class _UsageSeen:
    """The stream's ``on_usage``: passes the provider's usage to the charge, notes it came."""

    charge: StreamCharge
    seen: bool = False

    def __call__(self, usage: Usage) -> None:
        self.seen = True
        self.charge.reported(usage)


@dataclass(frozen=True, slots=True)
class _Reply:
    """What every reply of one turn shares."""

    turn: BotTurn[CompletionCall]
    settings: Settings | None
    context: BotContext | None
    headers: dict[str, str]
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def model(self) -> str:
        return self.turn.body.request.model

    def chunk(self, delta: dict[str, Any], finish: str | None) -> str:
        return _chunk(self.id, self.created, self.model, delta, finish)


@router.post("/chat/completions", response_model=None)
async def chat_completions(turn: CompletionTurnDep) -> JSONResponse | StreamingResponse:
    body, conversation_id = turn.body.request, turn.body.conversation_id
    context = BotContext(conversation_id, turn.client_id, body.user) if conversation_id else None
    reply = _Reply(turn, _bounded(turn), context, _limit_headers(turn.decision))
    return await (_stream(reply) if body.stream else _complete(reply))


async def _complete(reply: _Reply) -> JSONResponse:
    bot, messages, context = reply.turn.bot, reply.turn.body.messages, reply.context
    if context is not None:
        added = new_messages(messages)
        completion = await bot.complete_stored(added, context, settings=reply.settings)
    else:
        completion = await bot.complete_messages(messages, settings=reply.settings)
    usage = completion.usage
    if usage is None:
        arguments = "".join(c.arguments for c in completion.tool_calls)
        usage = estimate_usage(messages, completion.content + arguments)
        reply.headers[USAGE_HEADER] = "estimated"
    reply.turn.charge(usage.total_tokens)
    return JSONResponse(
        {
            "id": reply.id,
            "object": "chat.completion",
            "created": reply.created,
            "model": reply.model,
            "choices": [
                {
                    "index": 0,
                    "message": message_body(completion),
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": usage_body(usage),
        },
        headers=reply.headers,
    )


async def _stream(reply: _Reply) -> StreamingResponse:
    bot, messages, context = reply.turn.bot, reply.turn.body.messages, reply.context
    request = reply.turn.body.request
    charge = StreamCharge(reply.turn, [m.content for m in messages])
    on_usage = _UsageSeen(charge)
    stream: AsyncGenerator[Delta, None]
    if context is not None:
        added = new_messages(messages)
        stream = bot.stream_stored(added, context, settings=reply.settings, on_usage=on_usage)
    else:
        stream = bot.stream_messages(messages, settings=reply.settings, on_usage=on_usage)
    first = await anext(stream, None)  # errors before the first delta keep their status
    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    async def deltas() -> AsyncIterator[Delta]:
        if first is not None:
            yield first
        async for delta in stream:
            yield delta

    async def events() -> AsyncIterator[str]:
        finish = "stop"
        try:
            yield reply.chunk({"role": "assistant", "content": ""}, None)
            async for delta in deltas():
                charge.parts.append(delta.content)
                charge.parts.extend(c.arguments for c in delta.tool_calls)
                if delta.finish_reason is not None:
                    finish = delta.finish_reason
                piece = delta_body(delta)
                if piece:
                    yield reply.chunk(piece, None)
            yield reply.chunk({}, finish)
            if include_usage:
                usage = _stream_usage(reply, charge, estimated=not on_usage.seen)
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
        except KubebotsError as exc:
            yield f"data: {json.dumps(openai_error_body(exc))}\n\n"
        finally:
            await stream.aclose()
            charge.send()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **reply.headers},
    )


def _stream_usage(reply: _Reply, charge: StreamCharge, *, estimated: bool) -> dict[str, Any]:
    """The final usage chunk: what the turn is charged (:class:`StreamCharge`), marked
    ``estimated`` when the provider reported none."""
    usage: dict[str, Any] = dict(usage_body(charge.usage()))
    if estimated:
        usage["estimated"] = True
    return {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "choices": [],
        "usage": usage,
    }


# -- models -------------------------------------------------------------------------------------


def model_body(bot_id: str, created: float) -> dict[str, Any]:
    return {"id": bot_id, "object": "model", "created": int(created), "owned_by": "kubebots"}


@router.get("/models")
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    entries, _ = await state.store.list()
    return {
        "object": "list",
        "data": [
            model_body(e.bot_id, e.updated_at.timestamp())
            for e in entries
            if caller.may_use(e.bot_id)
        ],
    }


@router.get("/models/{model}")
async def retrieve_model(model: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """One bot as a model; 404 (``model_not_found``) when there is none this caller may use."""
    entry = await state.store.get(model) if caller.may_use(model) else None
    if entry is None:
        raise BotNotFoundError(model)
    return model_body(entry.bot_id, entry.updated_at.timestamp())
