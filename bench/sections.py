"""The in-process sections of ``python -m bench``: each runs its benchmarks and records figures.

Goals come from the issues that introduced them (the number is in each :class:`Goal`); the
out-of-process sections (real apiserver, scale, HTTP) live in :mod:`bench.sections_io`.
"""

from __future__ import annotations

import asyncio

from .backends import BACKENDS
from .chat import CHAT_CONVERSATIONS, CHAT_TURNS, chat_latency
from .growth import GROWTH_CONVERSATIONS, GROWTH_TURNS, RATIO_GOAL, WINDOW_TURNS, turn_growth
from .propagation import GOAL_P99_MS, UPDATES
from .propagation import run as propagation
from .record import Goal, Results
from .sections_io import http, kubernetes, profile_worst_miss, scale
from .sections_peers import peers

__all__ = [
    "backends",
    "http",
    "kubernetes",
    "peers",
    "profile_worst_miss",
    "scale",
    "store_propagation",
]

TURN_RATIO = Goal("<=", RATIO_GOAL, 2)
STORE_P99 = Goal("<", GOAL_P99_MS, 3)


def backends(r: Results) -> None:
    r.section("Storage backends: kubebots chat() by conversation store")
    r.note(
        f"chat() with the echo provider: {CHAT_TURNS:,} turns round-robin over "
        f"{CHAT_CONVERSATIONS} conversations. Turn growth: {GROWTH_CONVERSATIONS} conversations "
        f"x {GROWTH_TURNS} turns, median of turns 1-{WINDOW_TURNS} vs turns "
        f"{GROWTH_TURNS - WINDOW_TURNS + 1}-{GROWTH_TURNS}. PostgreSQL is the local server "
        "over TCP; SQLite a file in a temp dir."
    )
    turns = r.series.setdefault("turns_ms", {})
    for backend in BACKENDS:
        lat = asyncio.run(chat_latency(backend))
        r.add(f"chat() {backend}, median", lat.median_ms, "ms", detail=f"p99 {lat.p99_ms:.3f} ms")
    for backend in BACKENDS:
        g = asyncio.run(turn_growth(backend))
        r.add(
            f"turn-{GROWTH_TURNS} / turn-1, {backend}",
            g.ratio,
            "x",
            TURN_RATIO,
            f"{g.early_ms:.3f} -> {g.late_ms:.3f} ms",
        )
        if backend != "memory":  # the memory curve comes from the peers section
            turns[f"kubebots ({backend} storage)"] = list(g.per_turn_ms)


def store_propagation(r: Results) -> None:
    r.section("Store propagation: put -> new config served by a store-driven BotManager")
    r.note(
        f"{UPDATES} sequential updates of one bot; timed from just before `put` on one store "
        "handle until the manager on another handle serves the new revision (sqlite: 20 ms "
        "revision poll; postgres: LISTEN/NOTIFY)."
    )
    series = r.series.setdefault("store_propagation_ms", {})
    for name in ("sqlite", "postgres"):
        p = propagation(name)
        r.add(f"{name} p50", p.p50_ms, "ms")
        r.add(f"{name} p99", p.p99_ms, "ms", STORE_P99, f"max {p.max_ms:.1f} ms")
        series[name] = list(p.samples_ms)
