"""A client's conversations: list, read and delete. Other clients' conversations do not exist."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ...context import BotContext
from ..errors import ConversationNotFoundError
from ..models import ConversationOut, MessageOut
from ..security import CallerDep, limit_requests, open_bot
from ..state import StateDep

router = APIRouter(tags=["conversations"])
ClientQuery = Annotated[
    str | None,
    Query(
        max_length=256, description="Without API keys only: whose conversation (default anonymous)"
    ),
]


@router.get("/bots/{bot_id}/conversations")
async def list_conversations(
    bot_id: str, state: StateDep, caller: CallerDep, client_id: ClientQuery = None
) -> dict[str, Any]:
    client = caller.client_id(client_id)
    await limit_requests(state, caller, client)
    bot = await open_bot(state, caller, bot_id)
    ids = await bot.list_conversations(client)
    return {"bot_id": bot_id, "conversations": ids, "count": len(ids)}


@router.get("/bots/{bot_id}/conversations/{conversation_id:path}", response_model=ConversationOut)
async def get_conversation(
    bot_id: str,
    conversation_id: str,
    state: StateDep,
    caller: CallerDep,
    client_id: ClientQuery = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> ConversationOut:
    client = caller.client_id(client_id)
    await limit_requests(state, caller, client)
    bot = await open_bot(state, caller, bot_id)
    context = BotContext(conversation_id, client)
    if not await bot.conversation_exists(context):
        raise ConversationNotFoundError(conversation_id)
    messages = await bot.get_history(context, offset=offset, limit=limit)
    return ConversationOut(
        bot_id=bot_id,
        conversation_id=conversation_id,
        client_id=client,
        messages=[
            MessageOut(seq=m.seq, role=m.role, content=m.content, created_at=m.created_at)
            for m in messages
        ],
    )


@router.delete("/bots/{bot_id}/conversations/{conversation_id:path}")
async def delete_conversation(
    bot_id: str,
    conversation_id: str,
    state: StateDep,
    caller: CallerDep,
    client_id: ClientQuery = None,
) -> dict[str, Any]:
    client = caller.client_id(client_id)
    await limit_requests(state, caller, client)
    bot = await open_bot(state, caller, bot_id)
    if not await bot.delete_conversation(BotContext(conversation_id, client)):
        raise ConversationNotFoundError(conversation_id)
    return {"deleted": True, "bot_id": bot_id, "conversation_id": conversation_id}
