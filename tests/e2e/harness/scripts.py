"""Run one of the harness's shell scripts, with the error the caller names and its output's tail."""

from __future__ import annotations

import subprocess
from pathlib import Path

TAIL_LINES = 40


def run_script(
    script: Path, timeout: float, error: type[Exception]
) -> subprocess.CompletedProcess[str]:
    """``bash script``; ``error`` (with the last lines) on a time-out or a non-zero exit."""
    try:
        proc = subprocess.run(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"{script.name} did not finish in {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-TAIL_LINES:])
        raise error(f"{script.name} failed (exit {proc.returncode}):\n{tail}")
    return proc
