"""A rollout step's analysis: each threshold, its boundary, too few turns, no stable figures.

The counters are recorded turn by turn with the runtime's own :class:`RolloutCounters`, and
added up over two replicas as the operator adds up replica reports.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubebots.operator.analysis import Figures, judge
from kubebots.runtime.configstore.counters import GenerationCounters, add_up
from kubebots.runtime.routing.counters import RolloutCounters
from kubebots.runtime.schema.rollout import RolloutAnalysis

BOT = "default:support"
WINDOW = "1.0"


def analysis(**fields: Any) -> RolloutAnalysis:
    """Thresholds as a Bot's spec writes them (camelCase), 10 turns needed by default."""
    return RolloutAnalysis.model_validate({"minTurns": 10, **fields})


def served(
    generation: int,
    *,
    turns: int,
    errors: int = 0,
    latency_s: float = 0.1,
    tokens: int = 0,
    flagged: int = 0,
    shadow: bool = False,
) -> GenerationCounters:
    """What ``generation`` served: ``turns`` turns, the first ``errors`` failed, the next
    ``flagged`` answered ones flagged; counted on two replicas (turns alternate), added up."""
    replicas = [RolloutCounters(), RolloutCounters()]
    for turn in range(turns):
        failed = turn < errors
        replicas[turn % 2].record(
            BOT,
            generation,
            WINDOW,
            shadow=shadow,
            latency_s=latency_s,
            tokens=tokens,
            error=failed,
            flagged=not failed and turn < errors + flagged,
        )
    [total] = add_up(c for r in replicas for c in r.snapshot(BOT)).values()
    return total


# -- not judged yet ------------------------------------------------------------------------------


def test_too_few_candidate_turns_are_not_judged_even_when_all_failed() -> None:
    verdict = judge(analysis(), served(5, turns=9, errors=9), served(4, turns=50))
    assert verdict.failure is None and not verdict.enough
    assert (verdict.candidate.turns, verdict.candidate.errors) == (9, 9)
    assert verdict.stable.turns == 50


def test_no_candidate_turn_at_all() -> None:
    verdict = judge(analysis(), None, served(4, turns=50))
    assert verdict.failure is None and not verdict.enough
    assert verdict.candidate == Figures(0, 0, None, None, None, None)


def test_min_turns_reached_exactly_is_judged() -> None:
    verdict = judge(analysis(), served(5, turns=10), served(4, turns=10))
    assert verdict.enough and verdict.failure is None


# -- error rate ----------------------------------------------------------------------------------


def test_an_error_rate_above_the_threshold_fails() -> None:
    verdict = judge(
        analysis(maxErrorRatePercent=5), served(5, turns=20, errors=6), served(4, turns=20)
    )
    assert verdict.failure == "error rate 30% > 5% (stable 0%)"


def test_an_error_rate_exactly_at_the_threshold_holds() -> None:
    # 1/20 is 5%: 0.05 * 100 is 5.000000000000001 in floats, the integer comparison holds
    ok = judge(analysis(maxErrorRatePercent=5), served(5, turns=20, errors=1), None)
    assert ok.enough and ok.failure is None
    over = judge(analysis(maxErrorRatePercent=5), served(5, turns=20, errors=2), None)
    assert over.failure == "error rate 10% > 5% (stable n/a)"


def test_the_default_error_threshold_is_five_percent_and_none_turns_it_off() -> None:
    failing = served(5, turns=10, errors=10)
    assert judge(analysis(), failing, None).failure == "error rate 100% > 5% (stable n/a)"
    assert judge(analysis(maxErrorRatePercent=None), failing, None).failure is None


def test_a_zero_error_threshold_fails_on_one_error() -> None:
    verdict = judge(analysis(maxErrorRatePercent=0), served(5, turns=30, errors=1), None)
    assert verdict.failure == "error rate 3.33% > 0% (stable n/a)"


# -- p95 latency ---------------------------------------------------------------------------------


def test_a_p95_latency_above_the_ratio_fails() -> None:
    verdict = judge(
        analysis(maxP95LatencyRatio=1.5),
        served(5, turns=20, latency_s=0.8),
        served(4, turns=20, latency_s=0.4),
    )
    # interpolated in the buckets (750-1000 ms, 300-500 ms)
    assert verdict.failure == "p95 latency 988 ms > 1.5 x stable 490 ms"
    assert verdict.candidate.p95_ms == pytest.approx(987.5)


def test_a_p95_latency_at_the_ratio_holds() -> None:
    same = judge(
        analysis(maxP95LatencyRatio=1.0),
        served(5, turns=20, latency_s=0.4),
        served(4, turns=40, latency_s=0.4),
    )
    assert same.enough and same.failure is None


def test_p95_is_not_compared_without_enough_stable_turns() -> None:
    candidate = served(5, turns=20, latency_s=5.0)
    lax = analysis(maxP95LatencyRatio=1.5)
    assert judge(lax, candidate, None).failure is None
    # 10 stable turns, 1 failed: 9 answered < minTurns
    assert judge(lax, candidate, served(4, turns=10, errors=1, latency_s=0.1)).failure is None
    assert judge(lax, candidate, served(4, turns=10, latency_s=0.1)).failure == (
        "p95 latency 4900 ms > 1.5 x stable 98 ms"
    )


def test_p95_is_not_checked_when_the_ratio_is_left_out() -> None:
    verdict = judge(analysis(), served(5, turns=20, latency_s=9.0), served(4, turns=20))
    assert verdict.failure is None


# -- tokens per turn -----------------------------------------------------------------------------


def test_tokens_per_turn_above_the_ratio_fails() -> None:
    verdict = judge(
        analysis(maxTokensPerTurnRatio=2),
        served(5, turns=20, tokens=1200),
        served(4, turns=20, tokens=500),
    )
    assert verdict.failure == "tokens per turn 1200 > 2 x stable 500"


def test_tokens_per_turn_at_the_ratio_holds_and_small_counts_keep_decimals() -> None:
    lax = analysis(maxTokensPerTurnRatio=2)
    assert judge(lax, served(5, turns=20, tokens=100), served(4, turns=20, tokens=50)).failure is (
        None
    )
    verdict = judge(
        analysis(maxTokensPerTurnRatio=1.5),
        served(5, turns=20, tokens=25),
        served(4, turns=20, tokens=12),
    )
    assert verdict.failure == "tokens per turn 25 > 1.5 x stable 12"


def test_tokens_are_not_compared_without_a_basis() -> None:
    lax = analysis(maxTokensPerTurnRatio=2)
    candidate = served(5, turns=20, tokens=900)
    assert judge(lax, candidate, None).failure is None
    assert judge(lax, candidate, served(4, turns=9, tokens=10)).failure is None
    # the stable generation's provider reported no usage: no ratio to hold
    assert judge(lax, candidate, served(4, turns=20, tokens=0)).failure is None


# -- flagged replies -----------------------------------------------------------------------------


def flags(percent: float) -> RolloutAnalysis:
    return analysis(flagReplyPattern="(?i)sorry", maxFlaggedPercent=percent)


def test_flagged_replies_above_the_threshold_fail() -> None:
    verdict = judge(flags(10), served(5, turns=25, flagged=3), served(4, turns=25))
    assert verdict.failure == "flagged replies 12% > 10%"


def test_flagged_replies_at_the_threshold_hold_and_count_answered_turns_only() -> None:
    # 2 flagged of 20 answered (5 failed turns are not replies): 10%
    lenient = analysis(flagReplyPattern="x", maxFlaggedPercent=10, maxErrorRatePercent=None)
    verdict = judge(lenient, served(5, turns=25, errors=5, flagged=2), None)
    assert verdict.enough and verdict.failure is None
    assert verdict.candidate.flagged_rate == pytest.approx(0.1)


# -- several failures, shadow, figures -----------------------------------------------------------


def test_several_failures_are_joined() -> None:
    verdict = judge(
        analysis(
            maxErrorRatePercent=5,
            maxP95LatencyRatio=1.5,
            flagReplyPattern="x",
            maxFlaggedPercent=10,
        ),
        served(5, turns=20, errors=4, flagged=8, latency_s=0.8),
        served(4, turns=20, latency_s=0.4),
    )
    assert verdict.failure == (
        "error rate 20% > 5% (stable 0%); p95 latency 988 ms > 1.5 x stable 490 ms; "
        "flagged replies 50% > 10%"
    )


def test_shadow_counters_are_judged_the_same_way() -> None:
    verdict = judge(
        analysis(), served(5, turns=20, errors=3, shadow=True), served(4, turns=20, shadow=True)
    )
    assert verdict.failure == "error rate 15% > 5% (stable 0%)"


def test_figures_as_status_are_rounded_camel_case_and_leave_out_none() -> None:
    figures = Figures.of(served(5, turns=30, errors=1, tokens=101, flagged=2, latency_s=0.4))
    assert figures.as_status() == {
        "turns": 30,
        "errors": 1,
        "errorRatePercent": 3.33,
        "p95Ms": 490.0,
        "tokensPerTurn": 101.0,
        "flaggedPercent": 6.9,
    }
    assert Figures.of(None).as_status() == {"turns": 0, "errors": 0}
    all_failed = Figures.of(served(5, turns=4, errors=4)).as_status()
    assert all_failed == {"turns": 4, "errors": 4, "errorRatePercent": 100.0}
