"""``GET /bots``, ``GET /bots/{bot_id}``, ``DELETE /bots/{bot_id}`` (admin).

A Bot's candidate entry (``NAMESPACE:NAME@candidate``, while a new generation rolls out) is
internal: never listed, and naming it is a 404 as for an unknown bot. ``GET /bots/{bot_id}``
shows the Bot's rollout instead (``rollout``; null when none).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ....configstore.rollout import is_candidate
from ....routing import ActiveRollout
from ...http_errors import BotNotFoundError
from ..security import AdminDep, CallerDep
from ..state import StateDep

router = APIRouter(tags=["bots"])


@router.get("/bots")
async def list_bots(state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """Bots the caller may use (from the config store) and those loaded in this replica."""
    entries, revision = await state.store.list()
    bots = [e.bot_id for e in entries if caller.may_use(e.bot_id) and not is_candidate(e.bot_id)]
    active = [b for b in state.manager.list_bots() if caller.may_use(b) and not is_candidate(b)]
    return {"bots": bots, "count": len(bots), "active": active, "revision": revision}


@router.get("/bots/{bot_id}")
async def get_bot(bot_id: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """One bot: its model, version, whether this replica has it loaded, and its rollout."""
    visible = caller.may_use(bot_id) and not is_candidate(bot_id)
    entry = await state.store.get(bot_id) if visible else None
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
        "rollout": rollout_body(state.rollouts.get(bot_id)),
    }


def rollout_body(rollout: ActiveRollout | None) -> dict[str, Any] | None:
    """Where the Bot's rollout stands, as this replica routes by it (None: no rollout);
    ``step`` counts from 1, as the Bot's ``status.rollout`` does."""
    if rollout is None:
        return None
    state = rollout.state
    return {
        "phase": state.phase,
        "step": state.step + 1,
        "weight": state.weight,
        "shadow": state.shadow,
        "stableGeneration": state.stable_generation,
        "candidateGeneration": rollout.candidate_generation,
        "attempt": state.attempt,
    }


@router.delete("/bots/{bot_id}")
async def remove_bot(bot_id: str, state: StateDep, _admin: AdminDep) -> dict[str, Any]:
    """Unload the bot from this replica (it reloads from the store on next use).

    Deleting a bot for good is done on its ``Bot`` resource (or ``kubebots store delete``).
    """
    if is_candidate(bot_id) or not await state.manager.remove(bot_id):
        raise BotNotFoundError(bot_id)
    return {"removed": True, "bot_id": bot_id}
