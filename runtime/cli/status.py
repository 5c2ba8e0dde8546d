"""``kubebots status``: each Bot as the operator sees it in the config store, without kubectl.

Per Bot: its generation and store revision, how many live runtime replicas serve that revision
(the rule of the operator's ``Ready``: :mod:`..configstore.serving`), the errors the replicas
report for it with their reasons, the fallback LLM endpoints answering for it, the tools its
MCP servers offer, and its rollout (a candidate generation beside the stable one, see
docs/rollouts.md): phase, step, weight and how many replicas serve the candidate. A replica is
live while its heartbeat is younger than ``--replica-max-age`` (the operator's
``KUBEBOTS_REPLICA_MAX_AGE``, 15 s by default). Nothing is written: a store that does not
exist is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..configstore import DEFAULT_STORE_URL, ReplicaReport, StoreEntry, open_config_store
from ..configstore.rollout import candidate_id, decode_state, is_candidate
from ..configstore.serving import Serving, serving_from
from ..errors import KubebotsError

#: the operator's default (``KUBEBOTS_REPLICA_MAX_AGE``)
DEFAULT_REPLICA_MAX_AGE = 15.0


def add_status_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "status", help="each Bot's generation, revision, served replicas and errors"
    )
    p.add_argument("--store", help=f"store URL (default: $KUBEBOTS_STORE or {DEFAULT_STORE_URL})")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument(
        "--replica-max-age",
        type=float,
        help="a replica is live while its heartbeat is younger than this (seconds; default: "
        f"$KUBEBOTS_REPLICA_MAX_AGE or {DEFAULT_REPLICA_MAX_AGE:g})",
    )
    p.add_argument("bot_ids", nargs="*", metavar="BOT", help="NAMESPACE:NAME (default: all)")
    p.set_defaults(handler=run_status)


def reason(live: Serving) -> str:
    """Why the revision is (not) served, in the words of the operator's ``Ready`` reasons (the
    ones the store shows: an invalid spec or a missing Secret never reaches it)."""
    if live.errors:
        return "ToolUnavailable" if "ToolUnavailable" in live.reasons else "RuntimeError"
    if live.replicas == 0:
        return "NoReplicas"
    return "RollingOut" if live.served < live.replicas else "Serving"


def rollout_status(candidate: StoreEntry, live: Serving) -> dict[str, Any]:
    """A Bot's rollout as its candidate entry says (``-o json``'s ``rollout``)."""
    state = decode_state(candidate.annotations)
    return {
        "phase": state.phase if state else "Unknown",
        "step": state.step + 1 if state else None,
        "weight": state.weight if state else None,
        "shadow": state.shadow if state else None,
        "attempt": state.attempt if state else None,
        "reason": state.reason if state else "",
        "candidateGeneration": candidate.generation,
        "candidateRevision": candidate.revision,
        "candidateServed": f"{live.served}/{live.replicas}",
    }


def bot_status(
    entry: StoreEntry, live: Serving, rollout: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One Bot's status as ``-o json`` prints it."""
    why = reason(live)
    return {
        "botId": entry.bot_id,
        "generation": entry.generation,
        "revision": entry.revision,
        "updatedAt": entry.updated_at.isoformat(),
        "replicas": live.replicas,
        "servedReplicas": live.served,
        "served": f"{live.served}/{live.replicas}",
        "ready": why == "Serving",
        "reason": why,
        "errors": list(live.errors),
        "errorReasons": list(live.reasons),
        "fallbacks": [{"endpoint": e, "replicas": n} for e, n in live.fallbacks],
        "tools": [{"name": s, "tools": t, "replicas": r} for s, t, r in live.tools],
        "rollout": rollout,
    }


def statuses(
    entries: Sequence[StoreEntry], reports: Sequence[ReplicaReport]
) -> list[dict[str, Any]]:
    """The Bots' statuses; a candidate entry shows as its Bot's ``rollout``, not as a Bot."""
    candidates = {e.bot_id: e for e in entries if is_candidate(e.bot_id)}
    out = []
    for e in entries:
        if is_candidate(e.bot_id):
            continue
        candidate = candidates.get(candidate_id(e.bot_id))
        rollout = None
        if candidate is not None:
            served = serving_from(reports, candidate.bot_id, candidate.revision)
            rollout = rollout_status(candidate, served)
        out.append(bot_status(e, serving_from(reports, e.bot_id, e.revision), rollout))
    return out


def _rollout(bot: Mapping[str, Any]) -> str:
    rollout = bot.get("rollout")
    if not rollout:
        return "-"
    if rollout["phase"] != "Progressing":
        return f"{rollout['phase']}:{rollout['candidateGeneration']}"
    mode = "shadow" if rollout["shadow"] else "canary"
    return f"{mode} {rollout['weight']}%->{rollout['candidateGeneration']}"


def _tools(bot: Mapping[str, Any]) -> str:
    return ",".join(f"{t['name']}={t['tools']}" for t in bot["tools"]) or "-"


def table(bots: Sequence[Mapping[str, Any]], revision: int, replicas: int) -> str:
    lines = [
        f"{'BOT':<40} {'GENERATION':>10} {'REVISION':>9} {'SERVED':>7}  "
        f"{'READY':<5}  {'REASON':<16} {'ROLLOUT':<18} {'TOOLS':<20} ERROR"
    ]
    for b in bots:
        error = b["errors"][0] if b["errors"] else "-"
        more = f" (+{len(b['errors']) - 1} more)" if len(b["errors"]) > 1 else ""
        lines.append(
            f"{b['botId']:<40} {b['generation']:>10} {b['revision']:>9} {b['served']:>7}  "
            f"{b['ready']!s:<5}  {b['reason']:<16} {_rollout(b):<18} {_tools(b):<20} "
            f"{error}{more}"
        )
    lines.append(f"({len(bots)} bots, store revision {revision}, {replicas} live replicas)")
    return "\n".join(lines)


async def _status(url: str, wanted: Sequence[str], max_age: float, output: str) -> int:
    store = await open_config_store(url, create=False)
    try:
        entries, revision = await store.list()
        reports = await store.replica_reports(max_age_seconds=max_age)
    finally:
        await store.close()
    missing = sorted(set(wanted) - {e.bot_id for e in entries if not is_candidate(e.bot_id)})
    if missing:
        print(f"error: not in the store: {', '.join(missing)}", file=sys.stderr)
        return 1
    chosen = [
        e
        for e in entries
        if not wanted or e.bot_id in wanted or e.bot_id in map(candidate_id, wanted)
    ]
    bots = statuses(sorted(chosen, key=lambda e: e.bot_id), reports)
    if output == "json":
        document = {"storeRevision": revision, "replicas": len(reports), "bots": bots}
        print(json.dumps(document, indent=2))
    else:
        print(table(bots, revision, len(reports)))
    return 0


def run_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = args.store or env.get("KUBEBOTS_STORE") or DEFAULT_STORE_URL
    max_age = args.replica_max_age
    try:
        if max_age is None:
            max_age = float(env.get("KUBEBOTS_REPLICA_MAX_AGE") or DEFAULT_REPLICA_MAX_AGE)
    except ValueError:
        print("error: KUBEBOTS_REPLICA_MAX_AGE must be a number of seconds", file=sys.stderr)
        return 1
    if max_age <= 0:
        print("error: the replica max age must be positive", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_status(url, args.bot_ids, max_age, args.output))
    except KubebotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
