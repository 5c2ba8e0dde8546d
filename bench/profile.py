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


def _frame(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function + file name
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def summarise(
    collapsed: str, top: int = TOP
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, top self %, top inclusive %) from py-spy's collapsed-stack text."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        self_counts[frames[-1]] += n
        for name in set(frames):
            incl_counts[name] += n
    if total == 0:
        raise RuntimeError("py-spy recorded no samples")

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100 * n / total) for name, n in c.most_common(top)]

    return total, pct(self_counts), pct(incl_counts)


def profile_http(target: h.Target, connections: int, out_dir: Path) -> str:
    """Markdown: the profile of ``target``'s server at ``connections``; raw stacks to out_dir."""
    wrk = h.ensure_wrk()
    server_pin, wrk_pin = h.pinning() or ([], [])
    raw = out_dir / f"profile-{target.name}-{connections}conn.collapsed"
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-profile-") as tmp:
        data_dir = Path(tmp)
        h.prepare(data_dir)
        script = data_dir / "load.lua"
        script.write_text(h.lua_script(target))
        with h.server(target.server, server_pin, data_dir) as (url, pid):
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
    total, by_self, by_incl = summarise(raw.read_text())
    lines = [
        f"`py-spy record --nonblocking -r {RATE_HZ}` on the `{target.label}` server for "
        f"{SECONDS} s under `wrk` at {connections} connections ({run.rps:,.0f} req/s while "
        f"sampled, {total:,} samples). Raw collapsed stacks: "
        f"[{raw.name}](benchmarks/{raw.name}) (feed them to any flame-graph tool).",
        "",
        "| self % | function (running) | | inclusive % | function (on the stack) |",
        "|---:|---|---|---:|---|",
    ]
    for (s_name, s_pct), (i_name, i_pct) in zip(by_self, by_incl, strict=False):
        lines.append(f"| {s_pct:.1f} | `{s_name}` | | {i_pct:.1f} | `{i_name}` |")
    return "\n".join(lines)
