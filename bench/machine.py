"""The header: which machine and interpreter produced the figures, and when."""

from __future__ import annotations

import os
import platform
from datetime import datetime
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


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


def header() -> list[str]:
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    return [
        "kubebots benchmark",
        f"  machine: {cpu_model()}, {os.cpu_count()} cores",
        f"  python:  {platform.python_implementation()} {platform.python_version()}",
        f"  date:    {now}",
    ]
