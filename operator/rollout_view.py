"""How ``kubebots rollout`` shows a Bot's ``status.rollout``: one line, the figures of the last
analysis side by side, the ``Progressing``/``Degraded`` conditions. Pure: text from the Bot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .rollout_bots_api import BotRef

#: The analysis figures ``status`` shows, in order: (status key, label, unit).
FIGURES: Final = (
    ("turns", "turns", ""),
    ("errors", "errors", ""),
    ("errorRatePercent", "error rate", "%"),
    ("p95Ms", "p95 latency", " ms"),
    ("tokensPerTurn", "tokens/turn", ""),
    ("flaggedPercent", "flagged", "%"),
)


def status_rollout(bot: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Bot's ``status.rollout`` (None: the operator reports no rollout)."""
    rollout = (bot.get("status") or {}).get("rollout")
    return rollout if isinstance(rollout, Mapping) and rollout else None


def condition(bot: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The Bot's status condition of type ``kind``, if any."""
    for cond in (bot.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def headline(rollout: Mapping[str, Any]) -> str:
    """The rollout in one line: phase, step, share and generations."""
    phase = rollout.get("phase", "?")
    candidate, stable = rollout.get("candidateGeneration"), rollout.get("stableGeneration")
    weight = rollout.get("weight", 0)
    parts = [f"phase {phase}"]
    if rollout.get("step") is not None:
        parts.append(f"step {rollout['step']}/{rollout.get('steps', '?')}")
    if rollout.get("shadow"):
        parts.append(f"shadow: {weight}% of turns mirrored to generation {candidate}")
    else:
        parts.append(f"{weight}% of new conversations to generation {candidate}")
    parts.append(f"stable generation {stable}")
    if rollout.get("attempt") is not None:
        parts.append(f"attempt {rollout['attempt']}")
    return ", ".join(parts)


def _figure(figures: Mapping[str, Any], key: str, unit: str) -> str:
    value = figures.get(key)
    if value is None:
        return "-"
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def figures_table(rollout: Mapping[str, Any], analysis: Mapping[str, Any]) -> list[str]:
    """The last analysis' figures, stable and candidate side by side, under their
    generations."""
    stable = analysis.get("stable") or {}
    candidate = analysis.get("candidate") or {}
    generations = (rollout.get("stableGeneration", "?"), rollout.get("candidateGeneration", "?"))
    lines = [
        f"  {'':<12} {'STABLE':>12} {'CANDIDATE':>12}",
        f"  {'generation':<12} {generations[0]!s:>12} {generations[1]!s:>12}",
    ]
    for key, label, unit in FIGURES:
        lines.append(
            f"  {label:<12} {_figure(stable, key, unit):>12} {_figure(candidate, key, unit):>12}"
        )
    return lines


def describe_status(ref: BotRef, bot: Mapping[str, Any], rollout: Mapping[str, Any]) -> str:
    """``kubebots rollout status``'s table."""
    lines = [f"Bot {ref}: {headline(rollout)}"]
    if rollout.get("stepStartedAt"):
        lines.append(f"  step started at {rollout['stepStartedAt']}")
    if rollout.get("message"):
        lines.append(f"  {rollout['message']}")
    analysis = rollout.get("analysis")
    if isinstance(analysis, Mapping) and analysis:
        lines.append("analysis (last comparison):")
        lines += figures_table(rollout, analysis)
    conditions = [c for c in (condition(bot, t) for t in ("Progressing", "Degraded")) if c]
    if conditions:
        lines.append(f"  {'CONDITION':<12} {'STATUS':<7} {'REASON':<20} MESSAGE")
        for c in conditions:
            lines.append(
                f"  {c.get('type', ''):<12} {c.get('status', ''):<7} {c.get('reason', ''):<20} "
                f"{c.get('message', '')}"
            )
    return "\n".join(lines)


def where(bot: Mapping[str, Any]) -> str:
    """What the Bot's status shows now, for a wait that timed out."""
    rollout = status_rollout(bot)
    ready = condition(bot, "Ready") or {}
    parts = [headline(rollout) if rollout else "no rollout"]
    if ready:
        parts.append(f"Ready {ready.get('status')} ({ready.get('reason')}: {ready.get('message')})")
    return "; ".join(parts)
