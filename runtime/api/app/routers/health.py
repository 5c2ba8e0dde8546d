"""``/healthz`` (the process answers), ``/readyz`` (first store sync done), ``/metrics``.

``/readyz`` says why it is not ready (the store's error never quotes credentials), and once
ready whether the config store and the conversation databases in use currently answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...http_errors import ServiceUnavailableError
from ..state import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> dict[str, Any]:
    problem = " ".join(state.sync.store_problem.split()) if state.sync.store_problem else None
    if not state.sync.ready.is_set():
        why = f" (config store unavailable: {problem})" if problem else ""
        raise ServiceUnavailableError(
            f"not ready: the first config store sync has not finished{why}", retry_after=1
        )
    # Once synced, an outage keeps the replica ready (it serves the last good configs, and
    # stateless turns need no conversation database): the body says what is down, so a probe
    # or a person sees it, and taking every replica out of the Service would turn a partial
    # outage into a full one.
    conversations = state.manager.factory.conversation_problems()
    return {
        "status": "ready",
        "replica_id": state.sync.report().replica_id,
        "synced_revision": state.sync.synced_revision,
        "config_store": f"unavailable: {problem}" if problem else "ok",
        "conversations": f"unavailable: {'; '.join(conversations)}" if conversations else "ok",
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
