"""A Bot's status: is its generation accepted, stored, and served by every live replica?

``Ready=True`` only when every live runtime replica reports it has applied the store revision
of this generation and reports no error for the bot: ``kubectl wait --for=condition=Ready``
then means "the new config is live everywhere".

While replicas report that an ``llm.fallbacks`` endpoint answers for the bot (its primary
failed), ``status.llm.servedBy`` lists those endpoints with their replica counts and the
``LLMFallback`` condition says so; both go once the primary answers again everywhere.

A replica that cannot list one of the Bot's MCP servers reports an error with the reason
``ToolUnavailable`` (it keeps serving the last good config and retries): ``Ready=False`` with
that reason. ``status.tools.mcp`` lists the tools each MCP server offers, as the replicas report
them. Which replicas serve a revision is the runtime's rule
(:mod:`kubebots.runtime.configstore.serving`), shared with ``kubebots status``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from kubebots.runtime.configstore import ReplicaReport, ReplicaReports
from kubebots.runtime.configstore.serving import Serving, serving_from

from . import rollout_status
from .conditions import Condition, render
from .reconcile import Applied, BotRef
from .rollout_status import RolloutNote

#: the reason a replica reports for a Bot whose MCP server it cannot list
TOOL_UNAVAILABLE = "ToolUnavailable"


def _pruned(value: Any) -> Any:
    """``value`` with the None fields of its objects left out: a merge patch of ``null``
    removes a field, so the object that lands has none."""
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    return value


def comparable(status: Mapping[str, Any] | None) -> Any:
    """A status without its conditions' transition times: equal means nothing to patch."""
    if not status:
        return None
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return _pruned({**status, "conditions": conditions})


def differs(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether patching ``new`` over ``old`` changes anything: only ``new``'s fields count
    (a merge patch leaves the others, e.g. ``revision`` while a Secret is missing)."""
    if old is None:
        return True
    return bool(comparable(new) != comparable({k: old.get(k) for k in new}))


class ReportsCache:
    """Replica reports for the handlers waiting for their writes (``wait_served``): read at
    most once per ``ttl`` seconds, whatever the number of waiting handlers.

    A handler waiting for its write to be served asks for reports ``newer_than`` the moment it
    asked: it gets a fresh read (never data up to ``ttl`` old, which made every update wait
    ~0.1 s longer), shared with every waiter that asked before that read began."""

    def __init__(self, store: ReplicaReports, *, ttl: float = 0.1) -> None:
        self.store = store
        self._ttl = ttl
        self._read_at = -1.0  # when the last read began: its data is at least this new
        self._max_age = 0.0
        self._reports: list[ReplicaReport] = []
        self._lock = asyncio.Lock()
        self.waiting = 0  # handlers waiting for their writes right now

    async def get(self, max_age: float, *, newer_than: float | None = None) -> list[ReplicaReport]:
        async with self._lock:
            began = time.monotonic()
            stale = began - self._read_at > self._ttl or max_age != self._max_age
            if stale or (newer_than is not None and self._read_at < newer_than):
                self._reports = await self.store.replica_reports(max_age_seconds=max_age)
                self._read_at, self._max_age = began, max_age
            return self._reports


async def serving(
    reports: ReportsCache,
    bot_id: str,
    revision: int,
    max_age: float,
    *,
    newer_than: float | None = None,
) -> Serving:
    return serving_from(await reports.get(max_age, newer_than=newer_than), bot_id, revision)


#: How often a waiting handler reads the replica reports: often while few wait (an edit is Ready
#: sooner), less often in a burst (one read serves every waiter; reads are CPU the burst needs).
POLL_FEW, POLL_MANY, MANY = 0.01, 0.05, 8


async def wait_served(
    reports: ReportsCache, bot_id: str, revision: int, *, wait: float, max_age: float
) -> Serving:
    """Serving state, waiting up to ``wait`` seconds for every live replica to catch up (or
    one to report an error); replicas are live while their heartbeat is younger than
    ``max_age``."""
    deadline = time.monotonic() + wait
    reports.waiting += 1
    try:
        while True:
            asked = time.monotonic()
            live = await serving(reports, bot_id, revision, max_age, newer_than=asked)
            if (live.replicas and live.served == live.replicas) or live.errors:
                return live
            if time.monotonic() >= deadline:
                return live
            await asyncio.sleep(POLL_FEW if reports.waiting <= MANY else POLL_MANY)
    finally:
        reports.waiting -= 1


def _ready(ref: BotRef, applied: Applied, live: Serving | None) -> tuple[Condition, bool, bool]:
    """The Ready condition, and whether the Bot is stalled (needs a user) or reconciling."""
    if applied.invalid is not None:
        return Condition("Ready", False, "InvalidSpec", applied.invalid), True, False
    if applied.secret_missing is not None:
        return Condition("Ready", False, "SecretMissing", applied.secret_missing), True, False
    if applied.revision is None or live is None:
        msg = applied.unavailable or "not written yet"
        return Condition("Ready", False, "StoreUnavailable", msg), False, True
    rolling = rollout_status.ready(ref, applied)
    if rolling is not None:
        return rolling
    if live.errors and TOOL_UNAVAILABLE in live.reasons:
        # not stalled: the replicas build the Bot again until its MCP servers answer
        return Condition("Ready", False, TOOL_UNAVAILABLE, "; ".join(live.errors)), False, True
    if live.errors:
        return Condition("Ready", False, "RuntimeError", "; ".join(live.errors)), True, False
    if live.replicas == 0:
        msg = "no live runtime replica reports to the config store"
        return Condition("Ready", False, "NoReplicas", msg), False, True
    msg = f"served by {live.served}/{live.replicas} runtime replicas"
    if live.served < live.replicas:
        return Condition("Ready", False, "RollingOut", msg), False, True
    return Condition("Ready", True, "Serving", msg), False, False


def _fallback(live: Serving) -> Condition:
    """The ``LLMFallback`` condition of a bot some fallback endpoint answers for."""
    noun = "replica" if live.replicas == 1 else "replicas"
    served = (f"{endpoint} on {n} of {live.replicas} {noun}" for endpoint, n in live.fallbacks)
    message = f"served by fallback {'; '.join(served)}"
    return Condition("LLMFallback", True, "FallbackServing", message)


def status_patch(
    ref: BotRef,
    applied: Applied,
    live: Serving | None,
    previous: Mapping[str, Any] | None,
    note: RolloutNote | None = None,
) -> dict[str, Any]:
    """The whole status to patch (every field is in the CRD's status schema: nothing pruned).
    ``note``: the rollout controller's last judgement of the Bot's step, if any."""
    ready, stalled, reconciling = _ready(ref, applied, live)
    accepted = (
        Condition("Accepted", False, "InvalidSpec", applied.invalid)
        if applied.invalid is not None
        else Condition("Accepted", True, "Valid", "the spec is valid")
    )
    if applied.revision is not None:
        synced = Condition(
            "Synced", True, "Stored", f"in the config store at revision {applied.revision}"
        )
    else:
        reason = "SecretMissing" if applied.secret_missing else accepted.reason
        message = "the store keeps the last good config"
        if applied.unavailable is not None:
            reason, message = "StoreUnavailable", f"not written yet: {applied.unavailable}"
        synced = Condition("Synced", False, reason, message)
    conditions = [
        accepted,
        synced,
        ready,
        Condition(
            "Stalled",
            stalled,
            ready.reason if stalled else "NotStalled",
            ready.message if stalled else "",
        ),
        Condition(
            "Reconciling",
            reconciling,
            ready.reason if reconciling else "Done",
            ready.message if reconciling else "",
        ),
    ]
    if live is not None and live.fallbacks:
        conditions.append(_fallback(live))
    if applied.revision is not None:
        conditions += rollout_status.conditions(ref, applied, note, previous)
    previous_conditions = (previous or {}).get("conditions")
    status: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "botId": ref.bot_id,
        "conditions": render(
            conditions,
            generation=ref.generation,
            previous=previous_conditions if isinstance(previous_conditions, list) else None,
        ),
    }
    if applied.revision is not None:
        status["revision"] = applied.revision
        rollout = rollout_status.rollout(ref, applied, note, previous)
        if rollout is not rollout_status.KEEP:
            status["rollout"] = rollout
    if live is not None:
        status["replicas"] = live.replicas
        status["servedReplicas"] = live.served
        status["served"] = f"{live.served}/{live.replicas}"
        if live.fallbacks:
            served_by = [{"endpoint": e, "replicas": n} for e, n in live.fallbacks]
            status["llm"] = {"servedBy": served_by}
        elif (previous or {}).get("llm") is not None:
            status["llm"] = None  # the primary serves again: the merge patch removes it
        if live.tools:
            mcp = [{"name": n, "tools": t, "replicas": r} for n, t, r in live.tools]
            status["tools"] = {"mcp": mcp}
        elif (previous or {}).get("tools") is not None:
            status["tools"] = None  # no replica reports tools: the merge patch removes them
    return status
