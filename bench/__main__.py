"""``python -m bench``: print every benchmark figure (see the package docstring)."""

from __future__ import annotations

import asyncio
import time

from .backends import BACKENDS
from .chat import CHAT_CONVERSATIONS, CHAT_TURNS, chat_latency
from .growth import GROWTH_CONVERSATIONS, GROWTH_TURNS, RATIO_GOAL, WINDOW_TURNS, turn_growth
from .machine import header
from .manager_ops import CACHED_BATCH_SIZE, CACHED_BATCHES, cached_get_or_create, new_bot_creation
from .propagation import GOAL_P99_MS, PROPAGATIONS, UPDATES
from .propagation import run as propagation
from .report import row, section, verdict
from .rss import RSS_BOT_COUNTS, rss_per_bot
from .single_flight import LOADER_DELAY_S, concurrent_builds


def bench_manager() -> None:
    section("BotManager.get_or_create (echo provider, memory storage)")
    cached = asyncio.run(cached_get_or_create())
    row(
        "cached get_or_create(id)",
        f"{cached.median_us:.3f} µs/op median (p99 batch {cached.p99_us:.3f} µs/op; "
        f"{CACHED_BATCHES} batches x {CACHED_BATCH_SIZE:,} calls)",
    )
    new = asyncio.run(new_bot_creation())
    row(
        "new bot: get_or_create(new_id, config)",
        f"{new.median_us:.1f} µs/op median (p99 {new.p99_us:.1f} µs/op; {new.ops:,} bots)",
    )


def bench_chat() -> None:
    section(
        f"chat() latency, echo provider ({CHAT_TURNS:,} turns over "
        f"{CHAT_CONVERSATIONS} conversations)"
    )
    for backend in BACKENDS:
        lat = asyncio.run(chat_latency(backend))
        row(
            f"chat() {backend}",
            f"{lat.median_ms:.3f} ms/op median, {lat.p99_ms:.3f} ms/op p99",
        )


def bench_growth() -> None:
    late_first = GROWTH_TURNS - WINDOW_TURNS + 1
    section(
        f"turn-{GROWTH_TURNS} / turn-1 latency ({GROWTH_CONVERSATIONS} conversations x "
        f"{GROWTH_TURNS} turns; median of turns 1-{WINDOW_TURNS} vs median of turns "
        f"{late_first}-{GROWTH_TURNS}; goal ratio <= {RATIO_GOAL})"
    )
    for backend in BACKENDS:
        g = asyncio.run(turn_growth(backend))
        row(
            f"{backend}",
            f"turns 1-{WINDOW_TURNS} {g.early_ms:.3f} ms, turns {late_first}-{GROWTH_TURNS} "
            f"{g.late_ms:.3f} ms, ratio {g.ratio:.2f}  {verdict(g.ok)}",
        )


def bench_rss() -> None:
    section("RSS per cached bot (echo + memory storage, fresh subprocess per N, VmRSS)")
    for bots in RSS_BOT_COUNTS:
        r = rss_per_bot(bots)
        row(
            f"{bots:,} bots",
            f"{r.kib_per_bot:.2f} KiB/bot (VmRSS {r.before_kib:,} -> {r.after_kib:,} KiB)",
        )


def bench_single_flight() -> None:
    section("single-flight build")
    sf = asyncio.run(concurrent_builds())
    row(
        f"{sf.callers} concurrent get_or_create(one id)",
        f"builds = {sf.builds} (goal 1; async loader sleeps {LOADER_DELAY_S * 1000:.0f} ms, "
        f"{sf.distinct_bots} distinct bot returned)  {verdict(sf.ok)}",
    )


def bench_propagation() -> None:
    section(
        f"config propagation: store put -> new config served by a store-driven BotManager "
        f"({UPDATES} sequential updates; goal p99 < {GOAL_P99_MS:.0f} ms)"
    )
    for name in PROPAGATIONS:
        p = propagation(name)
        row(
            name,
            f"p50 {p.p50_ms:.2f} ms, p99 {p.p99_ms:.2f} ms, max {p.max_ms:.2f} ms  {verdict(p.ok)}",
        )


def main() -> None:
    started = time.perf_counter()
    print("\n".join(header()), flush=True)
    bench_manager()
    bench_chat()
    bench_growth()
    bench_rss()
    bench_single_flight()
    bench_propagation()
    print(f"\ntotal bench time: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
