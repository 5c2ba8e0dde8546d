"""The ``production`` section of ``python -m bench``: the production configuration (issue 15).

Records what :func:`bench.production.run` measured: each configuration's req/s, latency, CPU and
RSS; production vs the embedded default; production with its Bot under a canary rollout vs
without (issue 19); replica scaling; the limiter's exactness; LiteLLM as users run it.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import http as h
from . import litellm
from . import production as p
from .record import Goal, Results
from .sections_io import add_target_runs

TITLE = "Production configuration: PostgreSQL, API keys, per-client limits, shared limiter"
ISSUE = 15
SHARE = Goal(">=", p.SHARE_GOAL, ISSUE)
P99 = Goal("<=", p.P99_GOAL_MS, ISSUE)
SCALING = Goal(">=", p.SCALING_GOAL, ISSUE)
EXACT_MAX = Goal("<=", p.EXACT_LIMIT, ISSUE)
EXACT_SHARE = Goal(">=", p.EXACT_SHARE_GOAL, ISSUE)
VS_LITELLM = Goal(">=", p.VS_LITELLM_GOAL, ISSUE)
RSS_VS_LITELLM = Goal(">=", p.RSS_VS_LITELLM_GOAL, ISSUE)


def section(r: Results) -> None:
    r.section(TITLE)
    x = p.run()
    versions = r.machine.setdefault("versions", {})
    versions["wrk"] = x.load_generator
    if x.litellm_version:
        versions["LiteLLM proxy"] = x.litellm_version
    pinned = f"pinned to CPU {h.SERVER_CPU}" if x.pinned else "UNPINNED"
    r.note(
        f"The same binary (create_app + uvicorn, one worker) in {len(p.CONFIGS)} configurations, "
        "each its own "
        f"process ({pinned}; `wrk -t1` on CPU {h.WRK_CPU}), serving the echo bot on "
        f"`POST {h.CHAT_PATH}` over {h.CONVERSATIONS} conversations; per configuration a "
        f"{h.WARMUP_S} s warm-up, then {h.REPEATS} runs of {h.DURATION_S} s per connection "
        "count, the median reported. PostgreSQL (config store, conversations, limiter) is the "
        "local server, Redis the local one; both run unpinned, competing with the server and "
        "wrk for the 2 CPUs, as a database beside a replica does. Production = PostgreSQL store "
        f"+ conversations, API keys, the client's requestsPerMinute ({p.RPM:,}) and "
        f"tokensPerMinute ({p.TPM:,}), never reached during a run: what is measured is their "
        "cost. Limiter in memory = one replica's reference with the limiter's round trips off."
    )
    r.note(
        f"1-minute load average before / after: {x.load_before:.2f} / {x.load_after:.2f} on "
        f"{r.machine['cores']} CPUs."
    )
    _configurations(r, x)
    _goals(r, x)
    _rollout(r, x)
    _scaling(r, x)
    _exactness(r, x)
    _waits(r, x)
    _litellm(r, x)
    r.series["production"] = {
        "connections": list(p.CONNECTIONS),
        "targets": {
            res.target.label: {
                "rss_kib": res.rss_kib,
                "runs": {
                    str(c): {
                        "rps": run.rps,
                        "p50_ms": run.p50_ms,
                        "p99_ms": run.p99_ms,
                        "server_cpu": run.server_cpu,
                    }
                    for c, run in res.runs.items()
                },
            }
            for res in x.results.values()
        },
        "scaling": {name: {str(n): v for n, v in s.rps.items()} for name, s in x.scaling.items()},
    }


def _configurations(r: Results, x: p.ProductionBench) -> None:
    add_target_runs(r, x.results.values())


def _goals(r: Results, x: p.ProductionBench) -> None:
    embedded = p.EMBEDDED.name
    for config in (p.PRODUCTION_REDIS, p.PRODUCTION_POSTGRES):
        for c in p.CONNECTIONS:
            share = 100 * x.rps(config.name, c) / x.rps(embedded, c)
            r.add(
                f"{config.label} / embedded req/s, {c} conn",
                share,
                "%",
                SHARE if config is p.PRODUCTION and c == p.P99_CONNECTIONS else None,
                f"{x.rps(config.name, c):,.0f} vs {x.rps(embedded, c):,.0f} req/s",
            )
        run = x.results[config.name].runs[p.P99_CONNECTIONS]
        goal = P99 if config is p.PRODUCTION else None
        r.add(f"{config.label}: p99, {p.P99_CONNECTIONS} conn", run.p99_ms, "ms", goal)


def overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the ranges of two sets of repeats overlap: their difference is then within the
    run-to-run noise, whichever median is higher."""
    return min(a) <= max(b) and min(b) <= max(a)


def _rollout(r: Results, x: p.ProductionBench) -> None:
    rollout, stable = p.PRODUCTION_ROLLOUT, p.PRODUCTION
    split = x.rollout_split
    pairs = {
        c: (x.results[rollout.name].runs[c], x.results[stable.name].runs[c]) for c in p.CONNECTIONS
    }
    noise = [c for c, (a, b) in pairs.items() if overlap(a.all_rps, b.all_rps)]
    verdict = (
        f"at {', '.join(map(str, noise))} conn the repeats' req/s ranges overlap: a difference "
        "there is within this run's noise, not routing's cost"
        if noise
        else "the repeats' req/s ranges overlap at no connection count"
    )
    r.note(
        f"Rollout {p.ROLLOUT_WEIGHT}% = {stable.label} with its Bot under a canary (issue 19) at "
        f"{p.ROLLOUT_WEIGHT}% of new conversations: the store holds the candidate entry "
        "(generation 2, another system prompt) beside the stable one, so each turn reads its "
        "conversation's last stored message (which generation keeps it), hashes, goes to that "
        "generation's bot and is counted in memory. Its own "
        f"{h.CONVERSATIONS} conversations, new at the start of its run, ended up "
        f"{split.get(2, 0)} on the candidate and {split.get(1, 0)} on the stable generation; "
        "every later request is a turn of a started conversation. The ratios put its req/s next "
        f"to {stable.label}'s (measured just before it, no rollout; its conversations are older, "
        f"and longer): what routing costs a turn; {verdict}."
    )
    for c, (with_, without) in pairs.items():
        r.add(
            f"{rollout.label} / no rollout req/s, {c} conn",
            100 * with_.rps / without.rps,
            "%",
            detail=f"{with_.rps:,.0f} vs {without.rps:,.0f} req/s; p50 {with_.p50_ms:.2f} vs "
            f"{without.p50_ms:.2f} ms, p99 {with_.p99_ms:.2f} vs {without.p99_ms:.2f} ms",
        )
    run = x.results[rollout.name].runs[p.P99_CONNECTIONS]
    r.add(f"{rollout.label}: p99, {p.P99_CONNECTIONS} conn", run.p99_ms, "ms")


def _scaling(r: Results, x: p.ProductionBench) -> None:
    if not x.scaling:
        return
    version = next(iter(x.scaling.values())).hierarchy
    r.note(
        f"Replica scaling: one tenant (one API key) through 1 and 2 replicas of the production "
        f"configuration, each replica limited to {p.REPLICA_CORES} CPU ({version}) on CPU "
        f"{h.SERVER_CPU}, one `wrk` per replica on CPU {h.WRK_CPU}, "
        f"{p.SCALING_CONNECTIONS} connections in all, each wrk with 64 conversations of its own "
        "(a conversation's turns come one at a time in real use; sending one conversation's "
        "turns to both replicas at once would measure conflicting turns, each re-asked of the "
        "model, not the limiter); admitted req/s = 2xx answers (a denial fails the run)."
    )
    for s in x.scaling.values():
        for n in (1, 2):
            r.add(
                f"{s.config.label}: {n} replica(s) x {p.REPLICA_CORES} CPU",
                s.rps[n],
                "req/s",
                detail=f"replicas' CPU {s.server_cpu[n]:.2f} cores, worst p99 "
                f"{s.p99_ms[n]:.1f} ms; repeats " + "/".join(f"{v:,.0f}" for v in s.all_rps[n]),
            )
        r.add(f"{s.config.label}: 2 replicas / 1 replica", s.ratio, "x", SCALING)


def _exactness(r: Results, x: p.ProductionBench) -> None:
    r.note(
        f"Limiter exactness: {p.EXACT_REPLICAS} replicas (one limiter each, in its own OS "
        f"process) share one tenant's limit of {p.EXACT_LIMIT} per {p.EXACT_WINDOW_S:g} s "
        f"window under a steady {p.OVERLOAD:.0%} of it for {p.EXACT_DURATION_S:g} s "
        "(`RateLimiter.acquire`, evenly interleaved). Max in any window: admitted calls by "
        "send time in every window of the limit's length minus the slowest call (so it never "
        "overcounts); admitted share: admitted / (limit x run / window)."
    )
    for backend, e in x.exactness.items():
        offered = len(e.calls)
        r.add(
            f"{backend} limiter, {p.EXACT_REPLICAS} replicas: max admitted in any window",
            e.max_in_window,
            "",
            EXACT_MAX,
            f"{e.admitted} of {offered} calls admitted; slowest call "
            f"{1000 * e.max_latency_s:.1f} ms",
        )
        r.add(
            f"{backend} limiter, {p.EXACT_REPLICAS} replicas: admitted / limit at "
            f"{p.OVERLOAD:.0%} load",
            e.share,
            "%",
            EXACT_SHARE,
        )


def _waits(r: Results, x: p.ProductionBench) -> None:
    if x.waits is None:
        return
    r.note(
        "What one production chat turn waits for, each measured alone from one process "
        f"(median of {p.WAIT_CALLS} calls): the limiter's admission and the conversation's "
        "append. At one connection nothing overlaps them."
    )
    w = x.waits
    r.add("turn wait: limiter admit (Redis, budget + rate in one script), p50", w.admit_ms, "ms")
    r.add("turn wait: conversation append (PostgreSQL, one statement), p50", w.append_ms, "ms")
    r.add(
        "turn wait: the same append without waiting for the WAL flush, p50",
        w.append_no_flush_ms,
        "ms",
        detail="synchronous_commit=off, for comparison only: kubebots keeps conversations durable",
    )


def _litellm(r: Results, x: p.ProductionBench) -> None:
    peer = x.results.get(p.LITELLM_PRODUCTION.name)
    if peer is None:
        return
    r.note(
        f"LiteLLM in production: {litellm.NO_DATABASE}. Clients present the master key; "
        f"deployment rpm {litellm.RPM_LIMIT:,} / tpm {litellm.TPM_LIMIT:,} (never reached), "
        f"router Redis at {litellm.REDIS_HOST}:{litellm.REDIS_PORT}; one worker on CPU "
        f"{h.SERVER_CPU}, the same OpenAI body as our /v1 route."
    )
    ours_v1 = x.results[p.PRODUCTION.target(h.COMPLETIONS_PATH).name]
    ours_chat = x.results[p.PRODUCTION.name]
    for c in p.CONNECTIONS:
        theirs = peer.runs[c].rps
        r.compare(
            f"production chat req/s, {c} conn",
            "LiteLLM proxy (production)",
            ours_chat.runs[c].rps,
            theirs,
            "req/s",
            better="higher",
            goal=VS_LITELLM,
        )
        r.compare(
            f"production /v1 req/s, {c} conn",
            "LiteLLM proxy (production)",
            ours_v1.runs[c].rps,
            theirs,
            "req/s",
            better="higher",
            goal=VS_LITELLM,
        )
    r.compare(
        "production chat server VmRSS",
        "LiteLLM proxy (production)",
        ours_chat.rss_kib / 1024,
        peer.rss_kib / 1024,
        "MiB",
        better="lower",
        goal=RSS_VS_LITELLM,
    )
