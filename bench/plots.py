"""PNG plots of one run's ``series`` (matplotlib, Agg backend; bench environment only).

Every plot carries the machine and date in its footer, so a PNG lifted out of the report still
says where its figures come from. :func:`render_all` draws each plot whose series the run has and
returns ``{name: path}``; a run without some section simply has fewer plots.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .machine import label

DPI = 110


def _finish(fig: Figure, machine: dict[str, Any], path: Path) -> Path:
    fig.text(0.01, 0.01, label(machine), fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def turns(series: dict[str, list[float]], machine: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, per_turn in series.items():
        ax.plot(range(1, len(per_turn) + 1), per_turn, label=name, linewidth=1.2)
    for turn in (1, 50, 100, 200):
        ax.axvline(turn, color="0.85", linewidth=0.8, zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("turn number in one conversation")
    ax.set_ylabel("chat() latency, ms (median over conversations, log)")
    ax.set_title("Latency by turn: does a turn get slower as its conversation grows?")
    ax.legend(fontsize=8)
    return _finish(fig, machine, path)


def distributions(
    series: dict[str, list[float]], machine: dict[str, Any], path: Path, title: str
) -> Path:
    """Empirical CDFs of latency samples (ms), one line per series, p50/p99 marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, samples in series.items():
        ordered = sorted(samples)
        n = len(ordered)
        ax.step(ordered, [(i + 1) / n for i in range(n)], where="post", label=f"{name} (n={n})")
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("ms")
    ax.set_ylabel("fraction of updates served within")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _finish(fig, machine, path)


def http(series: dict[str, Any], machine: dict[str, Any], path: Path) -> Path:
    """Requests/s (log) and p99 per target at each connection count."""
    targets = list(series["targets"])
    conns = [str(c) for c in series["connections"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    width = 0.8 / max(1, len(targets))
    for i, name in enumerate(targets):
        runs = series["targets"][name]["runs"]
        xs = [j + i * width for j in range(len(conns))]
        top.bar(xs, [runs[c]["rps"] for c in conns], width, label=name)
        bottom.bar(xs, [runs[c]["p99_ms"] for c in conns], width, label=name)
    top.set_yscale("log")
    top.set_ylabel("requests/s (log)")
    top.set_title("HTTP under wrk: one server core, one wrk core")
    top.legend(fontsize=7, ncol=2)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 ms (log)")
    centre = (len(targets) - 1) * width / 2
    bottom.set_xticks([j + centre for j in range(len(conns))], [f"{c} conn" for c in conns])
    return _finish(fig, machine, path)


def grouped_bars(
    series: dict[str, dict[str, float]],
    machine: dict[str, Any],
    path: Path,
    title: str,
    unit: str,
    log: bool = False,
) -> Path:
    """``{group: {subject: value}}`` as bars side by side per group."""
    groups = list(series)
    subjects = sorted({s for g in series.values() for s in g})
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / max(1, len(subjects))
    for i, subject in enumerate(subjects):
        xs = [j + i * width for j in range(len(groups))]
        values = [series[g].get(subject, 0.0) for g in groups]
        bars = ax.bar(xs, values, width, label=subject)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    centre = (len(subjects) - 1) * width / 2
    ax.set_xticks(
        [j + centre for j in range(len(groups))],
        groups,
        rotation=25 if log else 0,
        ha="right" if log else "center",
        fontsize=8,
    )
    if log:
        ax.set_yscale("log")
        ax.axhline(1, color="0.5", linewidth=0.8)
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _finish(fig, machine, path)


def timeline(points: list[list[float]], machine: dict[str, Any], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", linewidth=1.2)
    ax.set_xlabel("seconds since the first create")
    ax.set_ylabel("Bots Ready (current generation)")
    ax.set_title(title)
    return _finish(fig, machine, path)


def render_all(data: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m, s = data["machine"], data["series"]
    jobs: dict[str, Callable[[Path], Path]] = {}
    if "turns_ms" in s:
        jobs["turns"] = lambda p: turns(s["turns_ms"], m, p)
    if "peer_bars" in s:
        for key, spec in s["peer_bars"].items():
            jobs[f"peers-{key}"] = lambda p, spec=spec: grouped_bars(
                spec["values"], m, p, spec["title"], spec["unit"], spec.get("log", False)
            )
    if "store_propagation_ms" in s:
        jobs["store-propagation"] = lambda p: distributions(
            s["store_propagation_ms"], m, p, "Config store put -> served by a store-driven manager"
        )
    if "e2e_propagation_ms" in s:
        jobs["apply-propagation"] = lambda p: distributions(
            s["e2e_propagation_ms"],
            m,
            p,
            "Real kube-apiserver: Bot change -> served by the runtime",
        )
    if "bulk_ready_timeline" in s:
        jobs["bulk-ready"] = lambda p: timeline(
            s["bulk_ready_timeline"], m, p, "1,000 Bots created at once: Ready over time"
        )
    if "http" in s:
        jobs["http"] = lambda p: http(s["http"], m, p)
    return {name: draw(out_dir / f"{name}.png") for name, draw in jobs.items()}
