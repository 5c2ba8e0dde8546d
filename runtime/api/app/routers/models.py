"""OpenAI-compatible ``GET /v1/models`` and ``GET /v1/models/{model}``: the bots the caller may
use, as models (never a Bot's internal candidate entry)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ....configstore.rollout import is_candidate
from ...http_errors import BotNotFoundError
from ..security import CallerDep
from ..state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])


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
            if caller.may_use(e.bot_id) and not is_candidate(e.bot_id)
        ],
    }


@router.get("/models/{model}")
async def retrieve_model(model: str, state: StateDep, caller: CallerDep) -> dict[str, Any]:
    """One bot as a model; 404 (``model_not_found``) when there is none this caller may use."""
    visible = caller.may_use(model) and not is_candidate(model)
    entry = await state.store.get(model) if visible else None
    if entry is None:
        raise BotNotFoundError(model)
    return model_body(entry.bot_id, entry.updated_at.timestamp())
