"""A rollout step's analysis: the candidate's figures against the stable generation's.

Pure (no I/O, no clock): the operator adds up the replicas' counters of a window
(:func:`kubebots.runtime.configstore.counters.add_up`), picks the candidate's and the stable
generation's (the mirrored ones in shadow mode: this module does not care which), and
:func:`judge` says whether the candidate holds the Bot's ``spec.rollout.analysis`` thresholds.

The rules, checked only once the candidate has served ``minTurns`` turns (before that a step
is neither passed nor failed):

* error rate: the candidate's failed turns per turn, in percent, above ``maxErrorRatePercent``;
* p95 latency: the candidate's p95 above ``maxP95LatencyRatio`` times the stable one's;
* tokens per turn: the candidate's above ``maxTokensPerTurnRatio`` times the stable one's;
* flagged replies: the share of the candidate's answered turns ``flagReplyPattern`` matched,
  in percent, above ``maxFlaggedPercent``.

The two ratios need a basis: they are compared only when the stable generation answered at
least ``minTurns`` turns in the same window, and the tokens ratio only when the stable
generation used tokens at all (a provider that reports no usage gives no basis). A threshold
left out of the spec is not checked. Shares are compared on the integer counts (``errors * 100
> max * turns``), so a value exactly at a threshold holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubebots.runtime.configstore.counters import GenerationCounters, rate_percent
from kubebots.runtime.schema.rollout import RolloutAnalysis


@dataclass(frozen=True)
class Figures:
    """What one generation served over one window, as judged and as shown in the Bot's
    ``status.rollout.analysis`` (None: nothing to measure it on)."""

    turns: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    tokens_per_turn: float | None
    flagged_rate: float | None

    @classmethod
    def of(cls, counters: GenerationCounters | None) -> Figures:
        """The figures of ``counters`` (None: the generation served no turn)."""
        if counters is None:
            return cls(0, 0, None, None, None, None)
        return cls(
            turns=counters.turns,
            errors=counters.errors,
            error_rate=counters.error_rate,
            p95_ms=counters.p95_ms,
            tokens_per_turn=counters.tokens_per_turn,
            flagged_rate=counters.flagged_rate,
        )

    def as_status(self) -> dict[str, Any]:
        """The figures with the status' camelCase keys, rounded; a figure that is None is
        left out."""
        rounded = {
            "errorRatePercent": _round(self.error_rate, 100.0, 2),
            "p95Ms": _round(self.p95_ms, 1.0, 1),
            "tokensPerTurn": _round(self.tokens_per_turn, 1.0, 1),
            "flaggedPercent": _round(self.flagged_rate, 100.0, 2),
        }
        status: dict[str, Any] = {"turns": self.turns, "errors": self.errors}
        status.update((key, value) for key, value in rounded.items() if value is not None)
        return status


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison of a window's figures."""

    failure: str | None  # None: every threshold holds (or not enough turns yet)
    enough: bool  # the candidate served at least minTurns turns: the verdict counts
    candidate: Figures
    stable: Figures


def judge(
    analysis: RolloutAnalysis,
    candidate: GenerationCounters | None,
    stable: GenerationCounters | None,
) -> Verdict:
    """Compare ``candidate`` with ``stable`` (either None: no turn) on ``analysis``'s
    thresholds; every crossed threshold is named in ``failure``, joined with ``"; "``."""
    figures = Verdict(None, False, Figures.of(candidate), Figures.of(stable))
    if candidate is None or candidate.turns < analysis.min_turns:
        return figures
    failures = [
        failure
        for failure in (
            _error_rate(analysis, candidate, figures.stable),
            _p95(analysis, candidate, stable),
            _tokens(analysis, candidate, stable),
            _flagged(analysis, candidate),
        )
        if failure is not None
    ]
    return Verdict("; ".join(failures) or None, True, figures.candidate, figures.stable)


def _error_rate(
    analysis: RolloutAnalysis, candidate: GenerationCounters, stable: Figures
) -> str | None:
    limit = analysis.max_error_rate_percent
    if limit is None or not candidate.errors * 100 > limit * candidate.turns:
        return None
    return (
        f"error rate {rate_percent(candidate.error_rate)} > {_percent(limit)} "
        f"(stable {rate_percent(stable.error_rate)})"
    )


def _p95(
    analysis: RolloutAnalysis, candidate: GenerationCounters, stable: GenerationCounters | None
) -> str | None:
    ratio = analysis.max_p95_latency_ratio
    if ratio is None or stable is None or stable.answered < analysis.min_turns:
        return None
    mine, theirs = candidate.p95_ms, stable.p95_ms
    if mine is None or theirs is None or not mine > ratio * theirs:
        return None
    return f"p95 latency {mine:.0f} ms > {ratio:g} x stable {theirs:.0f} ms"


def _tokens(
    analysis: RolloutAnalysis, candidate: GenerationCounters, stable: GenerationCounters | None
) -> str | None:
    ratio = analysis.max_tokens_per_turn_ratio
    if ratio is None or stable is None or stable.answered < analysis.min_turns:
        return None
    mine, theirs = candidate.tokens_per_turn, stable.tokens_per_turn
    if mine is None or not theirs or not mine > ratio * theirs:
        return None
    return f"tokens per turn {_amount(mine)} > {ratio:g} x stable {_amount(theirs)}"


def _flagged(analysis: RolloutAnalysis, candidate: GenerationCounters) -> str | None:
    limit = analysis.max_flagged_percent
    if limit is None or not candidate.flagged * 100 > limit * candidate.answered:
        return None
    return f"flagged replies {rate_percent(candidate.flagged_rate)} > {_percent(limit)}"


def _percent(value: float) -> str:
    """A threshold in percent as :func:`rate_percent` writes a share: ``5.0`` as ``5%``."""
    return rate_percent(value / 100.0)


def _amount(value: float) -> str:
    """A count per turn: whole above 100, else three significant digits (never an exponent)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _round(value: float | None, scale: float, digits: int) -> float | None:
    return None if value is None else round(value * scale, digits)


__all__ = ["Figures", "Verdict", "judge"]
