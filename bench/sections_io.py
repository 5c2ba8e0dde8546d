"""The out-of-process sections of ``python -m bench``: the real apiserver, scale and HTTP.

Each starts real processes (etcd + kube-apiserver, ``kubebots operator``/``serve``, uvicorn
servers, the LiteLLM proxy, ``wrk``) and records what it measured into :class:`Results`.
"""

from __future__ import annotations

from pathlib import Path

from .record import Goal, Results

APPLY_P50 = Goal("<=", 50, 6)
APPLY_P99 = Goal("<=", 250, 6)
ALL_READY = Goal("<=", 30, 6)


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
    k = f["kubectl_patch_only_ms"]
    r.add(
        "`kubectl patch` process alone, p50",
        k["p50"],
        "ms",
        detail="the client's own cost inside the kubectl figures (process start, discovery)",
    )
    b = f["bulk_create_to_all_ready_s"]
    r.add(
        f"{b['bots']:,} Bots in one apply -> all Ready",
        b["all_ready_s"],
        "s",
        ALL_READY,
        f"`kubectl apply` itself {b['kubectl_apply_s']:.1f} s",
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
        f"{x.bots:,} echo bots in the config store ({x.store}); one `kubebots serve` process "
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
    raise NotImplementedError("http section: being written")


def profile_worst_miss(r: Results, out_dir: Path) -> None:
    """Profile the worst miss with py-spy and write out_dir/profile.md (nothing if no miss)."""
    (out_dir / "profile.md").unlink(missing_ok=True)
