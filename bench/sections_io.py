"""The out-of-process sections of ``python -m bench``: the real apiserver, scale and HTTP.

Each starts real processes (etcd + kube-apiserver, ``kubebots operator``/``serve``, uvicorn
servers, the LiteLLM proxy, ``wrk``) and records what it measured into :class:`Results`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from .http import TargetResult
from .record import Comparison, Figure, Goal, Results

APPLY_P50 = Goal("<=", 50, 6)
APPLY_P99 = Goal("<=", 250, 6)
ALL_READY = Goal("<=", 30, 6)
BARE_SHARE = Goal(">=", 50, 4)  # % of the bare app's req/s (issue 4, restated by issue 7)
P99_ADDED = Goal("<=", 5, 4)
P99_16 = Goal("<=", 20, 7)
VS_LITELLM = Goal(">=", 20, 7)  # ours / LiteLLM req/s
RSS_VS_LITELLM = Goal(">=", 4, 7)  # LiteLLM / ours VmRSS: ours <= a quarter


def kubernetes(r: Results) -> None:
    from . import e2e

    r.section("Kubernetes: real kube-apiserver 1.20.2, operator + runtime processes")
    f = e2e.run()
    r.note(
        "etcd 3.4 + kube-apiserver 1.20.2 built from Debian sources (tests/e2e/harness), one "
        "`kubebots operator` and one `kubebots serve` process, PostgreSQL config store. An update "
        "is served when the runtime's GET /bots/{id} shows the new generation at the store's "
        "revision (polled every 2 ms)."
    )
    for key, how in (
        ("apply_to_serving_ms", "`kubectl patch` -> served"),
        ("api_patch_to_serving_ms", "API PATCH -> served"),
    ):
        p = f[key]
        r.add(f"{how}, p50", p["p50"], "ms", APPLY_P50, f"n={p['n']}")
        r.add(f"{how}, p95", p["p95"], "ms")
        r.add(f"{how}, p99", p["p99"], "ms", APPLY_P99, f"max {p['max']:.1f} ms")
    st = f["api_patch_to_store_ms"]
    r.add(
        "API PATCH -> operator's store write visible, p50",
        st["p50"],
        "ms",
        detail=f"p99 {st['p99']:.1f} ms: the operator's share of API PATCH -> served",
    )
    k = f["kubectl_patch_only_ms"]
    r.add(
        "`kubectl patch` process alone, p50",
        k["p50"],
        "ms",
        detail="the client's own cost inside the kubectl figures (process start, discovery)",
    )
    b = f["bulk_create_to_all_ready_s"]
    r.add(
        f"{b['bots']:,} Bots created at once -> all Ready",
        b["all_ready_s"],
        "s",
        ALL_READY,
        f"POSTed through the API by 8 threads in {b['create_burst_s']:.1f} s, as a GitOps "
        "controller applies; the time runs from the first create",
    )
    d = f.get("bulk_delete") or {}
    if d.get("all_tombstoned_s") is not None:
        r.add(
            f"{d['bots']:,} Bots deleted -> all store entries tombstoned",
            d["all_tombstoned_s"],
            "s",
        )
    r.series["e2e_propagation_ms"] = {
        "kubectl patch -> served": f["samples_ms"]["kubectl"],
        "API PATCH -> served": f["samples_ms"]["api"],
        "kubectl patch alone": f["samples_ms"]["kubectl_patch_only"],
    }
    r.series["bulk_ready_timeline"] = b["ready_timeline"]


def scale(r: Results) -> None:
    from .scale import SAMPLED, runtime_at_scale

    r.section("Scale: one runtime over a store of 10,000 bots (lazy)")
    x = runtime_at_scale()
    r.note(
        f"{x.bots:,} echo bots in the config store (PostgreSQL); one `kubebots serve` process "
        f"({'pinned to CPU 0' if x.pinned else 'unpinned'}), auth off. Ready = first store sync "
        "done (every entry listed and validated; no bot is built until its first request). "
        f"Then one first chat to each of {SAMPLED} bots spread over the range (each builds its "
        "bot), one by one over a keep-alive client, and a second chat to each. Baseline: the "
        "same process over a store of 1 bot."
    )
    b, a = x.baseline, x.at_scale
    r.add(
        "startup -> /healthz, 10,000 bots",
        a.healthz_s,
        "s",
        detail=f"1 bot: {b.healthz_s:.2f} s",
    )
    r.add(
        "startup -> /readyz (first sync), 10,000 bots",
        a.readyz_s,
        "s",
        detail=f"1 bot: {b.readyz_s:.2f} s",
    )
    r.add(
        "VmRSS at ready, 10,000 bots",
        a.rss_kib / 1024,
        "MiB",
        detail=f"1 bot: {b.rss_kib / 1024:.1f} MiB",
    )
    r.add("bots built at ready", a.builds, "", Goal("==", 0, 7), f"{a.loaded} loaded")
    r.add(
        "first chat (builds the bot), p50",
        x.first_chat_p50_ms,
        "ms",
        detail=f"p99 {x.first_chat_p99_ms:.2f} ms, max {x.first_chat_max_ms:.2f} ms",
    )
    r.add(
        "second chat (bot cached), p50",
        x.cached_chat_p50_ms,
        "ms",
        detail=f"p99 {x.cached_chat_p99_ms:.2f} ms, max {x.cached_chat_max_ms:.2f} ms",
    )
    r.add(
        f"VmRSS after {SAMPLED} bots built",
        x.rss_after_chats_kib / 1024,
        "MiB",
        detail=f"{x.loaded_after_chats} loaded, {x.builds_after_chats} builds",
    )
    r.add(
        "seeding the store, one put per bot",
        x.seed_bots_per_s,
        "bots/s",
        detail=f"{x.seed_s:.1f} s for {x.bots:,} (a transaction per put, as the operator writes)",
    )


def http(r: Results) -> None:
    from . import http as h

    r.section("HTTP: our chat API vs bare FastAPI vs the LiteLLM proxy, under wrk")
    x = h.http_load()
    versions = r.machine.setdefault("versions", {})
    versions["wrk"] = x.wrk_version
    if x.litellm_version:
        versions["LiteLLM proxy"] = x.litellm_version
    stacks = sorted({f"{res.target.label}: {res.stack}" for res in x.results.values()})
    server_pin = f"pinned to CPU {h.SERVER_CPU}" if x.pinned else "UNPINNED"
    wrk_pin = f"pinned to CPU {h.WRK_CPU}" if x.pinned else "unpinned"
    r.note(
        f"Each server in its own process ({server_pin}), one worker, no access log; `wrk -t1` "
        f"({x.wrk_version}) {wrk_pin} over loopback. Per "
        f"server a {h.WARMUP_S} s warm-up at {h.WARMUP_CONNECTIONS} connections, then "
        f"{h.REPEATS} runs of {h.DURATION_S} s per connection count, the run with the median "
        "req/s reported (every repeat's req/s in the detail); RSS = VmRSS of the server after "
        "its runs. Our "
        f"chat route rotates over {h.CONVERSATIONS} conversations (the echo bot stores every "
        "turn); /v1 is stateless. The bare apps parse the same body with pydantic and return a "
        "constant; LiteLLM answers from its built-in `mock_response` (no database, no master "
        "key: auth off like ours, log level ERROR)."
    )
    r.note("Server stacks: " + "; ".join(stacks) + ".")
    r.note(
        f"1-minute load average before / after: {x.load_before:.2f} / {x.load_after:.2f} on "
        f"{r.machine['cores']} CPUs (wrk + server make ~2; more means others competed)."
    )
    add_target_runs(r, x.results.values())
    ours = [n for n, res in x.results.items() if res.target.role == "ours"]
    for name in ours:
        label = x.results[name].target.label
        ref = x.results[x.reference(name)].target.label
        for c in h.CONNECTIONS:
            r.add(
                f"{label} / {ref} req/s, {c} conn",
                100 * x.throughput_ratio(name, c),
                "%",
                BARE_SHARE,
            )
        r.add(
            f"{label}: p99 added vs {ref}, {h.P99_CONNECTIONS} conn",
            x.p99_added_ms(name),
            "ms",
            P99_ADDED,
        )
        r.add(f"{label}: p99, {h.P99_CONNECTIONS} conn", x.p99_ms(name), "ms", P99_16)
        if h.LITELLM.name in x.results:
            peer = "LiteLLM proxy"
            for c in h.CONNECTIONS:
                r.compare(
                    f"{label} req/s, {c} conn",
                    peer,
                    x.rps(name, c),
                    x.rps(h.LITELLM.name, c),
                    "req/s",
                    "higher",
                    VS_LITELLM,
                )
            r.compare(
                f"{label}: server VmRSS after the run",
                peer,
                x.results[name].rss_kib / 1024,
                x.results[h.LITELLM.name].rss_kib / 1024,
                "MiB",
                "lower",
                RSS_VS_LITELLM,
            )
    if h.WRK_CEILING.name in x.results:
        best = max(
            x.results[n].runs[c].rps
            for n in x.results
            if n != h.WRK_CEILING.name
            for c in h.CONNECTIONS
        )
        ceiling = max(run.rps for run in x.results[h.WRK_CEILING.name].runs.values())
        r.note(
            f"wrk's own ceiling: {ceiling:,.0f} req/s against a server that does no HTTP work, "
            f"{ceiling / best:.1f}x the fastest target here: the load generator is not the limit."
        )
    r.series["http"] = {
        "connections": list(h.CONNECTIONS),
        "targets": {
            res.target.label: {
                "role": res.target.role,
                "stack": res.stack,
                "rss_kib": res.rss_kib,
                "runs": {
                    str(c): {"rps": run.rps, "p50_ms": run.p50_ms, "p99_ms": run.p99_ms}
                    for c, run in res.runs.items()
                },
            }
            for res in x.results.values()
        },
    }


def add_target_runs(r: Results, results: Iterable[TargetResult]) -> None:
    """Each target's req/s per connection count (latency, CPU and repeats in the detail) and
    its server's VmRSS after the runs."""
    for res in results:
        for c, run in res.runs.items():
            errors = f", {run.socket_errors} socket errors" if run.socket_errors else ""
            r.add(
                f"{res.target.label}, {c} conn",
                run.rps,
                "req/s",
                detail=f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms; server "
                f"{run.server_cpu:.2f} / wrk {run.wrk_cpu:.2f} cores; repeats "
                + "/".join(f"{v:,.0f}" for v in run.all_rps)
                + errors,
            )
        r.add(f"{res.target.label}: server VmRSS after", res.rss_kib / 1024, "MiB")


def _http_miss(name: str) -> tuple[str, int] | None:
    """(target name, connections) of an HTTP figure's name, or None for other sections."""
    from . import http as h

    match = re.search(r"(\d+) conn", name)
    for target in h.OURS:
        if name.startswith(target.label):
            return target.name, int(match.group(1)) if match else h.P99_CONNECTIONS
    return None


OPERATOR_BULK_PROFILE = Path("/tmp/kubebots-e2e-operator-bulk.collapsed")


def profile_worst_miss(r: Results, out_dir: Path) -> None:
    """Profile the worst miss with py-spy into out_dir/profile.md (removed when nothing missed).

    Misses are ranked by their distance from the goal relative to the goal. HTTP misses are
    profiled by sampling our server under the same load; the bulk-Ready miss by the samples
    the e2e run took of the operator during the bulk create. When the worst miss has neither
    (e.g. a figure dominated by the kubectl process), the page says so and profiles the worst
    miss that has one.
    """
    from . import http as h
    from . import production
    from .profile import describe, profile_http
    from .sections_production import TITLE as PRODUCTION

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "profile.md"
    path.unlink(missing_ok=True)
    for stale in out_dir.glob("profile-*.collapsed"):
        stale.unlink()
    ranked = sorted(r.misses(), key=lambda m: m.shortfall(), reverse=True)
    if not ranked:
        return

    def profiler(miss: Figure | Comparison) -> Callable[[], str] | None:
        config = production.config_of_figure(miss.name) if miss.section == PRODUCTION else None
        if config is not None:
            match = re.search(r"(\d+) conn", miss.name)
            connections = int(match.group(1)) if match else production.P99_CONNECTIONS
            return lambda: production.profile(config, connections, out_dir)
        http_miss = _http_miss(miss.name)
        if http_miss is not None:
            name, connections = http_miss
            target = next(t for t in h.OURS if t.name == name)
            return lambda: profile_http(target, connections, out_dir)
        if "Bots created at once" in miss.name and OPERATOR_BULK_PROFILE.exists():
            raw = out_dir / "profile-operator-bulk.collapsed"

            def operator() -> str:
                shutil.copy(OPERATOR_BULK_PROFILE, raw)
                return describe(
                    "`py-spy record --nonblocking -r 100` on the `kubebots operator` process "
                    "from the first create until all Bots were Ready",
                    raw,
                )

            return operator
        return None

    worst = ranked[0]
    lines = [f"Worst miss: **{worst.name}** ({worst.shortfall():.0%} short of its goal)."]
    chosen = next(((m, p) for m in ranked if (p := profiler(m)) is not None), None)
    if chosen is None:
        lines.append("No miss has a profile: see the section of each miss for its breakdown.")
    else:
        miss, run = chosen
        if miss is not worst:
            lines.append(
                "py-spy has nothing of ours to sample for it (its section gives the breakdown), "
                f"so the profile below is of the worst miss that has: **{miss.name}**."
            )
        lines += _profiled(miss, run)
    # The production configuration is what users run: its worst miss gets a profile of its own
    # when the report's worst is elsewhere.
    in_production = [m for m in ranked if m.section == PRODUCTION]
    own = next(((m, p) for m in in_production if (p := profiler(m)) is not None), None)
    if own is not None and (chosen is None or own[0] is not chosen[0]):
        miss, run = own
        lines += [
            "",
            "### Profile of the worst miss of the production configuration",
            "",
            f"**{miss.name}** ({miss.shortfall():.0%} short of its goal).",
            *_profiled(miss, run),
        ]
    path.write_text("\n".join(lines) + "\n")


def _profiled(miss: Figure | Comparison, run: Callable[[], str]) -> list[str]:
    """The profile's lines, or why it could not be taken (the figures stand without it)."""
    print(f"\nprofiling: {miss.name} ...", flush=True)
    try:
        return ["", run()]
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return ["", f"The profile could not be taken: {exc}"]
