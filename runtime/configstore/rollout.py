"""A Bot's rollout as the config store holds it: the stable entry and the candidate entry.

While a Bot with ``spec.rollout`` moves from one generation to the next, the store keeps both:
the Bot's own entry (``NAMESPACE:NAME``) holds the *stable* generation, and a second entry
(``NAMESPACE:NAME@candidate``, :func:`candidate_id`; no Kubernetes name holds ``@``) holds the
*candidate* with the rollout's state in its annotation ``rollout`` (:class:`RolloutState`).
Runtimes route by that state; the operator alone writes it (advances, rolls back). Promotion
writes the candidate's spec into the Bot's entry and deletes the candidate entry; a rollback
keeps the candidate entry with phase ``RolledBack`` (weight 0), so the decision survives
restarts until the spec changes again or ``retry`` is asked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Final, Literal, get_args

CANDIDATE_SUFFIX: Final = "@candidate"
#: The candidate entry's annotation holding the :class:`RolloutState` (compact JSON).
ROLLOUT_ANNOTATION: Final = "rollout"

Phase = Literal["Progressing", "RolledBack", "Aborted"]
PHASES: Final = frozenset(get_args(Phase))


def candidate_id(bot_id: str) -> str:
    """The store id of ``bot_id``'s candidate entry."""
    return bot_id + CANDIDATE_SUFFIX


def is_candidate(entry_id: str) -> bool:
    """Whether ``entry_id`` names a candidate entry (never a Bot's own id)."""
    return entry_id.endswith(CANDIDATE_SUFFIX)


def stable_id(entry_id: str) -> str:
    """The Bot id an entry belongs to: itself, or the Bot of a candidate entry."""
    return entry_id.removesuffix(CANDIDATE_SUFFIX)


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where a Bot's rollout stands; the candidate entry's ``rollout`` annotation."""

    phase: Phase
    stable_generation: int  # the generation in the Bot's own entry
    step: int  # index into spec.rollout.steps
    weight: int  # percent of new conversations (shadow: of turns) given to the candidate
    shadow: bool
    attempt: int  # 1, then +1 on each retry: counters of an older attempt never mix in
    step_started_at: float  # unix seconds (the operator's clock) the step began
    reason: str = ""  # why the phase: "AnalysisFailed: error rate 12% > 5%", "Aborted", ...
    #: the last ``kubebots.io/rollout-action`` annotation value acted on (acted on once)
    handled_action: str = ""

    @property
    def window(self) -> str:
        """The key of the counters of this attempt's step."""
        return f"{self.attempt}.{self.step}"

    @property
    def active(self) -> bool:
        """Whether the candidate takes traffic (real or mirrored)."""
        return self.phase == "Progressing" and self.weight > 0

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    def evolve(self, **changes: object) -> RolloutState:
        return replace(self, **changes)  # type: ignore[arg-type]


def decode_state(annotations: Mapping[str, str]) -> RolloutState | None:
    """The state in an entry's annotations (None: none, or not a state this version reads)."""
    text = annotations.get(ROLLOUT_ANNOTATION)
    if not text:
        return None
    try:
        raw = json.loads(text)
        state = RolloutState(
            phase=raw["phase"],
            stable_generation=int(raw["stable_generation"]),
            step=int(raw["step"]),
            weight=int(raw["weight"]),
            shadow=bool(raw["shadow"]),
            attempt=int(raw["attempt"]),
            step_started_at=float(raw["step_started_at"]),
            reason=str(raw.get("reason", "")),
            handled_action=str(raw.get("handled_action", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if state.phase not in PHASES or not 0 <= state.weight <= 100:
        return None
    return state


__all__ = [
    "CANDIDATE_SUFFIX",
    "PHASES",
    "ROLLOUT_ANNOTATION",
    "Phase",
    "RolloutState",
    "candidate_id",
    "decode_state",
    "is_candidate",
    "stable_id",
]
