"""The bench's bookkeeping: goal verdicts, ratio directions, the report's misses, py-spy summary.

These check the code that turns measurements into the published report (docs/benchmarks.md);
the measurements themselves run only under ``make bench``.
"""

from __future__ import annotations

import pytest

from bench.markdown import render
from bench.profile import summarise
from bench.record import Goal, Results, fmt

MACHINE = {
    "cpu": "Test CPU",
    "cores": 2,
    "memory_gib": 4.0,
    "python": "CPython 3.11",
    "kernel": "6.0",
    "date": "2026-11-27T10:00:00+00:00",
}


@pytest.mark.parametrize(
    ("op", "target", "value", "met"),
    [
        ("<=", 1.5, 1.5, True),
        ("<=", 1.5, 1.51, False),
        ("<", 100, 100, False),
        (">=", 20, 19.9, False),
        ("==", 1, 1, True),
        ("==", 1, 100, False),
    ],
)
def test_goal_verdicts(op: str, target: float, value: float, met: bool) -> None:
    assert Goal(op, target, 2).met(value) is met


def test_ratios_say_how_many_times_better_we_are_in_both_directions() -> None:
    r = Results(MACHINE)
    r.section("peers")
    faster = r.compare("chat", "peer", ours=0.05, theirs=3.0, unit="ms", better="lower")
    busier = r.compare("req/s", "peer", ours=3000, theirs=100, unit="req/s", better="higher")
    worse = r.compare(
        "rss", "peer", ours=80, theirs=300, unit="MiB", better="lower", goal=Goal(">=", 4, 7)
    )
    assert faster.ratio == pytest.approx(60)
    assert busier.ratio == pytest.approx(30)
    assert worse.ratio == pytest.approx(3.75)
    assert worse.verdict == "MISS"
    assert worse.shortfall() == pytest.approx(0.0625)


def test_misses_are_listed_plainly_in_the_report_and_passes_are_counted() -> None:
    r = Results(MACHINE)
    r.section("Store propagation: put -> served")
    r.note("200 updates")
    r.add("postgres p99", 126.0, "ms", Goal("<", 100, 3), "max 166 ms")
    r.add("sqlite p99", 24.0, "ms", Goal("<", 100, 3))
    r.add("postgres p50", 2.0, "ms")
    r.series["store_propagation_ms"] = {"sqlite": [1.0, 2.0]}
    text = render(r.to_json(), {"store-propagation": "benchmarks/store-propagation.png"}, "PROF")
    assert "1 of 2 goals met in this report." in text
    assert "postgres p99: 126 ms, goal < 100 ms (issue 3) (max 166 ms)." in text
    assert "| postgres p99 | 126 ms | < 100 ms (issue 3) | **MISS** | max 166 ms |" in text
    assert "| sqlite p99 | 24 ms | < 100 ms (issue 3) | PASS |  |" in text
    assert "Test CPU, 2 cores" in text and "2026-11-27T10:00:00+00:00" in text
    assert "![store-propagation](benchmarks/store-propagation.png)" in text
    assert "### Profile of the worst miss\n\nPROF" in text
    assert [m.name for m in r.misses()] == ["postgres p99"]


def test_figures_are_shown_with_sensible_precision() -> None:
    assert fmt(0.0362, "µs") == "0.036 µs"
    assert fmt(3.77, "KiB") == "3.77 KiB"
    assert fmt(22.71, "s") == "22.7 s"
    assert fmt(3120.4, "req/s") == "3,120 req/s"
    assert fmt(49.4, "%") == "49%"
    assert fmt(0.0, "") == "0"
    assert fmt(100.0, "") == "100"


def test_profile_summary_counts_self_time_by_package_and_our_frames_inclusively() -> None:
    collapsed = "\n".join(
        [
            "run (uvicorn/main.py:1);chat (runtime/api/chat.py:9);dumps (json/__init__.py:3) 6",
            "run (uvicorn/main.py:1);chat (runtime/api/chat.py:9) 2",
            "run (uvicorn/main.py:1);_run_once (asyncio/base_events.py:5) 2",
        ]
    )
    s = summarise(collapsed)
    assert s.samples == 10
    assert dict(s.by_package) == {"json": 60.0, "kubebots.runtime": 20.0, "asyncio": 20.0}
    assert dict(s.ours) == {"chat (chat.py)": 80.0}
    assert s.by_self[0] == ("dumps (__init__.py)", 60.0)


def test_merge_replaces_only_the_sections_that_ran_again() -> None:
    from bench.record import merge

    first = Results(MACHINE)
    first.begin("backends")
    first.section("Storage backends")
    first.add("chat() memory", 0.05, "ms")
    first.begin("e2e")
    first.section("Kubernetes")
    first.add("API PATCH -> served, p50", 111.0, "ms", Goal("<=", 50, 6))
    first.series["e2e_propagation_ms"] = {"api": [111.0]}
    again = Results({**MACHINE, "date": "2026-11-27T12:00:00+00:00"})
    again.begin("e2e")
    again.section("Kubernetes")
    again.add("API PATCH -> served, p50", 30.0, "ms", Goal("<=", 50, 6))
    again.series["e2e_propagation_ms"] = {"api": [30.0]}
    old, new = first.to_json(), again.to_json()
    old["runs"]["backends"]["date"] = old["runs"]["e2e"]["date"] = MACHINE["date"]
    new["runs"]["e2e"]["date"] = "2026-11-27T12:00:00+00:00"
    merged = merge(old, new)
    assert [(f["name"], f["value"]) for f in merged["figures"]] == [
        ("chat() memory", 0.05),
        ("API PATCH -> served, p50", 30.0),
    ]
    assert merged["series"]["e2e_propagation_ms"] == {"api": [30.0]}
    assert merged["machine"]["date"] == MACHINE["date"]
    text = render(merged, {})
    assert "1 of 1 goals met" in text
    assert "_Measured 2026-11-27T12:00:00+00:00" in text.split("## Kubernetes")[1]
    assert "_Measured" not in text.split("## Storage backends")[1].split("## Kubernetes")[0]
