"""Turn counts per Bot, generation and rollout window, kept in memory for the replica report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..configstore.counters import BUCKETS, GenerationCounters, bucket_of

Role = Literal["stable", "candidate", "shadow"]
Outcome = Literal["ok", "error", "flagged"]
#: (bot, generation, role, outcome): a key of :meth:`RolloutCounters.totals`
TotalKey = tuple[str, int, Role, Outcome]


@dataclass(slots=True)
class _Counts:
    turns: int = 0
    errors: int = 0
    tokens: int = 0
    flagged: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * BUCKETS)


class RolloutCounters:
    """What each generation of each Bot under rollout served on this replica.

    ``record`` is called once per turn (no I/O); :meth:`snapshot` gives the cumulative counts
    of a Bot's windows for the replica report; :attr:`version` grows with every record, so the
    report loop knows when there is something new to send. :meth:`totals` are monotonic
    per (bot, generation, role, outcome) for the metrics: a window moving on (:meth:`keep_window`)
    leaves them, only the rollout's end (:meth:`forget`) drops them.
    """

    def __init__(self) -> None:
        self._counts: dict[str, dict[tuple[int, str, bool], _Counts]] = {}
        self._totals: dict[str, dict[tuple[int, Role, Outcome], int]] = {}
        self.version = 0

    def record(
        self,
        bot_id: str,
        generation: int,
        window: str,
        *,
        shadow: bool = False,
        latency_s: float = 0.0,
        tokens: int = 0,
        error: bool = False,
        flagged: bool = False,
        candidate: bool = False,
    ) -> None:
        """Count one turn: answered (its latency, tokens, whether flagged) or failed.
        ``candidate``: answered by the candidate generation (its role in :meth:`totals`;
        a ``shadow`` turn is always the candidate's)."""
        counts = self._counts.setdefault(bot_id, {}).setdefault(
            (generation, window, shadow), _Counts()
        )
        counts.turns += 1
        if error:
            counts.errors += 1
        else:
            counts.tokens += max(0, tokens)
            counts.flagged += int(flagged)
            counts.latency[bucket_of(latency_s * 1000.0)] += 1
        role: Role = "shadow" if shadow else "candidate" if candidate else "stable"
        outcome: Outcome = "error" if error else "flagged" if flagged else "ok"
        totals = self._totals.setdefault(bot_id, {})
        totals[generation, role, outcome] = totals.get((generation, role, outcome), 0) + 1
        self.version += 1

    def totals(self) -> dict[TotalKey, int]:
        """Every turn recorded since each Bot's rollout began, by (bot, generation, role,
        outcome); never lowered by a window moving on."""
        return {
            (bot, generation, role, outcome): count
            for bot, counts in self._totals.items()
            for (generation, role, outcome), count in counts.items()
        }

    def snapshot(self, bot_id: str) -> tuple[GenerationCounters, ...]:
        """The Bot's counts, one per (generation, window, shadow), sorted."""
        return tuple(
            GenerationCounters(
                generation,
                window,
                shadow,
                c.turns,
                c.errors,
                c.tokens,
                c.flagged,
                tuple(c.latency),
            )
            for (generation, window, shadow), c in sorted(self._counts.get(bot_id, {}).items())
        )

    def bots(self) -> list[str]:
        return sorted(self._counts)

    def keep_window(self, bot_id: str, window: str) -> None:
        """Forget the Bot's counts of other windows (its rollout moved on)."""
        counts = self._counts.get(bot_id)
        if counts is not None:
            for key in [k for k in counts if k[1] != window]:
                del counts[key]

    def forget(self, bot_id: str) -> None:
        """Forget the Bot's counts and totals (its rollout ended)."""
        self._counts.pop(bot_id, None)
        self._totals.pop(bot_id, None)
