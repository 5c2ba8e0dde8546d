"""``POST /bots/{bot_id}/chat`` and its Server-Sent Events variant.

A request carries a user ``message``, or ``approvals``: the client's decisions on the tool calls
its conversation waits for (a turn that reached a tool with ``requiresApproval`` stopped and
returned them as ``pending_approvals``); the turn then resumes.

The answer's ``X-Kubebots-Generation`` header names the Bot generation that answered: while a
Bot rolls out, a conversation is answered by the generation it started with
(:mod:`..rollout_turns`, which also counts the turn and, in shadow mode, mirrors a message's
turn to the candidate; a resumed turn is not mirrored).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from ....bot import DynaBot
from ....context import BotContext
from ....errors import KubebotsError
from ....llm.base import ChatMessage, Completion, Delta, ToolCall
from ....llm.echo import estimate_usage
from ....tools import ApprovalRequired, ToolEvent, ToolFinished, ToolStarted, TurnCompletion
from ...exception_handlers import error_body
from ..access import BotTurn, StreamCharge, open_turn
from ..models import ChatRequest, ChatResponse, PendingCallOut, ToolRunOut, Usage
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(tags=["chat"])


async def chat_turn(
    bot_id: str, body: ChatRequest, request: Request, state: StateDep, caller: CallerDep
) -> BotTurn[ChatRequest]:
    """The turn of ``body`` (a ``client_id`` in it must be the caller's) with bot ``bot_id``."""
    turn = await open_turn(
        state,
        caller,
        bot_id,
        body,
        claimed_client_id=body.client_id,
        conversation_id=body.conversation_id,
        request_key=body.conversation_id,
    )
    return turn.mark(request)


ChatTurnDep = Annotated[BotTurn[ChatRequest], Depends(chat_turn)]


def _pending(call: ToolCall) -> PendingCallOut:
    return PendingCallOut(id=call.id, name=call.name, arguments=call.arguments)


def _tool_fields(completion: Completion) -> dict[str, object]:
    """The response's tool fields: the calls the turn ran, and those waiting for approval."""
    if not isinstance(completion, TurnCompletion):
        return {}
    runs = [
        ToolRunOut(
            id=run.call.id,
            name=run.call.name,
            arguments=run.call.arguments,
            content=run.result.content,
            is_error=run.result.is_error,
        )
        for run in completion.tool_runs
    ]
    pending = [_pending(call) for call in completion.pending]
    status = "awaiting_approval" if pending else "completed"
    return {"tool_calls": runs, "pending_approvals": pending, "status": status}


@router.post("/bots/{bot_id}/chat", response_model=ChatResponse)
async def chat(turn: ChatTurnDep) -> Response:
    """Send a message (or approvals); the turn is stored in the caller's conversation.

    The reply is serialised here by pydantic-core: returned as a model, FastAPI would validate
    it again and walk it through ``jsonable_encoder`` (the schema still comes from
    ``response_model``)."""
    body, bot = turn.body, turn.bot
    context = BotContext(body.conversation_id, turn.client_id, body.user_id)
    try:
        if body.message is not None:
            completion = await bot.complete(body.message, context)
        else:
            completion = await bot.resume(context, body.decisions())
    except Exception as exc:
        turn.failed(exc)
        raise
    usage = None
    if completion.usage is not None:
        turn.charge(completion.usage.total_tokens)
        usage = Usage(
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            total_tokens=completion.usage.total_tokens,
        )
    _answered(turn, completion)
    reply = ChatResponse.model_validate(
        {
            "response": completion.content,
            "conversation_id": body.conversation_id,
            "bot_id": bot.bot_id,
            "usage": usage,
            **_tool_fields(completion),
        }
    )
    return Response(reply.model_dump_json(), media_type="application/json")


def _answered(turn: BotTurn[ChatRequest], completion: Completion) -> None:
    """Count the answered turn (its usage, else the words estimate) and mirror a message's."""
    message = turn.body.message
    usage = completion.usage or estimate_usage([message or ""], completion.content)
    turn.answered(completion.content, usage.total_tokens)
    if message is not None:
        turn.mirror([ChatMessage("user", message)])


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _event(item: Delta | ToolEvent, charge: StreamCharge) -> str | None:
    """The SSE event of one piece of a turn (None: nothing to send), noting what it costs."""
    if isinstance(item, Delta):
        if not item.content:
            return None
        charge.parts.append(item.content)
        return sse("delta", {"delta": item.content})
    if isinstance(item, ToolStarted):
        call = item.call
        return sse("tool_call", {"id": call.id, "name": call.name, "arguments": call.arguments})
    if isinstance(item, ToolFinished):
        charge.prompt.append(item.result.content)  # the next LLM call reads it
        result = {"id": item.call.id, "name": item.call.name, "content": item.result.content}
        return sse("tool_result", {**result, "is_error": item.result.is_error})
    calls = [_pending(call).model_dump() for call in item.calls]
    return sse("approval_required", {"calls": calls})


def _usage(charge: StreamCharge) -> dict[str, object]:
    """The turn's usage as ``done`` reports it (``estimated``: counted in words)."""
    usage = charge.usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "estimated": charge.estimated,
    }


def _turn_stream(
    bot: DynaBot, body: ChatRequest, context: BotContext, charge: StreamCharge
) -> AsyncGenerator[Delta | ToolEvent, None]:
    if body.message is not None:
        return bot.stream_turn(body.message, context, on_usage=charge.reported)
    return bot.stream_resume(context, body.decisions(), on_usage=charge.reported)


@router.post(
    "/bots/{bot_id}/chat/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_stream(turn: ChatTurnDep) -> StreamingResponse:
    """Like ``/chat``, as Server-Sent Events: ``delta`` events (text), ``tool_call`` and
    ``tool_result`` events around each server-side tool call, ``approval_required`` when the
    turn stops for approval, then ``done`` (its ``status`` says which, ``usage`` the turn's
    tokens) or ``error``.

    The turn's tokens are charged once the stream ends, however it ends (:class:`StreamCharge`).
    """
    body, bot_id = turn.body, turn.bot.bot_id
    context = BotContext(body.conversation_id, turn.client_id, body.user_id)
    charge = StreamCharge(turn, [body.message] if body.message is not None else [])
    stream = _turn_stream(turn.bot, body, context, charge)
    try:
        first = await anext(stream, None)  # errors before the first piece are plain HTTP errors
    except Exception as exc:
        turn.failed(exc)
        raise

    async def events() -> AsyncIterator[str]:
        status = "completed"
        try:
            item = first
            while item is not None:
                if isinstance(item, ApprovalRequired):
                    status = "awaiting_approval"
                event = _event(item, charge)
                if event is not None:
                    yield event
                item = await anext(stream, None)
            turn.answered("".join(charge.parts), charge.usage().total_tokens)
            if body.message is not None:
                turn.mirror([ChatMessage("user", body.message)])
            done = {"conversation_id": body.conversation_id, "bot_id": bot_id, "status": status}
            yield sse("done", {**done, "usage": _usage(charge)})
        except KubebotsError as exc:
            turn.failed(exc)
            yield sse("error", error_body(exc))
        except Exception as exc:
            turn.failed(exc)
            raise
        finally:
            await stream.aclose()
            charge.send()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
