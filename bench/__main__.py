"""``python -m bench``: print every benchmark figure (see the package docstring)."""

from __future__ import annotations

import asyncio
import os
import time

from .backends import BACKENDS
from .chat import CHAT_CONVERSATIONS, CHAT_TURNS, chat_latency
from .growth import GROWTH_CONVERSATIONS, GROWTH_TURNS, RATIO_GOAL, WINDOW_TURNS, turn_growth
from .http import (
    BARE,
    CHAT,
    CHAT_AUTH,
    CONNECTIONS,
    CONVERSATIONS,
    DURATION_S,
    P99_ADDED_GOAL_MS,
    P99_CONNECTIONS,
    SERVER_CPU,
    THROUGHPUT_GOAL,
    WARMUP_S,
    WRK_CPU,
    http_load,
    server_stack,
)
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


def bench_http() -> None:
    section(
        f"HTTP under wrk (loopback; {WARMUP_S} s warm-up, then {DURATION_S} s per connection "
        f"count; echo bot, memory conversations over {CONVERSATIONS} rotating ids, SQLite "
        "config store; the bare FastAPI app is the ceiling reference)"
    )
    h = http_load()
    pin = (
        f"wrk -t1 on CPU {WRK_CPU}, server on CPU {SERVER_CPU}"
        if h.pinned
        else "UNPINNED (CPUs 0 and 1 not both available)"
    )
    row("load generator", f"{h.load_generator}; {pin}")
    row("servers", f"uvicorn 1 worker ({server_stack()}), no access log, log level warning")
    row(
        "1-min load average before / after",
        f"{h.load_before:.2f} / {h.load_after:.2f} on {os.cpu_count()} CPUs "
        "(wrk + server add ~2; more means others competed and the figures are skewed)",
    )
    for result in h.results.values():
        for c, run in result.runs.items():
            errors = f", {run.socket_errors} socket errors" if run.socket_errors else ""
            row(
                f"{result.target.label}, {c} conn",
                f"{run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms{errors}",
            )
        row(f"{result.target.label}: server VmRSS after", f"{result.rss_kib:,} KiB")
    for result in h.results.values():
        name = result.target.name
        if name == BARE.name:
            continue
        ratios = {c: h.throughput_ratio(name, c) for c in CONNECTIONS}
        shown = ", ".join(f"{r:.0%} @{c}" for c, r in ratios.items())
        row(
            f"{result.target.label} / bare req/s",
            f"{shown} (goal >= {THROUGHPUT_GOAL:.0%})  "
            f"{verdict(all(r >= THROUGHPUT_GOAL for r in ratios.values()))}",
        )
        added = h.p99_added_ms(name)
        row(
            f"{result.target.label}: p99 added @{P99_CONNECTIONS} conn",
            f"{added:+.2f} ms vs bare (goal <= {P99_ADDED_GOAL_MS:.0f} ms)  "
            f"{verdict(added <= P99_ADDED_GOAL_MS)}",
        )
    off, on = h.results[CHAT.name].runs, h.results[CHAT_AUTH.name].runs
    cost = ", ".join(f"{on[c].rps / off[c].rps - 1:+.0%} @{c}" for c in CONNECTIONS)
    p99 = on[P99_CONNECTIONS].p99_ms - off[P99_CONNECTIONS].p99_ms
    row("auth on vs off (API key)", f"req/s {cost}; p99 @{P99_CONNECTIONS} conn {p99:+.2f} ms")


def bench_e2e() -> None:
    from . import e2e

    section("on a real kube-apiserver 1.20.2 (operator + runtime processes, PostgreSQL store)")
    f = e2e.run()
    p = f["apply_to_serving_ms"]
    row(
        f"apply -> serving ({p['n']} updates)",
        f"p50 {p['p50']:.1f} ms, p95 {p['p95']:.1f} ms, p99 {p['p99']:.1f} ms "
        f"(kubectl patch alone p50 {f['kubectl_patch_only_ms']['p50']:.1f} ms; "
        "goal p50 <= 50, p99 <= 250)",
    )
    b = f["bulk_create_to_all_ready_s"]
    row(f"{b['bots']} Bots applied at once -> all Ready", f"{b['all_ready_s']:.2f} s ({b['note']})")


def main() -> None:
    started = time.perf_counter()
    print("\n".join(header()), flush=True)
    bench_manager()
    bench_chat()
    bench_growth()
    bench_rss()
    bench_single_flight()
    bench_propagation()
    bench_e2e()
    bench_http()
    print(f"\ntotal bench time: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
