"""``POST /bots/{bot_id}/chat`` and its Server-Sent Events variant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from ....context import BotContext
from ....errors import KubebotsError
from ...exception_handlers import error_body
from ..access import BotTurn, StreamCharge, open_turn
from ..models import ChatRequest, ChatResponse, Usage
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(tags=["chat"])


async def chat_turn(
    bot_id: str, body: ChatRequest, state: StateDep, caller: CallerDep
) -> BotTurn[ChatRequest]:
    """The turn of ``body`` (a ``client_id`` in it must be the caller's) with bot ``bot_id``."""
    return await open_turn(state, caller, bot_id, body, claimed_client_id=body.client_id)


ChatTurnDep = Annotated[BotTurn[ChatRequest], Depends(chat_turn)]


@router.post("/bots/{bot_id}/chat", response_model=ChatResponse)
async def chat(turn: ChatTurnDep) -> Response:
    """Send a message; the turn is stored in the caller's conversation.

    The reply is serialised here by pydantic-core: returned as a model, FastAPI would validate
    it again and walk it through ``jsonable_encoder`` (the schema still comes from
    ``response_model``)."""
    body = turn.body
    context = BotContext(body.conversation_id, turn.client_id, body.user_id)
    completion = await turn.bot.complete(body.message, context)
    usage = None
    if completion.usage is not None:
        turn.charge(completion.usage.total_tokens)
        usage = Usage(
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            total_tokens=completion.usage.total_tokens,
        )
    reply = ChatResponse(
        response=completion.content,
        conversation_id=body.conversation_id,
        bot_id=turn.bot.bot_id,
        usage=usage,
    )
    return Response(reply.model_dump_json(), media_type="application/json")


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.post(
    "/bots/{bot_id}/chat/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_stream(turn: ChatTurnDep) -> StreamingResponse:
    """Like ``/chat``, as Server-Sent Events: ``delta`` events, then ``done`` (or ``error``).

    The turn's tokens are charged once the stream ends, however it ends (:class:`StreamCharge`).
    """
    body, bot_id = turn.body, turn.bot.bot_id
    context = BotContext(body.conversation_id, turn.client_id, body.user_id)
    charge = StreamCharge(turn, [body.message])
    stream = turn.bot.stream_chat(body.message, context, on_usage=charge.reported)
    first = await anext(stream, None)  # errors before the first delta are plain HTTP errors

    async def events() -> AsyncIterator[str]:
        try:
            if first is not None:
                charge.parts.append(first)
                yield sse("delta", {"delta": first})
            async for delta in stream:
                charge.parts.append(delta)
                yield sse("delta", {"delta": delta})
            yield sse("done", {"conversation_id": body.conversation_id, "bot_id": bot_id})
        except KubebotsError as exc:
            yield sse("error", error_body(exc))
        finally:
            await stream.aclose()
            charge.send()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
