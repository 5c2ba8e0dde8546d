"""OpenAI-compatible ``POST /v1/chat/completions`` (model = bot id; the models are in
:mod:`.models`).

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
naming the ``param``, never ignored (:mod:`..openai_request`, :mod:`..openai_messages`); the
reply's JSON is built by :mod:`..openai_reply`. Errors have OpenAI's shape (:mod:`..openai_errors`).

Usage is the provider's. When it reports none, the route estimates it in words (as the echo
provider counts) and says so: the ``x-kubebots-usage: estimated`` header on a completion, and
``"estimated": true`` in a stream's usage chunk (a header cannot follow the stream). The turn is
charged to the client's token budget either way. Clients with limits get OpenAI's
``x-ratelimit-*`` headers (:func:`..quota.rate_limit_headers`).

``X-Kubebots-Generation`` names the Bot generation that answered. While a Bot rolls out
(:mod:`..rollout_turns`), a stored conversation keeps the generation it started with, and a
stateless request is routed by its request id (``X-Request-Id``); the turn is counted, and in
shadow mode mirrored to the candidate.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ....context import BotContext
from ....errors import KubebotsError
from ....llm.base import ChatMessage, Delta, Settings
from ....llm.echo import estimate_usage
from ....llm.request_settings import RequestSettingsError, bound_settings
from ....ratelimit import Decision
from ..access import BotTurn, StreamCharge, open_turn
from ..openai_errors import openai_error_body
from ..openai_messages import new_messages, to_messages
from ..openai_reply import chunk, delta_body, message_body, usage_body
from ..openai_request import CompletionRequest, check_arguments, invalid
from ..quota import rate_limit_headers
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])

#: The header saying a reply's usage is kubebots' estimate, not the provider's count.
USAGE_HEADER: Final = "x-kubebots-usage"
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
    request: Request,
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
    request_key = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    turn = await open_turn(
        state,
        caller,
        body.model,
        call,
        claimed_client_id=None,
        conversation_id=conversation_id,
        request_key=request_key,
    )
    return turn.mark(request)


CompletionTurnDep = Annotated[BotTurn[CompletionCall], Depends(completion_turn)]


def _bounded(turn: BotTurn[CompletionCall]) -> Settings | None:
    requested = turn.body.request.requested_settings()
    if not requested:
        return None
    try:
        return bound_settings(requested, turn.bot.config.llm)
    except RequestSettingsError as exc:
        raise invalid(exc.param, exc.message) from exc


def _limit_headers(decision: Decision | None) -> dict[str, str]:
    return rate_limit_headers(decision) if decision is not None else {}


# -- the reply ----------------------------------------------------------------------------------


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
        return chunk(self.id, self.created, self.model, delta, finish)


@router.post("/chat/completions", response_model=None)
async def chat_completions(turn: CompletionTurnDep) -> JSONResponse | StreamingResponse:
    body, conversation_id = turn.body.request, turn.body.conversation_id
    context = BotContext(conversation_id, turn.client_id, body.user) if conversation_id else None
    headers = _limit_headers(turn.decision)
    reply = _Reply(turn, _bounded(turn), context, headers)
    return await (_stream(reply) if body.stream else _complete(reply))


async def _complete(reply: _Reply) -> JSONResponse:
    bot, messages, context = reply.turn.bot, reply.turn.body.messages, reply.context
    try:
        if context is not None:
            added = new_messages(messages)
            completion = await bot.complete_stored(added, context, settings=reply.settings)
        else:
            completion = await bot.complete_messages(messages, settings=reply.settings)
    except Exception as exc:
        reply.turn.failed(exc)
        raise
    usage = completion.usage
    if usage is None:
        arguments = "".join(c.arguments for c in completion.tool_calls)
        usage = estimate_usage([m.content for m in messages], completion.content + arguments)
        reply.headers[USAGE_HEADER] = "estimated"
    reply.turn.charge(usage.total_tokens)
    _answered(reply, completion.content, usage.total_tokens)
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
    on_usage = charge.reported
    stream: AsyncGenerator[Delta, None]
    if context is not None:
        added = new_messages(messages)
        stream = bot.stream_stored(added, context, settings=reply.settings, on_usage=on_usage)
    else:
        stream = bot.stream_messages(messages, settings=reply.settings, on_usage=on_usage)
    try:
        first = await anext(stream, None)  # errors before the first delta keep their status
    except Exception as exc:
        reply.turn.failed(exc)
        raise
    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    async def deltas() -> AsyncIterator[Delta]:
        if first is not None:
            yield first
        async for delta in stream:
            yield delta

    async def events() -> AsyncIterator[str]:
        finish = "stop"
        text: list[str] = []
        try:
            yield reply.chunk({"role": "assistant", "content": ""}, None)
            async for delta in deltas():
                text.append(delta.content)
                charge.parts.append(delta.content)
                charge.parts.extend(c.arguments for c in delta.tool_calls)
                if delta.finish_reason is not None:
                    finish = delta.finish_reason
                piece = delta_body(delta)
                if piece:
                    yield reply.chunk(piece, None)
            _answered(reply, "".join(text), charge.usage().total_tokens)
            yield reply.chunk({}, finish)
            if include_usage:
                usage = _stream_usage(reply, charge, estimated=charge.estimated)
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"
        except KubebotsError as exc:
            reply.turn.failed(exc)
            yield f"data: {json.dumps(openai_error_body(exc))}\n\n"
        except Exception as exc:
            reply.turn.failed(exc)
            raise
        finally:
            await stream.aclose()
            charge.send()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **reply.headers},
    )


def _answered(reply: _Reply, text: str, tokens: int) -> None:
    """Count the answered turn; mirror it to the candidate when the rollout says so (the
    stable prompt's messages: a stateless request's own, or the conversation's window and the
    request's new messages)."""
    turn = reply.turn
    turn.answered(text, tokens)
    messages = turn.body.messages
    if reply.context is None:
        turn.mirror(messages, history=[])
    else:
        turn.mirror(new_messages(messages))


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
