"""The header: which machine and interpreter produced the figures, and when."""

from __future__ import annotations

import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")


def cpu_model() -> str:
    """The ``model name`` of the first CPU in /proc/cpuinfo (``platform.processor()`` if absent)."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def machine() -> dict[str, Any]:
    """What the report and every plot name: CPU model, cores, memory, Python, kernel, date."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def label(m: dict[str, Any]) -> str:
    """One line for plot footers: ``CPU, N cores, Python x.y, date``."""
    return f"{m['cpu']}, {m['cores']} cores, {m['python']}, {m['date'][:16].replace('T', ' ')}"


def header(m: dict[str, Any] | None = None) -> list[str]:
    m = m or machine()
    return [
        "kubebots benchmark",
        f"  machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB",
        f"  python:  {m['python']} (kernel {m['kernel']})",
        f"  date:    {m['date']}",
    ]
