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


def bench_tests(target: str, figures: Path, env: dict[str, str], what: str) -> Any:
    """Run the ``bench_*`` functions of ``target`` (a pytest file that ``make test`` collects
    only for its ``test_*``) and return the JSON they wrote to ``figures``."""
    figures.unlink(missing_ok=True)
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
            target,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not figures.exists():
        # pytest's own report of the failure (E lines), not the tail of captured process logs
        why = [line for line in done.stdout.splitlines() if line.startswith(("E ", "FAILED"))]
        raise RuntimeError(
            f"the {what} failed:\n" + "\n".join(why[-40:]) + f"\n{done.stderr[-2000:]}"
        )
    return json.loads(figures.read_text())


def run() -> dict[str, Any]:
    env = {"KUBEBOTS_E2E_SHIPPED_TIMINGS": "1", "KUBEBOTS_BENCH_PY_SPY": py_spy()}
    figures: dict[str, Any] = bench_tests(
        "tests/e2e/test_scenarios_more.py", FIGURES, env, "e2e figures"
    )
    return figures
