"""HTTP throughput and latency under ``wrk``: our chat routes, a bare FastAPI app, LiteLLM.

Each target runs in its own server process pinned to CPU :data:`SERVER_CPU` with ``taskset``;
``wrk`` (one thread) is pinned to CPU :data:`WRK_CPU` and talks to it over loopback. Per server:
one request through httpx (:func:`check_target`), a :data:`WARMUP_S` s warm-up run at
:data:`WARMUP_CONNECTIONS` connections, then :data:`REPEATS` runs of :data:`DURATION_S` s (the
one with the median req/s is reported) per entry of :data:`CONNECTIONS`, then the VmRSS summed
over the server's process tree (every server here is one process: uvicorn with one worker runs
in the process that starts it; the tree is summed in case one forks, and
:attr:`TargetResult.rss_processes` says how many were counted). A Lua
script (a temp file) sends the POST bodies, rotating over :data:`CONVERSATIONS` conversation ids
(the echo bot stores every turn; its memory window of 20 messages keeps the per-turn cost flat),
and its ``done()`` callback prints the summary and percentiles as one JSON line. Each run also
records the CPU wrk and the server used (a fraction of one core): a load generator below 100 %
is not the bottleneck.

Targets (:data:`TARGETS`):

* :data:`WRK_CEILING`: an asyncio ``Protocol`` that answers without parsing
  (:mod:`bench._http_apps`, ``ceiling``): what wrk can drive at all, here;
* :data:`BARE` / :data:`BARE_V1`: bare FastAPI parsing the chat / OpenAI body into a pydantic
  model and returning a constant: the ceiling references of :data:`CHAT` and :data:`CHAT_AUTH`
  / of :data:`COMPLETIONS` (each target's :attr:`Target.reference`);
* ours: :data:`CHAT`, :data:`CHAT_AUTH`, :data:`COMPLETIONS` (echo bot, SQLite config store in
  a temp directory, removed afterwards);
* :data:`LITELLM`: the LiteLLM proxy (:mod:`bench.litellm`), one worker, mock upstream, no
  database, the same OpenAI body as :data:`COMPLETIONS`. It needs ``KUBEBOTS_BENCH_LITELLM``
  and fails loudly before any load without it; :data:`TARGETS_WITHOUT_LITELLM` skips it.

Every server's log is checked afterwards: one that grew by a byte per request or more (a
request log) fails the run, as it would make the figures unfair. Every server is killed on
the way out, error or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import httpx

from kubebots.runtime.configstore import DEFAULT_TABLE_PREFIX, open_config_store

from . import litellm
from ._http_apps import API_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = (1, 16, 64)
DURATION_S = 5
REPEATS = 3  # runs per connection count; the one with the median req/s is reported
WARMUP_S = 3
WARMUP_CONNECTIONS = 16
CONVERSATIONS = 64
THROUGHPUT_GOAL = 0.5  # ours / bare requests per second, at every connection count
P99_ADDED_GOAL_MS = 5.0  # ours p99 - bare p99 ...
P99_CONNECTIONS = 16  # ... at this many connections
P99_GOAL_MS = 20.0  # ours p99 at P99_CONNECTIONS, absolute
LITELLM_THROUGHPUT_GOAL = 20.0  # ours / LiteLLM requests per second, at every connection count
LITELLM_RSS_GOAL = 0.25  # ours / LiteLLM server VmRSS after the run
SERVER_CPU = 0
WRK_CPU = 1
READY_TIMEOUT_S = 30
READY_PATH = "/readyz"
WRK_JSON_PREFIX = "WRK_JSON "
WRK_TIMEOUT_S = 10  # wrk's default (2 s) drops LiteLLM's slowest replies at 64 connections
MESSAGE = "Hello! Could you tell me how the weather looks for tomorrow's trip?"
ECHO_REPLY = "echo: " + MESSAGE  # what the echo bot answers; LiteLLM's mock_response too
BOT_ID = "default:echo"
CHAT_PATH = f"/bots/{BOT_ID}/chat"
COMPLETIONS_PATH = "/v1/chat/completions"
ECHO_SPEC = {
    "llm": {"provider": "echo"},
    "systemPrompt": "echo bot",
    "conversationStorage": {"backend": "memory"},
}
CLK_TCK = os.sysconf("SC_CLK_TCK")

Role = Literal["ours", "bare", "peer", "ceiling"]


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    server: str  # a KIND of bench._http_apps, or bench.litellm.KIND
    path: str
    api_key: str | None = None
    reference: str = "bare"  # the name of the bare target it is compared with
    role: Role = "ours"
    conversations: str = "bench"  # the chat route's conversation ids: <this>-0 .. -63

    def bodies(self) -> list[str]:
        if self.path == COMPLETIONS_PATH:
            body = {"model": BOT_ID, "messages": [{"role": "user", "content": MESSAGE}]}
            return [json.dumps(body)]
        return [
            json.dumps({"message": MESSAGE, "conversation_id": f"{self.conversations}-{i}"})
            for i in range(CONVERSATIONS)
        ]


WRK_CEILING = Target("wrk-ceiling", "wrk ceiling", "ceiling", CHAT_PATH, role="ceiling")
BARE = Target("bare", "bare FastAPI", "bare", CHAT_PATH, role="bare")
BARE_V1 = Target(
    "bare-v1", "bare FastAPI /v1", "bare", COMPLETIONS_PATH, reference="bare-v1", role="bare"
)
CHAT = Target("chat", "chat, auth off", "ours", CHAT_PATH)
CHAT_AUTH = Target("chat-auth", "chat, auth on", "ours-auth", CHAT_PATH, API_KEY)
COMPLETIONS = Target(
    "completions", "/v1/chat/completions", "ours", COMPLETIONS_PATH, reference="bare-v1"
)
LITELLM = Target(
    "litellm",
    "LiteLLM proxy /v1",
    litellm.KIND,
    COMPLETIONS_PATH,
    reference="bare-v1",
    role="peer",
)
TARGETS = (WRK_CEILING, BARE, CHAT, CHAT_AUTH, BARE_V1, COMPLETIONS, LITELLM)
TARGETS_WITHOUT_LITELLM = tuple(t for t in TARGETS if t is not LITELLM)
OURS = tuple(t for t in TARGETS if t.role == "ours")


@dataclass(frozen=True)
class WrkRun:
    connections: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    wrk_cpu: float  # CPU wrk used, in cores (1.0 = its core saturated)
    server_cpu: float  # CPU the server's process tree used, in cores
    all_rps: tuple[float, ...] = ()  # req/s of every repeat, the reported run among them

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s


@dataclass(frozen=True)
class TargetResult:
    target: Target
    runs: dict[int, WrkRun]
    rss_kib: int  # VmRSS after the runs, summed over the server's process tree
    rss_processes: int = 1  # how many processes that sum covers
    stack: str = ""  # the server stack, e.g. "uvicorn 0.54.0, h11 + asyncio"
    log_bytes: int = 0  # what the server logged during the load


@dataclass(frozen=True)
class HttpBench:
    load_generator: str  # wrk's version banner
    pinned: bool
    results: dict[str, TargetResult]
    load_before: float  # 1-minute load average: others' work on the 2 CPUs skews every figure
    load_after: float
    litellm_version: str | None = None  # None when LITELLM was not among the targets

    @property
    def wrk_version(self) -> str:
        return self.load_generator

    def reference(self, name: str) -> str:
        """The name of the bare target ``name`` is compared with."""
        return self.results[name].target.reference

    def stack(self, name: str) -> str:
        return self.results[name].stack

    def rps(self, name: str, connections: int) -> float:
        return self.results[name].runs[connections].rps

    def p99_ms(self, name: str, connections: int = P99_CONNECTIONS) -> float:
        return self.results[name].runs[connections].p99_ms

    def throughput_ratio(self, name: str, connections: int) -> float:
        """``name``'s req/s over its bare reference's (:attr:`Target.reference`)."""
        return self.rps(name, connections) / self.rps(self.reference(name), connections)

    def p99_added_ms(self, name: str, connections: int = P99_CONNECTIONS) -> float:
        """``name``'s p99 minus its bare reference's."""
        return self.p99_ms(name, connections) - self.p99_ms(self.reference(name), connections)

    def litellm_throughput_ratio(self, name: str, connections: int) -> float:
        """``name``'s req/s over LiteLLM's (goal >= :data:`LITELLM_THROUGHPUT_GOAL`)."""
        return self.rps(name, connections) / self.rps(LITELLM.name, connections)

    def litellm_rss_ratio(self, name: str) -> float:
        """``name``'s server VmRSS over LiteLLM's (goal <= :data:`LITELLM_RSS_GOAL`)."""
        return self.results[name].rss_kib / self.results[LITELLM.name].rss_kib

    def ceiling_ratio(self, name: str, connections: int) -> float:
        """``name``'s req/s over the wrk ceiling's: how far every target is from wrk's limit."""
        return self.rps(name, connections) / self.rps(WRK_CEILING.name, connections)


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


def children_cpu_s() -> float:
    """CPU seconds of every child this process has waited for (wrk, after ``run``)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    pin: list[str],
    url: str,
    script: Path,
    connections: int,
    seconds: int,
    server_pid: int | None = None,
) -> WrkRun:
    load = ["-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s"]
    cmd = [*pin, wrk, *load, "--latency", "-s", str(script)]
    wrk_before = children_cpu_s()
    server_before = tree_cpu_s(server_pid) if server_pid else 0.0
    started = time.monotonic()
    done = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    wall = time.monotonic() - started
    server_cpu = (tree_cpu_s(server_pid) - server_before) / wall if server_pid else 0.0
    wrk_cpu = (children_cpu_s() - wrk_before) / wall
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
        wrk_cpu=wrk_cpu,
        server_cpu=server_cpu,
    )


# -- processes -------------------------------------------------------------------------------


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


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3, state, comes first)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(proc_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"VmRSS not found for pid {pid}")


def tree_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS summed over ``pid``'s process tree in KiB, number of processes)."""
    pids = process_tree(pid)
    return sum(vm_rss_kib(p) for p in pids), len(pids)


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s process tree (all threads)."""
    ticks = 0
    for p in process_tree(pid):
        fields = proc_stat(p)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLK_TCK


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- servers ---------------------------------------------------------------------------------


async def seed_store(
    url: str, spec: dict[str, Any] | None = None, prefix: str = DEFAULT_TABLE_PREFIX
) -> None:
    """Put the echo bot (``spec``, default :data:`ECHO_SPEC`) into the store at ``url``."""
    store = await open_config_store(url, prefix=prefix)
    try:
        await store.put(BOT_ID, spec or ECHO_SPEC, generation=1, uid="bench-http")
    finally:
        await store.close()


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str] | None  # None: inherit ours
    ready_path: str
    ready_timeout_s: float


def prepare(data_dir: Path) -> None:
    """Seed the SQLite config store our servers read (``data_dir/store.db``) with the echo bot."""
    asyncio.run(seed_store(f"sqlite:{data_dir / 'store.db'}"))


def log_file(data_dir: Path, kind: str, url: str) -> Path:
    """Where :func:`server` writes the output of the ``kind`` server at ``url``."""
    return data_dir / f"{kind}-{url.rsplit(':', 1)[1]}.log"


def launch(kind: str, port: int, data_dir: Path) -> Launch:
    if kind in litellm.KINDS:
        config = data_dir / f"litellm-{port}.yaml"
        production = kind == litellm.PRODUCTION_KIND
        config.write_text(litellm.config_yaml(BOT_ID, ECHO_REPLY, production=production))
        return Launch(
            litellm.command(litellm.litellm_executable(), config, port),
            litellm.environment(os.environ),
            litellm.READY_PATH,
            litellm.READY_TIMEOUT_S,
        )
    argv = [sys.executable, "-m", "bench._http_apps", kind, str(port), str(data_dir)]
    return Launch(argv, None, READY_PATH, READY_TIMEOUT_S)


@contextmanager
def server(kind: str, pin: list[str], data_dir: Path) -> Iterator[tuple[str, int]]:
    """A running server of ``kind``: yields (base URL, pid); always killed on exit. Its output
    goes to :func:`log_file`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = launch(kind, port, data_dir)
    log_path = log_file(data_dir, kind, url)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*pin, *spec.argv],
            cwd=PROJECT_ROOT,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(url + spec.ready_path, proc, log_path, spec.ready_timeout_s)
        yield url, proc.pid
    finally:
        stop(proc)


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout_s} s:\n{log_path.read_text()[-2000:]}")


def check_target(url: str, target: Target) -> None:
    """One request through httpx before the load: it must answer 200 with the expected JSON."""
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    reply = httpx.post(url + target.path, content=target.bodies()[0], headers=headers, timeout=10)
    key = "choices" if target.path == COMPLETIONS_PATH else "response"
    if reply.status_code != 200 or key not in reply.json():
        raise RuntimeError(f"{target.name}: {reply.status_code} {reply.text[:500]}")


def stack_of(target: Target, litellm_info: litellm.LiteLLMInfo | None) -> str:
    if target.server in litellm.KINDS:
        assert litellm_info is not None
        return litellm_info.stack
    if target.server == "ceiling":
        return "asyncio Protocol, no HTTP parser, no framework"
    import uvicorn

    return f"uvicorn {uvicorn.__version__}, {server_stack()}"


# -- the benchmark ---------------------------------------------------------------------------


def median_run(runs: list[WrkRun]) -> WrkRun:
    """The run with the median req/s (its p50/p99 with it), knowing every repeat's req/s."""
    ordered = sorted(runs, key=lambda r: r.rps)
    return replace(ordered[len(ordered) // 2], all_rps=tuple(r.rps for r in runs))


def run_target(
    target: Target, wrk: str, pins: tuple[list[str], list[str]], data_dir: Path, stack: str = ""
) -> TargetResult:
    server_pin, wrk_pin = pins
    script = data_dir / f"{target.name}.lua"
    script.write_text(lua_script(target))
    with server(target.server, server_pin, data_dir) as (url, pid):
        log_path = log_file(data_dir, target.server, url)
        check_target(url, target)
        log_before = log_path.stat().st_size
        run_wrk(wrk, wrk_pin, url, script, WARMUP_CONNECTIONS, WARMUP_S)
        runs = {
            c: median_run(
                [run_wrk(wrk, wrk_pin, url, script, c, DURATION_S, pid) for _ in range(REPEATS)]
            )
            for c in CONNECTIONS
        }
        rss, processes = tree_rss_kib(pid)
        log_bytes = log_path.stat().st_size - log_before
    requests = sum(r.requests for r in runs.values())
    if log_bytes >= requests:
        raise RuntimeError(
            f"{target.name}: the server logged {log_bytes} bytes over {requests} requests (a "
            f"request log?), which skews its figures:\n{log_path.read_text()[-2000:]}"
        )
    return TargetResult(target, runs, rss, processes, stack, log_bytes)


def http_load(targets: tuple[Target, ...] = TARGETS) -> HttpBench:
    """Every target in ``targets``, in order; LiteLLM's executable is checked before any load."""
    info = None
    if any(t.server == litellm.KIND for t in targets):
        info = litellm.describe(litellm.litellm_executable())
    wrk = ensure_wrk()
    pins = pinning()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-http-") as tmp:
        data_dir = Path(tmp)
        prepare(data_dir)
        results = {
            t.name: run_target(t, wrk, pins or ([], []), data_dir, stack_of(t, info))
            for t in targets
        }
    return HttpBench(
        wrk_version(wrk),
        pins is not None,
        results,
        load_before,
        os.getloadavg()[0],
        info.version if info else None,
    )


def server_stack() -> str:
    """What uvicorn's ``auto`` settings pick here: HTTP parser and event loop."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http} + {loop}"
