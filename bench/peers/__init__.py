"""kubebots' ``BotManager`` side by side with the peer library dataknobs-bots (in-process).

Every figure comes from a fresh interpreter (``python -m bench.peers.worker MEASURE SUBJECT
[N]``) started the same way for both sides: this interpreter (``sys.executable``), cwd = the
project root, the same environment (a copy of ``os.environ`` plus ``PYTHONHASHSEED=0``) and,
when CPUs 0 and 1 are both available, pinned to CPU 1 with ``taskset -c 1``. Measures (see
:mod:`bench.peers.measures`): ``cached``, ``new``, ``chat``, ``turns``, ``rss`` (N bots) and
``single_flight``. Results are plain dicts of raw figures.

This module never imports ``dataknobs_bots``; only the worker subprocess does, so the package
imports fine in an environment without it (:func:`available` says whether it is installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

OURS = "kubebots"
PEER = "dataknobs-bots"
SUBJECTS = (OURS, PEER)
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
#: compare() keys -> (worker measure, N)
MEASURES: dict[str, tuple[str, int | None]] = {
    "cached": ("cached", None),
    "new": ("new", None),
    "chat": ("chat", None),
    "turns": ("turns", None),
    "rss_1000": ("rss", 1_000),
    "rss_10000": ("rss", 10_000),
    "single_flight": ("single_flight", None),
}
PINNED_CPU = 1
TIMEOUT_S = 900
#: ratios() keys: compare() key -> figures compared (lower is better for every one of them).
RATIO_FIGURES: dict[str, tuple[str, ...]] = {
    "cached": ("median_us", "p99_us"),
    "new": ("median_us", "p99_us"),
    "chat": ("median_ms", "p99_ms"),
    "turns": ("turn_1_ms", "turn_200_ms", "ratio_200_1"),
    "rss_1000": ("kib_per_bot",),
    "rss_10000": ("kib_per_bot",),
    "single_flight": ("builds", "loader_calls"),
}

Result = dict[str, Any]


def available() -> str | None:
    """The installed dataknobs-bots version, or ``None`` when it is not installed."""
    try:
        return version(PEER)
    except PackageNotFoundError:
        return None


def _pin() -> list[str]:
    """``taskset -c 1`` when CPUs 0 and 1 are both ours (the same for both sides), else nothing."""
    if {0, 1} <= os.sched_getaffinity(0) and shutil.which("taskset"):
        return ["taskset", "-c", str(PINNED_CPU)]
    return []


def command(measure: str, subject: str, n: int | None = None) -> list[str]:
    """The worker command line :func:`run` executes."""
    args = [sys.executable, "-m", "bench.peers.worker", measure, subject]
    return _pin() + args + ([str(n)] if n is not None else [])


def run(measure: str, subject: str, n: int | None = None, timeout: float = TIMEOUT_S) -> Result:
    """Run one worker measure for one side in a fresh interpreter; its JSON result as a dict.

    Raises :class:`RuntimeError` (with the worker's stderr) if it fails or prints no JSON.
    """
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}; expected one of {SUBJECTS}")
    env = dict(os.environ, PYTHONHASHSEED="0")
    argv = command(measure, subject, n)
    try:
        done = subprocess.run(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr.strip()}"
        )
    try:
        result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise RuntimeError(
            f"{' '.join(argv)} printed no JSON result:\n{done.stdout}\n{done.stderr.strip()}"
        ) from exc
    return result


def compare(
    measures: Iterable[str] = tuple(MEASURES), subjects: Iterable[str] = SUBJECTS
) -> dict[str, dict[str, Result]]:
    """Every measure for every side: ``{measure key: {subject: result}}`` (keys of ``MEASURES``).

    Sides alternate per measure (ours first), each in its own fresh interpreter.
    """
    results: dict[str, dict[str, Result]] = {}
    for key in measures:
        measure, n = MEASURES[key]
        results[key] = {subject: run(measure, subject, n) for subject in subjects}
    return results


def ratios(results: dict[str, dict[str, Result]]) -> dict[str, float | None]:
    """``peer / ours`` for every figure of ``RATIO_FIGURES`` present in ``results``.

    Keys are ``"<measure>.<figure>.peer_over_ours"``; every figure is lower-is-better, so a value
    above 1 means kubebots is faster / smaller / builds less. ``None`` when ours is zero or a
    side is missing.
    """
    out: dict[str, float | None] = {}
    for key, figures in RATIO_FIGURES.items():
        sides = results.get(key, {})
        ours, peer = sides.get(OURS), sides.get(PEER)
        for figure in figures:
            name = f"{key}.{figure}.peer_over_ours"
            if ours is None or peer is None or not ours.get(figure):
                out[name] = None
            else:
                out[name] = float(peer[figure]) / float(ours[figure])
    return out
