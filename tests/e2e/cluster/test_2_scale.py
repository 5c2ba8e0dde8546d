"""Issue 12's scale scenario in real pods: 1,000 Bots at once, within the operator's shipped limits.

Asserts what must always hold (every Bot Ready for its generation, no operator restart, no OOM
kill, memory under the Deployment's limit, the namespace gone after a delete); the speed goals
(<= 15 s to Ready, <= 10 s to delete) are figures printed here and judged in `make bench`,
whose ``bench_scale`` (collected only by the bench) runs 1,000 and then 10,000 Bots.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import is_ready_for_generation
from tests.e2e.harness.docker import docker_binary
from tests.e2e.harness.quickstart import OPERATOR, Quickstart
from tests.e2e.harness.waiting import wait_until

NAMESPACE = "scale"
THREADS = 8


def _bot(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "metadata": {"name": f"bot-{i:04d}", "namespace": NAMESPACE},
        "spec": {"llm": {"provider": "echo"}, "systemPrompt": f"bot {i}"},
    }


def _operator_containers() -> list[str]:
    """The full ids of the running operator containers (docker runs one for its pod)."""
    docker = docker_binary()
    return subprocess.run(
        [
            docker,
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "label=io.kubernetes.container.name=operator",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def _operator_container() -> str:
    ids = _operator_containers()
    assert len(ids) == 1, f"expected one operator container, found {ids}"
    return ids[0]


def _operator_memory_bytes() -> int:
    """The operator container's memory use (its cgroup, as docker reports it)."""
    out = subprocess.run(
        [docker_binary(), "stats", "--no-stream", "--format", "{{json .}}", _operator_container()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = json.loads(out)["MemUsage"].split("/")[0].strip()  # e.g. "187.3MiB"
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "B": 1}
    for unit, factor in units.items():
        if used.endswith(unit):
            return int(float(used[: -len(unit)]) * factor)
    raise AssertionError(f"cannot read docker's memory figure {used!r}")


class CpuUse:
    """The operator container's CPU time and CFS throttling, from its cgroup (v1 or v2)."""

    def __init__(self) -> None:
        cid = _operator_container()
        found = sorted(Path("/sys/fs/cgroup").glob(f"**/{cid}*/cpu.stat"))
        assert found, f"no cgroup holds container {cid}"
        self.stat = found[0]
        self.usage = self.stat.parent / "cpuacct.usage"  # v1; v2 has usage_usec in cpu.stat
        if not self.usage.exists():
            usage = sorted(Path("/sys/fs/cgroup").glob(f"**/{cid}*/cpuacct.usage"))
            self.usage = usage[0] if usage else self.usage

    def read(self) -> tuple[float, float]:
        """(CPU seconds used, seconds throttled) since the container started."""
        if not self.stat.exists():
            raise AssertionError(f"the operator's container is gone (restarted?): {self.stat}")
        stat = dict(line.split() for line in self.stat.read_text().splitlines())
        if "usage_usec" in stat:  # cgroup v2
            return int(stat["usage_usec"]) / 1e6, int(stat.get("throttled_usec", 0)) / 1e6
        used = int(self.usage.read_text()) / 1e9
        return used, int(stat.get("throttled_time", 0)) / 1e9


def _limit_bytes(quantity: str) -> int:
    factors = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * factors[quantity[-2:]]


@dataclass
class ScaleRun:
    """What one scale run measured (seconds, MiB, % of a core)."""

    count: int
    created_s: float
    ready_s: float
    deleted_s: float
    peak_mib: float
    idle_mib: float
    limit_mib: float
    cpu_create_s: float
    throttled_create_s: float
    idle_cpu_pct: float
    cpu_delete_s: float
    throttled_delete_s: float
    edit_to_ready_ms: list[float] = field(default_factory=list)
    ready_timeline: list[tuple[float, int]] = field(default_factory=list)
    delete_timeline: list[tuple[float, int]] = field(default_factory=list)  # Bots left
    idle_tasks: int = 0  # the operator's asyncio tasks at idle (its /healthz)

    def line(self) -> str:
        edits = sorted(self.edit_to_ready_ms)
        p50 = f"{edits[len(edits) // 2]:.0f} ms" if edits else "-"
        return (
            f"[scale] {self.count} Bots POSTed ({THREADS} threads) in {self.created_s:.1f}s, all"
            f" Ready after {self.ready_s:.1f}s; one edit -> Ready p50 {p50}; operator memory peak"
            f" {self.peak_mib:.0f} MiB, idle {self.idle_mib:.0f} MiB (limit {self.limit_mib:.0f}"
            f" MiB); namespace deleted in {self.deleted_s:.1f}s\n[scale] operator CPU: creates"
            f" {self.cpu_create_s:.1f}s (throttled {self.throttled_create_s:.1f}s), idle"
            f" {self.idle_cpu_pct:.1f}% of a core, delete {self.cpu_delete_s:.1f}s (throttled"
            f" {self.throttled_delete_s:.1f}s); {self.idle_tasks} asyncio tasks at idle"
            f"\n[scale] Ready over time (s, Bots):"
            f" {_sparse(self.ready_timeline)}\n[scale] deleting (s, Bots left):"
            f" {_sparse(self.delete_timeline)}"
        )


def _sparse(points: list[tuple[float, int]], most: int = 12) -> str:
    step = max(1, len(points) // most)
    return " ".join(f"{t:g}:{n}" for t, n in points[::step] + points[-1:])


def _operator_tasks(cluster: Quickstart) -> int:
    """The operator's asyncio tasks, from its /healthz (the pod's IP is routed to the host)."""
    (pod,) = cluster.pods(OPERATOR)
    body = json.loads(
        urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/healthz").read()
    )
    return int(body["progress"]["tasks"])


def _remaining(cluster: Quickstart, path: str) -> int:
    """How many Bots are left, from a one-item page (the apiserver counts the rest)."""
    status, page = cluster.node.cp.request("GET", f"{path}?limit=1")
    if status == 404:
        return 0
    items = len(page.get("items") or [])
    return items + int(page["metadata"].get("remainingItemCount") or 0)


def _ready_count(cluster: Quickstart, path: str) -> int:
    """Bots Ready for their generation, listed in pages (10,000 in one response is ~30 MB)."""
    ready, token = 0, ""
    while True:
        status, page = cluster.node.cp.request("GET", f"{path}?limit=1000&continue={token}")
        assert status == 200, (status, page)
        ready += sum(1 for b in page["items"] if is_ready_for_generation(b))
        token = page["metadata"].get("continue") or ""
        if not token:
            return ready


def _edits_to_ready(cluster: Quickstart, path: str, name: str, n: int) -> list[float]:
    """API PATCH of one Bot's spec -> its status Ready for the new generation (ms), n times."""
    took = []
    api = cluster.node.cp.keep_alive()
    try:
        for i in range(n):
            patch = {"spec": {"systemPrompt": f"edit {i}"}}
            began = time.perf_counter()
            status, bot = api.request(
                "PATCH", f"{path}/{name}", patch, content_type="application/merge-patch+json"
            )
            assert status == 200, (status, bot)
            generation = bot["metadata"]["generation"]
            while True:
                got = api.request("GET", f"{path}/{name}")[1]
                if got["metadata"]["generation"] == generation and is_ready_for_generation(got):
                    break
                assert time.perf_counter() - began < 30, f"bot/{name} not Ready after edit {i}"
                time.sleep(0.002)
            took.append((time.perf_counter() - began) * 1000)
    finally:
        api.close()
    return took


def run_scale(cluster: Quickstart, count: int, edits: int = 20) -> ScaleRun:
    """Create ``count`` Bots at once, wait for all Ready, edit one ``edits`` times, idle 20 s,
    delete their namespace; the operator must not restart and stay under its memory limit."""
    (operator,) = cluster.pods(OPERATOR)
    (container,) = operator["spec"]["containers"]
    limit = _limit_bytes(container["resources"]["limits"]["memory"])
    cluster.kubectl("create", "namespace", NAMESPACE)
    cp = cluster.node.cp
    path = f"/apis/kubebots.io/v1alpha1/namespaces/{NAMESPACE}/bots"

    def create(i: int) -> int:
        status, body = cp.request("POST", path, _bot(i))
        assert status == 201, (status, body)
        return status

    cpu = CpuUse()
    cpu0 = cpu.read()
    began = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(count)))
    created = time.monotonic() - began
    peak = 0
    timeline: list[tuple[float, int]] = []

    def all_ready() -> bool:
        nonlocal peak
        peak = max(peak, _operator_memory_bytes())
        ready = _ready_count(cluster, path)
        timeline.append((round(time.monotonic() - began, 2), ready))
        return ready == count

    poll = max(1.0, count / 2000)  # listing 10,000 Bots is work for the apiserver too
    wait_until(all_ready, f"{count} Bots Ready", 900, poll, cluster.explain)
    ready = time.monotonic() - began
    cpu1 = cpu.read()
    edit_ms = _edits_to_ready(cluster, path, _bot(count // 2)["metadata"]["name"], edits)
    cpu1 = cpu.read()
    time.sleep(20)  # idle with every Bot Ready
    cpu2 = cpu.read()
    idle_tasks = _operator_tasks(cluster)
    idle = _operator_memory_bytes()
    peak = max(peak, idle)

    began = time.monotonic()
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")

    def gone() -> bool:
        left = _remaining(cluster, path)
        delete_timeline.append((round(time.monotonic() - began, 2), left))
        return left == 0 and cluster.node.kubectl("get", "namespace", NAMESPACE).returncode != 0

    delete_timeline: list[tuple[float, int]] = []
    wait_until(gone, f"namespace {NAMESPACE} with {count} Bots gone", 900, 0.5, cluster.explain)
    deleted = time.monotonic() - began
    cpu3 = cpu.read()
    run = ScaleRun(
        count=count,
        created_s=created,
        ready_s=ready,
        deleted_s=deleted,
        peak_mib=peak / 2**20,
        idle_mib=idle / 2**20,
        limit_mib=limit / 2**20,
        cpu_create_s=cpu1[0] - cpu0[0],
        throttled_create_s=cpu1[1] - cpu0[1],
        idle_cpu_pct=(cpu2[0] - cpu1[0]) / 20 * 100,
        cpu_delete_s=cpu3[0] - cpu2[0],
        throttled_delete_s=cpu3[1] - cpu2[1],
        edit_to_ready_ms=edit_ms,
        ready_timeline=timeline,
        delete_timeline=delete_timeline,
        idle_tasks=idle_tasks,
    )
    print("\n" + run.line())
    keep = os.environ.get("KUBEBOTS_SCALE_LOGS")  # a directory for the operator's log
    if keep:
        log = cluster.node.kubectl("-n", "kubebots-system", "logs", operator["metadata"]["name"])
        Path(keep, f"operator-{count}.log").write_text(log.stdout)
    (after,) = cluster.pods(OPERATOR)
    assert after["metadata"]["name"] == operator["metadata"]["name"], "the operator pod changed"
    (state,) = after["status"]["containerStatuses"]
    assert state["restartCount"] == 0, state
    assert peak < limit, f"operator memory {peak} >= its limit {limit}"
    assert idle_tasks < 100, f"{idle_tasks} asyncio tasks at idle: one per Bot?"
    return run


def test_1000_bots_at_once_within_the_shipped_limits(cluster: Quickstart) -> None:
    run_scale(cluster, 1_000)


def bare_namespace_delete(cluster: Quickstart, count: int) -> float:
    """The floor under the delete figure: seconds until a namespace of ``count`` Bots is gone
    with the operator scaled to zero (no finalizer anywhere: the namespace controller and the
    apiserver alone)."""
    deploy = ("-n", "kubebots-system", "deployment/kubebots-operator")
    cluster.kubectl("scale", *deploy, "--replicas=0")
    # not only the pod marked deleted: its container gone (it stops within its grace period)
    wait_until(lambda: not _operator_containers(), "the operator scaled to zero", 120, 1.0)
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        path = f"/apis/kubebots.io/v1alpha1/namespaces/{NAMESPACE}/bots"
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: cluster.node.cp.request("POST", path, _bot(i)), range(count)))
        assert _remaining(cluster, path) == count
        began = time.monotonic()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")

        def gone() -> bool:
            return cluster.node.kubectl("get", "namespace", NAMESPACE).returncode != 0

        wait_until(gone, f"bare namespace of {count} Bots gone", 300, 0.5, cluster.explain)
        return time.monotonic() - began
    finally:
        cluster.kubectl("scale", *deploy, "--replicas=1")
        cluster.wait_ready_pods(OPERATOR, 1)
        wait_until(lambda: len(_operator_containers()) == 1, "one operator container", 60, 1.0)


def bench_scale(cluster: Quickstart) -> None:
    """``make bench``: 1,000 then 10,000 Bots, and the bare namespace delete of 1,000; the
    figures go to ``$KUBEBOTS_SCALE_FIGURES``."""
    floor = bare_namespace_delete(cluster, 1_000)
    print(f"\n[scale] bare namespace of 1000 Bots (no operator, no finalizer) gone in {floor:.1f}s")
    runs = [asdict(run_scale(cluster, count)) for count in (1_000, 10_000)]
    runs[0]["bare_delete_s"] = floor
    Path(os.environ["KUBEBOTS_SCALE_FIGURES"]).write_text(json.dumps(runs, indent=1))
