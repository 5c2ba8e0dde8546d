"""The rollout part of a Bot's status: ``Ready`` while a candidate exists, the conditions
``Progressing`` and ``Degraded``, and ``status.rollout``.

kstatus reading: ``Reconciling`` True while a step runs (in progress), ``Stalled`` True after a
rollback or an abort (it needs a ``retry`` or a new spec). ``Progressing`` is True ``StepPaused``
while a step waits out its duration, True ``Analyzing`` while its duration is over and the
candidate lacks turns; False ``Promoted``, ``RolledBack`` or ``Aborted`` once it ended.
``Degraded`` is True ``AnalysisFailed`` (the failure as its message) after a rollback, else
False ``Healthy``. Messages never depend on the clock, so a recomputed status patches nothing.

Pure: the status controller passes the controller's last look at the step (:class:`RolloutNote`).
A promoted generation found after a restart (nothing in the store says it was promoted) keeps
the ``Promoted`` status it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from kubebots.runtime.configstore.rollout import RolloutState

from .analysis import Verdict
from .conditions import Condition

if TYPE_CHECKING:
    from .reconcile import Applied, BotRef

#: A rollback's reason starts with this (then the analysis' failure).
ANALYSIS_FAILED: Final = "AnalysisFailed"
#: ``status.rollout`` as it stands: the merge patch leaves it.
KEEP: Final = object()


@dataclass(frozen=True)
class RolloutNote:
    """The rollout controller's last judgement of a step (shown while it is that step's)."""

    generation: int
    window: str
    verdict: Verdict
    waiting: bool  # the step's duration is over, the candidate lacks turns

    def of(self, ref: BotRef, state: RolloutState) -> bool:
        return self.generation == ref.generation and self.window == state.window


def rfc3339(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def step_text(state: RolloutState, steps: int) -> str:
    """``step 2/3: 50% of new conversations`` (``of turns mirrored`` in shadow)."""
    share = "of turns mirrored" if state.shadow else "of new conversations"
    return f"step {state.step + 1}/{steps}: {state.weight}% {share}"


def _steps(applied: Applied, state: RolloutState) -> int:
    return len(applied.plan.steps) if applied.plan is not None else state.step + 1


def _failure(state: RolloutState) -> str | None:
    prefix = f"{ANALYSIS_FAILED}: "
    return state.reason.removeprefix(prefix) if state.reason.startswith(prefix) else None


def _promoted_before(ref: BotRef, previous: Mapping[str, Any] | None) -> bool:
    shown = (previous or {}).get("rollout")
    return (
        isinstance(shown, Mapping)
        and shown.get("phase") == "Promoted"
        and shown.get("candidateGeneration") == ref.generation
    )


def ready(ref: BotRef, applied: Applied) -> tuple[Condition, bool, bool] | None:
    """``Ready`` (and stalled, reconciling) while a candidate holds this generation."""
    state = applied.rollout
    if state is None or not applied.rolling_out:
        return None
    if state.phase == "Progressing":
        message = (
            f"{step_text(state, _steps(applied, state))} to generation {ref.generation} "
            f"(stable {state.stable_generation})"
        )
        return Condition("Ready", False, "RolloutInProgress", message), False, True
    ended = "rolled back" if state.phase == "RolledBack" else "aborted"
    message = (
        f"generation {ref.generation} {ended} ({state.reason}): generation "
        f"{state.stable_generation} serves every conversation; retry or change the spec"
    )
    return Condition("Ready", False, state.phase, message), True, False


def conditions(
    ref: BotRef,
    applied: Applied,
    note: RolloutNote | None,
    previous: Mapping[str, Any] | None,
) -> list[Condition]:
    """``Progressing`` and ``Degraded`` of a generation that had a rollout (none otherwise)."""
    state = applied.rollout
    if state is None:
        if not _promoted_before(ref, previous):
            return []
        promoted = Condition("Progressing", False, "Promoted", f"generation {ref.generation}")
        return [promoted, Condition("Degraded", False, "Healthy", "")]
    failure = _failure(state)
    degraded = (
        Condition("Degraded", True, ANALYSIS_FAILED, failure)
        if failure is not None
        else Condition("Degraded", False, "Healthy", "")
    )
    if applied.promoted:
        message = f"generation {ref.generation} promoted: it serves every conversation"
        return [Condition("Progressing", False, "Promoted", message), degraded]
    if state.phase != "Progressing":
        return [Condition("Progressing", False, state.phase, state.reason), degraded]
    if note is not None and note.of(ref, state) and note.waiting:
        message = _waiting(note, applied)
        return [Condition("Progressing", True, "Analyzing", message), degraded]
    message = step_text(state, _steps(applied, state))
    return [Condition("Progressing", True, "StepPaused", message), degraded]


def _waiting(note: RolloutNote, applied: Applied) -> str:
    needed = applied.plan.analysis.min_turns if applied.plan is not None else "?"
    return f"waiting for turns: {note.verdict.candidate.turns} of {needed}"


def rollout(
    ref: BotRef,
    applied: Applied,
    note: RolloutNote | None,
    previous: Mapping[str, Any] | None,
) -> dict[str, Any] | object | None:
    """``status.rollout``: a dict, None (remove it: no rollout) or :data:`KEEP`."""
    state = applied.rollout
    if state is None:
        if _promoted_before(ref, previous):
            return KEEP
        return None if (previous or {}).get("rollout") is not None else KEEP
    steps = _steps(applied, state)
    phase = "Promoted" if applied.promoted else state.phase
    judged = note if note is not None and note.of(ref, state) else None
    if applied.promoted:
        message = f"generation {ref.generation} promoted: it serves every conversation"
    elif state.phase != "Progressing":
        message = state.reason
    elif judged is not None and judged.waiting:
        message = _waiting(judged, applied)
    else:
        message = step_text(state, steps)
    analysis = None
    if judged is not None:
        verdict = judged.verdict
        analysis = {
            "candidate": verdict.candidate.as_status(),
            "stable": verdict.stable.as_status(),
        }
    return {
        "phase": phase,
        "step": steps if applied.promoted else state.step + 1,
        "steps": steps,
        "weight": 100 if applied.promoted else state.weight,
        "shadow": state.shadow,
        "stableGeneration": state.stable_generation,
        "candidateGeneration": ref.generation,
        "attempt": state.attempt,
        "stepStartedAt": rfc3339(state.step_started_at),
        "message": message,
        "analysis": analysis,
    }
