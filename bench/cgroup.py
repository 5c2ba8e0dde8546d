"""An equal CPU quota per server process: a cgroup with a CFS bandwidth limit each.

This machine has two cores, one of which drives the load; to compare one replica with two on
the same footing, each replica gets :class:`CpuQuota` ``cores`` of CPU time (e.g. 0.4), as a
Kubernetes ``resources.limits.cpu`` would give it. cgroup v2 (``cpu.max``) is used where its
``cpu`` controller is enabled, else cgroup v1's ``cpu`` hierarchy (``cpu.cfs_quota_us``); the
groups are named ``kubebots-bench-<id>-<n>`` and removed on exit (their processes must have
exited by then: :func:`bench.http.server` contexts close first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
PERIOD_US: Final = 100_000


@dataclass(frozen=True)
class Hierarchy:
    """Where CPU-limited groups are made, and how their limit is written."""

    root: Path
    v2: bool

    def limit(self, group: Path, cores: float) -> None:
        quota = quota_us(cores)
        if self.v2:
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")

    @property
    def version(self) -> str:
        return "cgroup v2 cpu.max" if self.v2 else "cgroup v1 cpu.cfs_quota_us"


def quota_us(cores: float) -> int:
    """The CFS quota per :data:`PERIOD_US` giving ``cores`` of CPU time (0 < cores)."""
    if not cores > 0:
        raise ValueError("cores must be positive")
    return max(1000, round(cores * PERIOD_US))  # the kernel's minimum quota is 1 ms


def find_hierarchy(root: Path = CGROUP_ROOT) -> Hierarchy:
    """cgroup v2 with the ``cpu`` controller (mounted at ``root`` or ``root/unified``), else the
    v1 ``cpu`` hierarchy; a clear error when neither can take a group here."""
    for v2_root in (root, root / "unified"):
        controllers = v2_root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            subtree = (v2_root / "cgroup.subtree_control").read_text().split()
            if "cpu" not in subtree:
                (v2_root / "cgroup.subtree_control").write_text("+cpu\n")
            return Hierarchy(v2_root, v2=True)
    v1 = root / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return Hierarchy(v1, v2=False)
    raise RuntimeError(
        f"no writable cgroup with a CPU controller under {root} (cgroup v2 cpu.max or v1 "
        "cpu.cfs_quota_us): the replica-scaling figures need an equal CPU quota per replica"
    )


class CpuQuota:
    """Groups of ``cores`` CPU each; :meth:`add` puts a process into group ``n``."""

    def __init__(self, hierarchy: Hierarchy, name: str, cores: float) -> None:
        self.hierarchy = hierarchy
        self.name = name
        self.cores = cores
        self.groups: dict[int, Path] = {}

    def add(self, n: int, pid: int) -> None:
        group = self.groups.get(n)
        if group is None:
            group = self.hierarchy.root / f"{self.name}-{n}"
            group.mkdir()
            self.groups[n] = group
            self.hierarchy.limit(group, self.cores)
        (group / "cgroup.procs").write_text(f"{pid}\n")

    def remove(self) -> None:
        for group in self.groups.values():
            group.rmdir()
        self.groups.clear()


@contextmanager
def cpu_quota(name: str, cores: float) -> Iterator[CpuQuota]:
    """:class:`CpuQuota` groups named ``name-<n>``, removed on the way out."""
    quota = CpuQuota(find_hierarchy(), name, cores)
    try:
        yield quota
    finally:
        quota.remove()
