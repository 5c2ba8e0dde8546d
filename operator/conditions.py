"""Kubernetes-style status conditions (kstatus: ``Ready``, ``Stalled``, ``Reconciling``).

Pure functions: the handlers pass in what they observed, and get back the status to patch.
``lastTransitionTime`` changes only when a condition's status does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render(
    conditions: Sequence[Condition],
    *,
    generation: int,
    previous: Sequence[Mapping[str, Any]] | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Conditions as status entries; a condition keeps its transition time if its status held."""
    before = {c.get("type"): c for c in previous or [] if isinstance(c, Mapping)}
    stamp = now or now_iso()
    out = []
    for cond in conditions:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        transition = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append(
            {
                "type": cond.type,
                "status": status,
                "reason": cond.reason,
                "message": cond.message[:1024],
                "observedGeneration": generation,
                "lastTransitionTime": transition or stamp,
            }
        )
    return out
