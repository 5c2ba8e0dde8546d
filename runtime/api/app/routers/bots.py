"""``GET /bots``, ``GET /bots/{bot_id}``, ``DELETE /bots/{bot_id}`` (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...http_errors import BotNotFoundError
from ..security import AdminDep, CallerDep
from ..state import StateDep

router = APIRouter(tags=["bots"])


@router.get("/bots")
async def list_bots(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Bots the caller may use (from the config store) and those loaded in this replica."""
    entries, revision = await state.store.list()
    bots = [e.bot_id for e in entries if caller.may_use(e.bot_id)]
    active = [b for b in state.manager.list_bots() if caller.may_use(b)]
    return {"bots": bots, "count": len(bots), "active": active, "revision": revision}


@router.get("/bots/{bot_id}")
async def get_bot(bot_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """One bot: its model, version, and whether this replica has it loaded."""
    entry = await state.store.get(bot_id) if caller.may_use(bot_id) else None
    if entry is None:
        raise BotNotFoundError(bot_id)
    bot = await state.manager.get(bot_id)
    llm = entry.config.get("llm") or {}
    problem = state.sync.status.problem(bot_id)
    return {
        "bot_id": bot_id,
        "status": "active" if bot is not None else "available",
        "generation": entry.generation,
        "revision": entry.revision,
        "served_revision": bot.version.revision if bot and bot.version else None,
        "provider": llm.get("provider", "echo") if isinstance(llm, dict) else None,
        "model": llm.get("model", "echo") if isinstance(llm, dict) else None,
        "error": problem.error if problem else None,
    }


@router.delete("/bots/{bot_id}")
async def remove_bot(bot_id: str, state: StateDep, _admin: AdminDep) -> dict[str, Any]:
    """Unload the bot from this replica (it reloads from the store on next use).

    Deleting a bot for good is done on its ``Bot`` resource (or ``kubebots store delete``).
    """
    if not await state.manager.remove(bot_id):
        raise BotNotFoundError(bot_id)
    return {"removed": True, "bot_id": bot_id}
