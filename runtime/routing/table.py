"""The rollouts a replica knows: one :class:`ActiveRollout` per Bot with a candidate entry."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..configstore.rollout import RolloutState


@dataclass(frozen=True, slots=True)
class ActiveRollout:
    """A Bot's rollout as its candidate entry says (the store sync builds these)."""

    bot_id: str  # the Bot's own id (its stable entry)
    candidate_id: str  # the candidate entry's id: the BotManager key of the candidate
    state: RolloutState
    candidate_generation: int
    candidate_revision: int
    #: the candidate spec's ``rollout.analysis.flagReplyPattern``, compiled (None: no flag)
    flag: re.Pattern[str] | None = None

    @property
    def stable_generation(self) -> int:
        return self.state.stable_generation


class RolloutTable:
    """Bot id -> its :class:`ActiveRollout`; read on every turn, written by the sync only."""

    def __init__(self) -> None:
        self._rollouts: dict[str, ActiveRollout] = {}

    def get(self, bot_id: str) -> ActiveRollout | None:
        return self._rollouts.get(bot_id)

    def set(self, rollout: ActiveRollout) -> None:
        self._rollouts[rollout.bot_id] = rollout

    def discard(self, bot_id: str) -> ActiveRollout | None:
        return self._rollouts.pop(bot_id, None)

    def bots(self) -> list[str]:
        return sorted(self._rollouts)

    def __len__(self) -> int:
        return len(self._rollouts)
