"""A client's conversations: list, read and delete. Other clients' conversations do not exist.

None of these builds the bot or its LLM client: they reach the bot's conversation store only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ....conversations import StoredMessage
from ...http_errors import ConversationNotFoundError
from ..access import ConversationAccess, open_conversations
from ..models import ConversationOut, MessageOut, ToolCallOut
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(tags=["conversations"])
ClientQuery = Annotated[
    str | None,
    Query(
        max_length=256, description="Without API keys only: whose conversation (default anonymous)"
    ),
]


async def conversation_access(
    bot_id: str, state: StateDep, caller: CallerDep, client_id: ClientQuery = None
) -> AsyncIterator[ConversationAccess]:
    """The caller's conversations with bot ``bot_id``, while the route runs."""
    async with open_conversations(state, caller, bot_id, claimed_client_id=client_id) as access:
        yield access


ConversationAccessDep = Annotated[
    ConversationAccess, Depends(conversation_access, scope="function")
]


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """A read of one page of a conversation's history."""

    access: ConversationAccess
    offset: int
    limit: int | None


async def history_read(
    bot_id: str,
    state: StateDep,
    caller: CallerDep,
    client_id: ClientQuery = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> AsyncIterator[HistoryRead]:
    """Like :func:`conversation_access`, for one page (a bad page is refused before that)."""
    async with open_conversations(state, caller, bot_id, claimed_client_id=client_id) as access:
        yield HistoryRead(access, offset, limit)


HistoryReadDep = Annotated[HistoryRead, Depends(history_read, scope="function")]


@router.get("/bots/{bot_id}/conversations")
async def list_conversations(access: ConversationAccessDep) -> dict[str, Any]:
    ids = await access.conversations.list_conversations(access.client_id)
    return {"bot_id": access.bot_id, "conversations": ids, "count": len(ids)}


def message_out(message: StoredMessage) -> MessageOut:
    """``message`` as the history shows it (tool fields and the generation only when it has
    them)."""
    calls = [
        ToolCallOut(id=c.id, function={"name": c.name, "arguments": c.arguments})
        for c in message.tool_calls
    ]
    return MessageOut(
        seq=message.seq,
        role=message.role,
        content=message.content,
        created_at=message.created_at,
        tool_calls=calls or None,
        tool_call_id=message.tool_call_id,
        generation=message.generation,
    )


@router.get(
    "/bots/{bot_id}/conversations/{conversation_id:path}",
    response_model=ConversationOut,
    response_model_exclude_none=True,
)
async def get_conversation(
    bot_id: str, conversation_id: str, read: HistoryReadDep
) -> ConversationOut:
    access = read.access
    context = access.context(conversation_id)
    if not await access.conversations.conversation_exists(context):
        raise ConversationNotFoundError(conversation_id)
    messages = await access.conversations.get_history(context, offset=read.offset, limit=read.limit)
    return ConversationOut(
        bot_id=bot_id,
        conversation_id=conversation_id,
        client_id=access.client_id,
        messages=[message_out(m) for m in messages],
    )


@router.delete("/bots/{bot_id}/conversations/{conversation_id:path}")
async def delete_conversation(
    bot_id: str, conversation_id: str, access: ConversationAccessDep
) -> dict[str, Any]:
    if not await access.conversations.delete_conversation(access.context(conversation_id)):
        raise ConversationNotFoundError(conversation_id)
    return {"deleted": True, "bot_id": bot_id, "conversation_id": conversation_id}
