"""Figures on the real kube-apiserver: apply -> serving propagation, 100 Bots -> all Ready.

They run inside the e2e harness (``tests/e2e``), as pytest functions named ``bench_*`` that
``make test`` does not collect; this module runs them and prints what they wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .profile import py_spy

ROOT = Path(__file__).resolve().parents[1]
FIGURES = Path("/tmp/kubebots-e2e-figures.json")


def run() -> dict[str, Any]:
    FIGURES.unlink(missing_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "python_functions=bench_*",
            "tests/e2e/test_scenarios_more.py",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "KUBEBOTS_E2E_SHIPPED_TIMINGS": "1",
            "KUBEBOTS_BENCH_PY_SPY": py_spy(),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not FIGURES.exists():
        # pytest's own report of the failure (E lines), not the tail of captured process logs
        why = [line for line in done.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
        raise RuntimeError(
            "the e2e figures failed:\n" + "\n".join(why[-40:]) + f"\n{done.stderr[-2000:]}"
        )
    figures: dict[str, Any] = json.loads(FIGURES.read_text())
    return figures
