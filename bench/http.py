"""HTTP throughput and latency under ``wrk``: our chat routes against a bare FastAPI app.

Each target runs in its own server process (:mod:`bench._http_apps`: uvicorn, one worker, no
access log, log level warning) pinned to CPU 0 with ``taskset``; ``wrk`` (one thread) is pinned
to CPU 1 and talks to it over loopback. Per server: a :data:`WARMUP_S` s warm-up run at 16
connections, then one :data:`DURATION_S` s run per entry of :data:`CONNECTIONS`, then the
server's VmRSS. A Lua script (a temp file) sends the POST bodies, rotating over
:data:`CONVERSATIONS` conversation ids (the echo bot stores every turn; its memory window of 20
messages keeps the per-turn cost flat), and its ``done()`` callback prints the summary and
percentiles as one JSON line. The bare app is the ceiling reference: what uvicorn + FastAPI +
pydantic parsing cost with no work behind them. Every server is killed on the way out, error
or not; the SQLite config store lives in a temp directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from kubebots.runtime.store import open_config_store

from ._http_apps import API_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = (1, 16, 64)
DURATION_S = 8
WARMUP_S = 3
WARMUP_CONNECTIONS = 16
CONVERSATIONS = 64
THROUGHPUT_GOAL = 0.5  # ours / bare requests per second, at every connection count
P99_ADDED_GOAL_MS = 5.0  # ours p99 - bare p99 ...
P99_CONNECTIONS = 16  # ... at this many connections
SERVER_CPU = 0
WRK_CPU = 1
READY_TIMEOUT_S = 30
WRK_JSON_PREFIX = "WRK_JSON "
MESSAGE = "Hello! Could you tell me how the weather looks for tomorrow's trip?"
BOT_ID = "default:echo"
CHAT_PATH = f"/bots/{BOT_ID}/chat"
COMPLETIONS_PATH = "/v1/chat/completions"
ECHO_SPEC = {
    "llm": {"provider": "echo"},
    "systemPrompt": "echo bot",
    "conversationStorage": {"backend": "memory"},
}


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    server: str  # a KIND of bench._http_apps
    path: str
    api_key: str | None = None

    def bodies(self) -> list[str]:
        if self.path == COMPLETIONS_PATH:
            body = {"model": BOT_ID, "messages": [{"role": "user", "content": MESSAGE}]}
            return [json.dumps(body)]
        return [
            json.dumps({"message": MESSAGE, "conversation_id": f"bench-{i}"})
            for i in range(CONVERSATIONS)
        ]


BARE = Target("bare", "bare FastAPI", "bare", CHAT_PATH)
CHAT = Target("chat", "chat, auth off", "ours", CHAT_PATH)
CHAT_AUTH = Target("chat-auth", "chat, auth on", "ours-auth", CHAT_PATH, API_KEY)
COMPLETIONS = Target("completions", "/v1/chat/completions", "ours", COMPLETIONS_PATH)
TARGETS = (BARE, CHAT, CHAT_AUTH, COMPLETIONS)


@dataclass(frozen=True)
class WrkRun:
    connections: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s


@dataclass(frozen=True)
class TargetResult:
    target: Target
    runs: dict[int, WrkRun]
    rss_kib: int


@dataclass(frozen=True)
class HttpBench:
    load_generator: str
    pinned: bool
    results: dict[str, TargetResult]
    load_before: float  # 1-minute load average: others' work on the 2 CPUs skews every figure
    load_after: float

    def throughput_ratio(self, name: str, connections: int) -> float:
        return (
            self.results[name].runs[connections].rps / self.results[BARE.name].runs[connections].rps
        )

    def p99_added_ms(self, name: str, connections: int = P99_CONNECTIONS) -> float:
        return (
            self.results[name].runs[connections].p99_ms
            - self.results[BARE.name].runs[connections].p99_ms
        )


# -- wrk -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The path of ``wrk``; installed with ``apt-get install -y wrk`` if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("  wrk not found: running apt-get install -y wrk", flush=True)
    done = subprocess.run(
        ["apt-get", "install", "-y", "wrk"], capture_output=True, text=True, check=False
    )
    found = shutil.which("wrk")
    if done.returncode != 0 or not found:
        raise RuntimeError(
            f"wrk is required and `apt-get install -y wrk` failed (exit {done.returncode}):\n"
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return found


def wrk_version(wrk: str) -> str:
    """wrk's ``-v`` banner, e.g. ``wrk debian/4.1.0-3+b2 [epoll]`` (it exits non-zero)."""
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk (unknown version)"


def lua_string(text: str) -> str:
    if "]]" in text:
        raise ValueError("body may not contain ']]'")
    return f"[[{text}]]"


def lua_script(target: Target) -> str:
    headers = ['["Content-Type"] = "application/json"']
    if target.api_key:
        headers.append(f'["Authorization"] = {lua_string("Bearer " + target.api_key)}')
    bodies = ",\n  ".join(lua_string(b) for b in target.bodies())
    return f"""\
local path = {lua_string(target.path)}
local bodies = {{
  {bodies}
}}
local requests_ = {{}}
local n, i = 0, 0

function init(args)
  for k, body in ipairs(bodies) do
    requests_[k] = wrk.format("POST", path, {{{", ".join(headers)}}}, body)
  end
  n = #requests_
end

function request()
  i = i % n + 1
  return requests_[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{WRK_JSON_PREFIX}{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    wrk: str, pin: list[str], url: str, script: Path, connections: int, seconds: int
) -> WrkRun:
    cmd = [*pin, wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    done = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(WRK_JSON_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed (exit {done.returncode}): {' '.join(cmd)} {url}\n"
            f"{done.stdout.strip()}\n{done.stderr.strip()}"
        )
    s = json.loads(lines[-1].removeprefix(WRK_JSON_PREFIX))
    if s["status"]:
        raise RuntimeError(
            f"{s['status']} of {s['requests']} responses were not 2xx ({url}, "
            f"{connections} connections): the figures would be meaningless"
        )
    return WrkRun(
        connections=connections,
        requests=s["requests"],
        duration_s=s["duration_us"] / 1e6,
        p50_ms=s["p50_us"] / 1e3,
        p99_ms=s["p99_us"] / 1e3,
        socket_errors=s["connect"] + s["read"] + s["write"] + s["timeout"],
    )


# -- servers ---------------------------------------------------------------------------------


def pinning() -> tuple[list[str], list[str]] | None:
    """``taskset`` prefixes (server, wrk), or ``None`` when CPUs 0 and 1 are not both usable."""
    taskset = shutil.which("taskset")
    if taskset is None or not {SERVER_CPU, WRK_CPU} <= os.sched_getaffinity(0):
        return None
    return [taskset, "-c", str(SERVER_CPU)], [taskset, "-c", str(WRK_CPU)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"VmRSS not found for pid {pid}")


async def seed_store(url: str) -> None:
    store = await open_config_store(url)
    try:
        await store.put(BOT_ID, ECHO_SPEC, generation=1, uid="bench-http")
    finally:
        await store.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def server(kind: str, pin: list[str], data_dir: Path) -> Iterator[tuple[str, int]]:
    """A running server of ``kind``: yields (base URL, pid); always killed on exit."""
    port = free_port()
    log_path = data_dir / f"{kind}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "bench._http_apps", kind, str(port), str(data_dir)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, log_path)
        yield url, proc.pid
    finally:
        stop(proc)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server at {url} not ready in {READY_TIMEOUT_S} s")


def check_target(url: str, target: Target) -> None:
    """One request through httpx before the load: it must answer 200 with the expected JSON."""
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    reply = httpx.post(url + target.path, content=target.bodies()[0], headers=headers, timeout=10)
    key = "choices" if target.path == COMPLETIONS_PATH else "response"
    if reply.status_code != 200 or key not in reply.json():
        raise RuntimeError(f"{target.name}: {reply.status_code} {reply.text[:500]}")


# -- the benchmark ---------------------------------------------------------------------------


def run_target(
    target: Target, wrk: str, pins: tuple[list[str], list[str]], data_dir: Path
) -> TargetResult:
    server_pin, wrk_pin = pins
    script = data_dir / f"{target.name}.lua"
    script.write_text(lua_script(target))
    with server(target.server, server_pin, data_dir) as (url, pid):
        check_target(url, target)
        run_wrk(wrk, wrk_pin, url, script, WARMUP_CONNECTIONS, WARMUP_S)
        runs = {c: run_wrk(wrk, wrk_pin, url, script, c, DURATION_S) for c in CONNECTIONS}
        rss = vm_rss_kib(pid)
    return TargetResult(target, runs, rss)


def http_load(targets: tuple[Target, ...] = TARGETS) -> HttpBench:
    wrk = ensure_wrk()
    pins = pinning()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-http-") as tmp:
        data_dir = Path(tmp)
        asyncio.run(seed_store(f"sqlite:{data_dir / 'store.db'}"))
        results = {t.name: run_target(t, wrk, pins or ([], []), data_dir) for t in targets}
    return HttpBench(wrk_version(wrk), pins is not None, results, load_before, os.getloadavg()[0])


def server_stack() -> str:
    """What uvicorn's ``auto`` settings pick here: HTTP parser and event loop."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http} + {loop}"
