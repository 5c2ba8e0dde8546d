"""Issue 12's scale scenario in real pods: 1,000 Bots at once, within the operator's shipped limits.

Asserts what must always hold (every Bot Ready for its generation, no operator restart, no OOM
kill, memory under the Deployment's limit, the namespace gone after a delete); the speed goals
(<= 15 s to Ready, <= 10 s to delete) are figures printed here and judged in `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e.conftest import is_ready_for_generation
from tests.e2e.harness.docker import docker_binary
from tests.e2e.harness.quickstart import OPERATOR, Quickstart
from tests.e2e.harness.waiting import wait_until

COUNT = 1_000
NAMESPACE = "scale"
THREADS = 8


def _bot(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "metadata": {"name": f"bot-{i:04d}", "namespace": NAMESPACE},
        "spec": {"llm": {"provider": "echo"}, "systemPrompt": f"bot {i}"},
    }


def _operator_container() -> str:
    """The full id of the operator's container (the one docker runs for its pod)."""
    docker = docker_binary()
    ids = subprocess.run(
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
        stat = dict(line.split() for line in self.stat.read_text().splitlines())
        if "usage_usec" in stat:  # cgroup v2
            return int(stat["usage_usec"]) / 1e6, int(stat.get("throttled_usec", 0)) / 1e6
        used = int(self.usage.read_text()) / 1e9
        return used, int(stat.get("throttled_time", 0)) / 1e9


def _limit_bytes(quantity: str) -> int:
    factors = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    return int(quantity[:-2]) * factors[quantity[-2:]]


def test_1000_bots_at_once_within_the_shipped_limits(cluster: Quickstart) -> None:
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
        list(pool.map(create, range(COUNT)))
    created = time.monotonic() - began
    peak = 0

    def all_ready() -> bool:
        nonlocal peak
        peak = max(peak, _operator_memory_bytes())
        items = cluster.get("-n", NAMESPACE, "bots")["items"]
        return len(items) == COUNT and all(is_ready_for_generation(b) for b in items)

    wait_until(all_ready, f"{COUNT} Bots Ready", 600, 2.0, cluster.explain)
    ready = time.monotonic() - began
    cpu1 = cpu.read()
    time.sleep(10)  # idle with every Bot Ready
    cpu2 = cpu.read()
    idle = _operator_memory_bytes()
    peak = max(peak, idle)

    began = time.monotonic()
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")

    def gone() -> bool:
        return cluster.node.kubectl("get", "namespace", NAMESPACE).returncode != 0

    wait_until(gone, f"namespace {NAMESPACE} with {COUNT} Bots gone", 600, 1.0, cluster.explain)
    deleted = time.monotonic() - began
    cpu3 = cpu.read()
    print(
        f"\n[scale] {COUNT} Bots POSTed ({THREADS} threads) in {created:.1f}s, all Ready after"
        f" {ready:.1f}s; operator memory peak {peak / 2**20:.0f} MiB, idle {idle / 2**20:.0f} MiB"
        f" (limit {limit / 2**20:.0f} MiB); namespace deleted in {deleted:.1f}s\n[scale] operator"
        f" CPU: creates {cpu1[0] - cpu0[0]:.1f}s (throttled {cpu1[1] - cpu0[1]:.1f}s), idle"
        f" {(cpu2[0] - cpu1[0]) / 10 * 100:.1f}% of a core, delete {cpu3[0] - cpu2[0]:.1f}s"
        f" (throttled {cpu3[1] - cpu2[1]:.1f}s)"
    )
    (after,) = cluster.pods(OPERATOR)
    assert after["metadata"]["name"] == operator["metadata"]["name"], "the operator pod changed"
    (state,) = after["status"]["containerStatuses"]
    assert state["restartCount"] == 0, state
    assert peak < limit, f"operator memory {peak} >= its limit {limit}"
