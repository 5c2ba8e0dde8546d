"""Where the time goes: py-spy samples one of our HTTP servers under the load that missed a goal.

:func:`profile_http` starts the target's server (pinned like the HTTP run), drives it with
``wrk`` at the given connection count and, meanwhile, runs ``py-spy record --nonblocking``
against the server process (sampling from outside: no code changes, no pauses). The collapsed
stacks are summarised as the functions with the most samples on CPU: *self* (the frame
running) and *inclusive* (anywhere on the stack), in percent of all samples. The raw collapsed
stacks are kept beside the report so anyone can draw a flame graph from them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import http as h

SECONDS = 12
RATE_HZ = 250
TOP = 15


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: it comes with bench/requirements.txt")
    return found


def _frame(frame: str) -> tuple[str, str]:
    """(``function (file.py)``, package) of a py-spy raw frame ``function (pkg/mod.py:123)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    top = path.split("/", 1)[0]
    package = OWN.get(top, top.removesuffix(".py") if "/" not in path else top)
    return (f"{name} ({Path(path).name})" if path else name), package


OWN = {"runtime": "kubebots.runtime", "operator": "kubebots.operator", "bench": "bench harness"}


@dataclass(frozen=True)
class Summary:
    samples: int
    by_package: list[tuple[str, float]]  # self % per package (where the CPU was)
    by_self: list[tuple[str, float]]  # self % per function
    ours: list[tuple[str, float]]  # inclusive % of our own functions (runtime, operator)


def summarise(collapsed: str, top: int = TOP) -> Summary:
    """Percent of all samples, from py-spy's collapsed-stack text."""
    packages: Counter[str] = Counter()
    self_counts: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        leaf, package = frames[-1]
        self_counts[leaf] += n
        packages[package] += n
        for name in {name for name, pkg in frames if pkg in (OWN["runtime"], OWN["operator"])}:
            ours[name] += n
    if total == 0:
        raise RuntimeError("py-spy recorded no samples")

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100 * n / total) for name, n in c.most_common(top)]

    return Summary(total, pct(packages), pct(self_counts), pct(ours))


def _table(header: tuple[str, str], rows: list[tuple[str, float]]) -> list[str]:
    out = [f"| {header[0]} | % of samples |", "|---|---:|"]
    return out + [f"| `{name}` | {share:.1f} |" for name, share in rows]


def profile_http(target: h.Target, connections: int, out_dir: Path) -> str:
    """Markdown: the profile of ``target``'s server at ``connections``; raw stacks to out_dir."""
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-profile-") as tmp:
        data_dir = Path(tmp)
        h.prepare(data_dir)
        return profile_server(target, connections, out_dir, data_dir)


def profile_server(target: h.Target, connections: int, out_dir: Path, data_dir: Path) -> str:
    """:func:`profile_http` of a server whose ``data_dir`` the caller prepared."""
    server_pin, _ = h.pinning() or ([], [])
    raw = out_dir / f"profile-{target.name}-{connections}conn.collapsed"
    script = data_dir / "load.lua"
    script.write_text(h.lua_script(target))
    with h.server(target.server, server_pin, data_dir) as (url, pid):
        rps = sample(url, pid, target, connections, raw, script)
    intro = (
        f"`py-spy record --nonblocking -r {RATE_HZ}` on the `{target.label}` server for "
        f"{SECONDS} s under `wrk` at {connections} connections ({rps:,.0f} req/s while "
        "sampled)"
    )
    return describe(intro, raw)


def sample(
    url: str, pid: int, target: h.Target, connections: int, raw: Path, script: Path
) -> float:
    """py-spy ``raw`` stacks of the server ``pid`` at ``url`` under ``wrk`` running ``script``
    at ``connections``; the req/s while sampled."""
    wrk = h.ensure_wrk()
    _, wrk_pin = h.pinning() or ([], [])
    h.check_target(url, target)
    h.run_wrk(wrk, wrk_pin, url, script, connections, 2)
    spy = subprocess.Popen(
        [
            py_spy(),
            "record",
            "--nonblocking",
            "-r",
            str(RATE_HZ),
            "-d",
            str(SECONDS),
            "-f",
            "raw",
            "-o",
            str(raw),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    run = h.run_wrk(wrk, wrk_pin, url, script, connections, SECONDS)
    _, err = spy.communicate(timeout=SECONDS + 30)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")
    return run.rps


def describe(intro: str, raw: Path) -> str:
    """Markdown tables of the collapsed stacks in ``raw`` (linked beside the report)."""
    summary = summarise(raw.read_text())
    lines = [
        f"{intro}: {summary.samples:,} samples, every thread. Raw collapsed stacks: "
        f"[{raw.name}](benchmarks/{raw.name}) (feed them to any flame-graph tool).",
        "",
        "Where the CPU was (self time by package):",
        "",
        *_table(("package", ""), summary.by_package),
        "",
        "Hottest functions (self time):",
        "",
        *_table(("function", ""), summary.by_self),
        "",
        "Our own code (kubebots) on the stack (inclusive):",
        "",
        *_table(("function", ""), summary.ours),
    ]
    return "\n".join(lines)
