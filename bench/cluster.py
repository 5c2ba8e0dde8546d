"""The operator at scale in real pods (issue 12): 1,000 and 10,000 Bots on the e2e node.

Runs ``bench_scale`` of ``tests/e2e/cluster/test_2_scale.py`` (the scale scenario ``make test``
runs at 1,000, here at 1,000 and then 10,000) on the harness's single node: kubelet, docker,
the quickstart's Deployments with deploy/'s limits, the product image. Each run creates the Bots
at once through the API (8 threads), waits for all Ready, edits one Bot 20 times (API PATCH ->
Ready), idles 20 s and deletes their namespace; the operator's CPU and throttling come from its
cgroup, its memory from docker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .e2e import bench_tests
from .record import Goal, Results

FIGURES = Path("/tmp/kubebots-scale-figures.json")

READY_1K = Goal("<=", 15, 12)
READY_10K = Goal("<=", 240, 12)
IDLE_CPU = Goal("<=", 5, 12)  # % of a core, 10,000 idle Ready Bots
MEMORY_10K = Goal("<=", 300, 12)  # MiB
DELETE_1K = Goal("<=", 10, 12)
EDIT_P50 = Goal("<=", 50, 12)  # ms, one Bot edited while 10,000 exist


def run() -> list[dict[str, Any]]:
    env = {"KUBEBOTS_SCALE_FIGURES": str(FIGURES)}
    runs: list[dict[str, Any]] = bench_tests(
        "tests/e2e/cluster/test_2_scale.py", FIGURES, env, "scale runs"
    )
    return runs


def _p50(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]


def section(r: Results) -> None:
    r.section("Operator at scale: 1,000 and 10,000 Bots in real pods")
    runs = {run["count"]: run for run in run()}
    r.note(
        "The e2e node (kubelet 1.20.2, docker, CNI bridge, kube-proxy) runs the quickstart: the "
        "operator with deploy/'s requests and limits, 2 runtime replicas, PostgreSQL in a pod. "
        "Echo Bots POSTed through the API by 8 threads; the time runs from the first create. "
        "Operator CPU and CFS throttling from its cgroup, memory (RSS + cache the kernel counts "
        "against the limit) from docker. Peers: none publishes such figures; a bare kopf "
        "operator on the same apiserver was 13.9 s for 1,000 (docs/benchmarks.md, issue 6)."
    )
    for count, ready_goal in ((1_000, READY_1K), (10_000, READY_10K)):
        x = runs[count]
        r.add(
            f"{count:,} Bots created at once -> all Ready (pods)",
            x["ready_s"],
            "s",
            ready_goal,
            f"POSTed in {x['created_s']:.1f} s; operator CPU {x['cpu_create_s']:.1f} s, "
            f"throttled {x['throttled_create_s']:.1f} s",
        )
        r.add(
            f"{count:,} idle Ready Bots: operator CPU",
            x["idle_cpu_pct"],
            "%",
            IDLE_CPU if count == 10_000 else None,
            "% of a core over 20 s",
        )
        r.add(
            f"{count:,} Bots: operator memory, peak",
            x["peak_mib"],
            "MiB",
            MEMORY_10K if count == 10_000 else None,
            f"idle {x['idle_mib']:.0f} MiB; limit {x['limit_mib']:.0f} MiB; no restart",
        )
        r.add(
            f"one Bot edited while {count:,} exist: API PATCH -> Ready, p50",
            _p50(x["edit_to_ready_ms"]),
            "ms",
            EDIT_P50 if count == 10_000 else None,
            f"n={len(x['edit_to_ready_ms'])}, max {max(x['edit_to_ready_ms']):.0f} ms",
        )
        r.add(
            f"{count:,} Bots deleted (namespace delete) -> namespace gone",
            x["deleted_s"],
            "s",
            DELETE_1K if count == 1_000 else None,
            f"operator CPU {x['cpu_delete_s']:.1f} s, throttled {x['throttled_delete_s']:.1f} s"
            + (
                f"; with no operator and no finalizer: {x['bare_delete_s']:.1f} s"
                if "bare_delete_s" in x
                else ""
            ),
        )
        r.series[f"scale_{count}_ready_timeline"] = x["ready_timeline"]
        r.series[f"scale_{count}_delete_timeline"] = x["delete_timeline"]
