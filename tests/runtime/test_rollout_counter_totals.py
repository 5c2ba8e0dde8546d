"""RolloutCounters' metric totals: monotonic per (bot, generation, role, outcome), kept when
the window moves on, dropped when the rollout ends."""

from __future__ import annotations

from kubebots.runtime.routing import RolloutCounters


def test_totals_outlive_windows_and_end_with_the_rollout() -> None:
    counters = RolloutCounters()
    counters.record("ns:a", 1, "1.0", latency_s=0.01, tokens=5)
    counters.record("ns:a", 2, "1.0", candidate=True, error=True)
    counters.record("ns:a", 2, "1.0", candidate=True, flagged=True)
    counters.record("ns:a", 2, "1.0", shadow=True)
    counters.record("ns:b", 4, "1.0")
    counters.keep_window("ns:a", "1.1")  # the rollout moved to its next step
    assert counters.snapshot("ns:a") == ()
    counters.record("ns:a", 2, "1.1", candidate=True)
    assert counters.totals() == {
        ("ns:a", 1, "stable", "ok"): 1,
        ("ns:a", 2, "candidate", "error"): 1,
        ("ns:a", 2, "candidate", "flagged"): 1,
        ("ns:a", 2, "candidate", "ok"): 1,
        ("ns:a", 2, "shadow", "ok"): 1,
        ("ns:b", 4, "stable", "ok"): 1,
    }
    counters.forget("ns:a")
    assert counters.totals() == {("ns:b", 4, "stable", "ok"): 1}
