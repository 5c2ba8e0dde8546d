"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models`` (model = bot id).

The official ``openai`` SDK works unchanged against these routes. Completions are stateless, as
in OpenAI's API: the client sends the history, the bot puts its system prompt first. Send
``X-Conversation-Id`` to use the bot's stored conversation instead (only the last user message
is taken from the request then).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ....context import BotContext
from ....errors import KubebotsError
from ....llm.base import ChatMessage, Completion, Usage
from ...exception_handlers import error_body
from ...http_errors import ValidationError
from ..access import BotTurn, StreamCharge, open_turn
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class InMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def to_chat(self) -> ChatMessage | None:
        if self.role == "tool" or self.content is None:
            return None
        if isinstance(self.content, str):
            text = self.content
        else:
            text = "".join(p.text or "" for p in self.content if p.type == "text")
        if self.role == "user":
            return ChatMessage("user", text)
        if self.role == "assistant":
            return ChatMessage("assistant", text)
        return ChatMessage("system", text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The fields kubebots uses; others the SDK may send are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=253)
    messages: list[InMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)


def _messages(body: CompletionRequest) -> list[ChatMessage]:
    messages = [m for m in (msg.to_chat() for msg in body.messages) if m is not None]
    if not messages or messages[-1].role != "user":
        raise ValidationError(
            "the last message must be a user message",
            detail={"errors": [{"field": "body.messages", "reason": "last message not user"}]},
        )
    return messages


def _usage(completion: Completion) -> dict[str, int] | None:
    u = completion.usage
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


@dataclass(frozen=True, slots=True)
class CompletionCall:
    """What a client sends: the request, and the stored conversation to use (or ``None``)."""

    request: CompletionRequest
    conversation_id: str | None


async def completion_turn(
    body: CompletionRequest,
    state: StateDep,
    caller: CallerDep,
    conversation_id: Annotated[
        str | None, Header(alias="X-Conversation-Id", max_length=256)
    ] = None,
) -> BotTurn[CompletionCall]:
    """The turn of ``body`` with the bot it names as ``model``; the client is the key's."""
    call = CompletionCall(body, conversation_id)
    return await open_turn(state, caller, body.model, call, claimed_client_id=None)


CompletionTurnDep = Annotated[BotTurn[CompletionCall], Depends(completion_turn)]


@router.post("/chat/completions", response_model=None)
async def chat_completions(turn: CompletionTurnDep) -> JSONResponse | StreamingResponse:
    body, bot, conversation_id = turn.body.request, turn.bot, turn.body.conversation_id
    messages = _messages(body)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    context = BotContext(conversation_id, turn.client_id, body.user) if conversation_id else None
    if not body.stream:
        if context is not None:
            completion = await bot.complete(messages[-1].content, context)
        else:
            completion = await bot.complete_messages(messages)
        usage = _usage(completion)
        if usage:
            turn.charge(usage["total_tokens"])
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": completion.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
    charge = StreamCharge(turn, [m.content for m in messages])
    if context is not None:
        stream = bot.stream_chat(messages[-1].content, context, on_usage=charge.reported)
    else:
        stream = bot.stream_messages(messages, on_usage=charge.reported)
    first = await anext(stream, None)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        try:
            yield _chunk(cid, created, body.model, {"role": "assistant", "content": ""}, None)
            if first is not None:
                charge.parts.append(first)
                yield _chunk(cid, created, body.model, {"content": first}, None)
            async for delta in stream:
                charge.parts.append(delta)
                yield _chunk(cid, created, body.model, {"content": delta}, None)
            yield _chunk(cid, created, body.model, {}, "stop")
            if include_usage:
                usage = _stream_usage(cid, created, body.model, charge.usage())
                yield "data: " + json.dumps(usage) + "\n\n"
            yield "data: [DONE]\n\n"
        except KubebotsError as exc:
            yield f"data: {json.dumps({'error': error_body(exc)})}\n\n"
        finally:
            await stream.aclose()
            charge.send()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _stream_usage(cid: str, created: int, model: str, usage: Usage) -> dict[str, Any]:
    """The final usage chunk: what the turn is charged (:class:`StreamCharge`)."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


@router.get("/models")
async def list_models(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    entries, _ = await state.store.list()
    return {
        "object": "list",
        "data": [
            {
                "id": e.bot_id,
                "object": "model",
                "created": int(e.updated_at.timestamp()),
                "owned_by": "kubebots",
            }
            for e in entries
            if caller.may_use(e.bot_id)
        ],
    }
