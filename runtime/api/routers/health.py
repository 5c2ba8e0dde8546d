"""``/healthz`` (the process answers), ``/readyz`` (first store sync done), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ServiceUnavailableError
from ..state import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> dict[str, Any]:
    if not state.sync.ready.is_set():
        raise ServiceUnavailableError("not ready: the first config store sync has not finished")
    return {
        "status": "ready",
        "replica_id": state.sync.report().replica_id,
        "synced_revision": state.sync.synced_revision,
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
