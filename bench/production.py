"""The production configuration under ``wrk`` (issue 15): what a PostgreSQL store, API keys,
per-client limits and the shared rate limiter cost, replica scaling, and the limiter's exactness.

Every configuration (:data:`CONFIGS`) is the same binary (``create_app`` + uvicorn, one worker:
:mod:`bench._http_apps` ``configured``) with other :class:`RuntimeSettings`, serving the echo
bot on the chat route, run like :mod:`bench.http` runs its targets (pinned, warm-up, repeats):

* ``embedded``: SQLite config store + SQLite conversations (a file in the temp data dir), auth
  off: the embedded default;
* ``postgres``: PostgreSQL store + PostgreSQL conversations, auth off;
* ``auth``: the same with API keys, no limits;
* ``production-*``: the same plus ``requestsPerMinute`` and ``tokensPerMinute`` on the client
  (:data:`RPM`, :data:`TPM`: never reached during a run, so what is measured is their cost), the
  limiter in Redis, PostgreSQL, or in memory (one replica only: the "limiter off" reference);
* ``production-rollout``: ``production-redis`` with its Bot under a 50% canary rollout (issue
  19): the store also holds the candidate entry (:func:`seed_rollout`), so every turn is routed
  (the conversation's last message read, the hash, then the candidate or the stable bot) and
  counted. Its conversations are its own (``rollout-0`` .. ``-63``): conversations that others
  had started before the rollout would all stay on the stable generation.

PostgreSQL is the shared server (:data:`POSTGRES_URL`): each run works in a schema of its own
(:class:`Scratch`, every connection's ``search_path``) with a random table prefix, dropped
afterwards; Redis keys get a random prefix where the limiter takes one (never flushed).

:func:`replica_scaling` runs one tenant through 1 and 2 replicas of the production
configuration, each replica in a cgroup of :data:`REPLICA_CORES` CPU (:mod:`bench.cgroup`), one
``wrk`` per replica; :func:`limiter_exactness` drives :data:`EXACT_REPLICAS` limiter processes
(:mod:`bench._limiter_load`) at :data:`OVERLOAD` times one tenant's limit and counts what they
admitted together.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id

from . import http as h
from . import litellm
from ._http_apps import SETTINGS_FILE
from .cgroup import cpu_quota

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
API_KEY = "bench-prod-key-5e1f0a9c3d7b2846"
CLIENT = "tenant"
RPM = 100_000_000  # never reached in a run: the point is what checking them costs
TPM = 10_000_000_000
CONNECTIONS = h.CONNECTIONS
P99_CONNECTIONS = 16
SHARE_GOAL = 60.0  # production req/s, % of the embedded default's (issue 15, goal 1)
P99_GOAL_MS = 25.0
SCALING_GOAL = 1.7  # 2 replicas / 1 replica admitted req/s (issue 15, goal 2)
REPLICA_CORES = 0.4
SCALING_CONNECTIONS = 16  # in total, split evenly over the replicas' wrk processes
EXACT_REPLICAS = 3
EXACT_LIMIT = 200
EXACT_WINDOW_S = 5.0
EXACT_DURATION_S = 15.0
OVERLOAD = 1.1  # offered load / limit
ROLLOUT_WEIGHT = 50  # the canary's share of new conversations in the rollout configuration
EXACT_SHARE_GOAL = 95.0  # admitted, % of the limit at that load
VS_LITELLM_GOAL = 10.0  # ours / LiteLLM req/s
RSS_VS_LITELLM_GOAL = 4.0  # LiteLLM / ours VmRSS

Store = Literal["sqlite", "postgres"]
Limiter = Literal["memory", "postgres", "redis"]


@dataclass(frozen=True)
class Scratch:
    """Where one run keeps its data on the shared servers: a PostgreSQL schema of its own (set
    as every connection's ``search_path``), a table prefix and a Redis key prefix."""

    schema: str
    prefix: str

    @classmethod
    def new(cls) -> Scratch:
        tag = secrets.token_hex(4)
        return cls(f"kubebots_bench_{tag}", f"kbb{tag}_")

    @property
    def url(self) -> str:
        return f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"


@contextmanager
def scratch() -> Iterator[Scratch]:
    """A fresh :class:`Scratch`; its schema (every table in it) is dropped on the way out."""
    s = Scratch.new()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(s.schema)))
    try:
        yield s
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(s.schema)))


@dataclass(frozen=True)
class ServerConfig:
    name: str
    label: str
    store: Store
    auth: bool = False
    limits: bool = False
    limiter: Limiter = "memory"
    #: the candidate's share (%) of new conversations; 0: the Bot is not under rollout
    rollout_weight: int = 0
    conversations: str = "bench"  # the chat route's conversation ids: <this>-0 .. -63

    def settings(self, data_dir: Path, where: Scratch) -> dict[str, Any]:
        """The :class:`RuntimeSettings` fields of this configuration."""
        fields: dict[str, Any] = {
            "data_dir": str(data_dir),
            "log_level": "WARNING",
            "auth": self.auth,
            "rate_limit_backend": self.limiter,
            "table_prefix": where.prefix,
        }
        if self.store == "postgres":
            fields["store"] = where.url
        else:
            fields["store"] = f"sqlite:{data_dir / 'store.db'}"
        if self.limiter == "redis":
            fields["redis_url"] = REDIS_URL
        if self.auth:
            fields["api_keys"] = json.dumps(keys(limits=self.limits))
        return fields

    def spec(self, where: Scratch) -> dict[str, Any]:
        """The echo bot, its conversations in the configuration's kind of database."""
        storage: dict[str, Any] = {"backend": "sqlite", "path": "conversations.db"}
        if self.store == "postgres":
            storage = {"backend": "postgres", "url": where.url}
        spec: dict[str, Any] = {
            "llm": {"provider": "echo"},
            "systemPrompt": "echo bot",
            "conversationStorage": storage,
        }
        if self.rollout_weight:
            spec["rollout"] = {"steps": [{"weight": self.rollout_weight, "durationSeconds": 3600}]}
        return spec

    def candidate_spec(self, where: Scratch) -> dict[str, Any]:
        """The spec change under rollout: the same Bot with another system prompt."""
        return self.spec(where) | {"systemPrompt": "echo bot, candidate"}

    def store_url(self, data_dir: Path, where: Scratch) -> str:
        return str(self.settings(data_dir, where)["store"])

    def target(self, path: str = h.CHAT_PATH) -> h.Target:
        """The target of this configuration on ``path``; other routes than chat are named
        after theirs (``production-redis-v1``, ``production, limiter redis /v1``)."""
        v1 = path == h.COMPLETIONS_PATH
        return h.Target(
            self.name + ("-v1" if v1 else ""),
            self.label + (" /v1" if v1 else ""),
            "configured",
            path,
            API_KEY if self.auth else None,
            conversations=self.conversations,
        )


def keys(*, limits: bool) -> dict[str, Any]:
    """The API keys file: one client (the tenant), with :data:`RPM`/:data:`TPM` or no limits."""
    client: dict[str, Any] = {"clientId": CLIENT, "keys": [API_KEY]}
    if limits:
        client |= {"requestsPerMinute": RPM, "tokensPerMinute": TPM}
    return {"clients": [client]}


EMBEDDED = ServerConfig("embedded", "embedded (SQLite store + conversations, auth off)", "sqlite")
POSTGRES = ServerConfig("postgres", "PostgreSQL store + conversations, auth off", "postgres")
AUTH = ServerConfig("auth", "PostgreSQL + API keys, no limits", "postgres", auth=True)
PRODUCTION_REDIS = ServerConfig(
    "production-redis", "production, limiter redis", "postgres", True, True, "redis"
)
PRODUCTION_POSTGRES = ServerConfig(
    "production-postgres", "production, limiter postgres", "postgres", True, True, "postgres"
)
PRODUCTION_MEMORY = ServerConfig(
    "production-memory", "production, limiter in memory", "postgres", True, True, "memory"
)
PRODUCTION_ROLLOUT = replace(
    PRODUCTION_REDIS,
    name="production-rollout",
    label=f"production, rollout {ROLLOUT_WEIGHT}%",
    rollout_weight=ROLLOUT_WEIGHT,
    conversations="rollout",
)
CONFIGS = (
    EMBEDDED,
    POSTGRES,
    AUTH,
    PRODUCTION_REDIS,
    PRODUCTION_ROLLOUT,
    PRODUCTION_POSTGRES,
    PRODUCTION_MEMORY,
)
PRODUCTION = PRODUCTION_REDIS  # the configuration the goals are about
SCALED = (PRODUCTION_REDIS, PRODUCTION_POSTGRES)
LITELLM_PRODUCTION = h.Target(
    "litellm-production",
    "LiteLLM proxy /v1, production",
    litellm.PRODUCTION_KIND,
    h.COMPLETIONS_PATH,
    litellm.MASTER_KEY,
    reference="bare-v1",
    role="peer",
)


def prepare(config: ServerConfig, root: Path, where: Scratch) -> Path:
    """A data dir for ``config`` under ``root``: its settings file and its seeded store."""
    data_dir = root / config.name
    data_dir.mkdir()
    (data_dir / SETTINGS_FILE).write_text(json.dumps(config.settings(data_dir, where)))
    url = config.store_url(data_dir, where)
    asyncio.run(h.seed_store(url, config.spec(where), where.prefix))
    if config.rollout_weight:
        asyncio.run(seed_rollout(config, url, where))
    return data_dir


SEED_UID = "bench-http"  # the Bot's uid as bench.http.seed_store writes it


def rollout_state(weight: int, started_at: float) -> RolloutState:
    """The first step of a canary at ``weight`` % from generation 1, as the operator writes it."""
    return RolloutState("Progressing", 1, 0, weight, False, 1, started_at)


async def seed_rollout(config: ServerConfig, url: str, where: Scratch) -> None:
    """Put the candidate entry of :data:`bench.http.BOT_ID` beside its stable one (generation
    1, :func:`bench.http.seed_store`): generation 2 of the same Bot (same uid), its
    :func:`rollout_state` in the ``rollout`` annotation."""
    store = await open_config_store(url, prefix=where.prefix)
    try:
        state = rollout_state(config.rollout_weight, time.time())
        await store.put(
            candidate_id(h.BOT_ID),
            config.candidate_spec(where),
            generation=2,
            uid=SEED_UID,
            annotations={ROLLOUT_ANNOTATION: state.to_annotation()},
        )
    finally:
        await store.close()


def conversations_by_generation(where: Scratch, conversations: str) -> dict[int, int]:
    """How many of the conversations ``<conversations>-*`` each generation answered (by the
    generation tag on their stored messages): proof that a rollout run really split them."""
    with psycopg.connect(where.url) as conn:
        rows = conn.execute(
            "SELECT generation, count(DISTINCT conversation_id) FROM kubebots_messages"
            " WHERE conversation_id LIKE %s AND generation IS NOT NULL GROUP BY generation",
            (f"{conversations}-%",),
        ).fetchall()
    return {int(generation): int(count) for generation, count in rows}


# -- replica scaling -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    config: ServerConfig
    rps: dict[int, float]  # replicas -> admitted req/s (the median of the repeats)
    all_rps: dict[int, tuple[float, ...]]
    server_cpu: dict[int, float]  # replicas -> CPU of all replicas, in cores
    p99_ms: dict[int, float]  # the worst replica's p99 in the reported run
    hierarchy: str = ""

    @property
    def ratio(self) -> float:
        return self.rps[2] / self.rps[1]


def _total(runs: Sequence[h.WrkRun]) -> h.WrkRun:
    """The wrk runs of one concurrent round as one: requests and CPU summed, worst p99."""
    return h.WrkRun(
        connections=sum(r.connections for r in runs),
        requests=sum(r.requests for r in runs),
        duration_s=max(r.duration_s for r in runs),
        p50_ms=max(r.p50_ms for r in runs),
        p99_ms=max(r.p99_ms for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        wrk_cpu=sum(r.wrk_cpu for r in runs),
        server_cpu=sum(r.server_cpu for r in runs),
    )


def scaled_round(
    wrk: str,
    wrk_pin: list[str],
    servers: Sequence[tuple[str, int]],
    scripts: Sequence[Path],
    seconds: int,
) -> h.WrkRun:
    """One ``wrk`` per replica (its own script), all at once, :data:`SCALING_CONNECTIONS` split
    evenly."""
    each = SCALING_CONNECTIONS // len(servers)
    with ThreadPoolExecutor(len(servers)) as pool:
        runs = list(
            pool.map(
                lambda s: h.run_wrk(wrk, wrk_pin, s[0][0], s[1], each, seconds, s[0][1]),
                zip(servers, scripts, strict=True),
            )
        )
    return _total(runs)


def replica_scaling(
    config: ServerConfig, wrk: str, pins: tuple[list[str], list[str]], data_dir: Path
) -> Scaling:
    server_pin, wrk_pin = pins
    # Each replica's wrk has conversations of its own: a conversation's turns come one at a
    # time in real use, whereas two wrk processes rotating the same ids would send turns of one
    # conversation to both replicas at once, measuring conflicting turns instead of the limiter.
    target = config.target()
    scripts = []
    for n in range(2):
        script = data_dir / f"{target.name}-scaling-{n}.lua"
        script.write_text(h.lua_script(replace(target, conversations=f"replica{n}")))
        scripts.append(script)
    rps: dict[int, float] = {}
    all_rps: dict[int, tuple[float, ...]] = {}
    cpu: dict[int, float] = {}
    p99: dict[int, float] = {}
    version = ""
    for replicas in (1, 2):
        name = f"kubebots-bench-{os.getpid()}-{config.name}-{replicas}"
        with cpu_quota(name, REPLICA_CORES) as quota, ExitStack() as servers:
            version = quota.hierarchy.version
            running = []
            for n in range(replicas):
                url, pid = servers.enter_context(h.server("configured", server_pin, data_dir))
                quota.add(n, pid)
                h.check_target(url, target)
                running.append((url, pid))
            scaled_round(wrk, wrk_pin, running, scripts[:replicas], h.WARMUP_S)
            best = h.median_run(
                [
                    scaled_round(wrk, wrk_pin, running, scripts[:replicas], h.DURATION_S)
                    for _ in range(h.REPEATS)
                ]
            )
        rps[replicas], all_rps[replicas] = best.rps, best.all_rps
        cpu[replicas], p99[replicas] = best.server_cpu, best.p99_ms
    return Scaling(config, rps, all_rps, cpu, p99, version)


# -- limiter exactness -----------------------------------------------------------------------


@dataclass(frozen=True)
class Exactness:
    backend: str
    calls: list[tuple[float, float, bool]]  # (sent, received, allowed), every replica's
    limit: int = EXACT_LIMIT
    window_s: float = EXACT_WINDOW_S
    duration_s: float = EXACT_DURATION_S

    @property
    def admitted(self) -> int:
        return sum(1 for _, _, ok in self.calls if ok)

    @property
    def max_latency_s(self) -> float:
        return max((got - sent for sent, got, _ in self.calls), default=0.0)

    @property
    def max_in_window(self) -> int:
        return max_in_window(
            [sent for sent, _, ok in self.calls if ok], self.window_s - self.max_latency_s
        )

    @property
    def share(self) -> float:
        """Admitted, in % of what the limit allows over the run."""
        return admitted_share(self.admitted, self.limit, self.window_s, self.duration_s)


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most ``times`` in any half-open interval ``[t, t + window_s)``.

    Fed the send times of admitted calls with ``window_s`` = the limiter's window minus the
    slowest call, it never overcounts: two calls sent within that span were decided (between
    send and receive) within the window."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def admitted_share(admitted: int, limit: int, window_s: float, duration_s: float) -> float:
    """``admitted`` in % of ``limit`` per ``window_s`` over ``duration_s``."""
    return 100 * admitted / (limit * duration_s / window_s)


def limiter_job(backend: str, where: Scratch, client: str, replica: int, start_at: float) -> str:
    """The JSON job of one :mod:`bench._limiter_load` process (its share of the offered load)."""
    rate = OVERLOAD * EXACT_LIMIT / EXACT_WINDOW_S / EXACT_REPLICAS  # calls/s per replica
    interval = 1 / rate
    job = {
        "backend": backend,
        "url": where.url if backend == "postgres" else REDIS_URL,
        "prefix": where.prefix,
        "client": client,
        "limit": EXACT_LIMIT,
        "window_s": EXACT_WINDOW_S,
        "start_at": start_at,
        "offset_s": interval * replica / EXACT_REPLICAS,
        "interval_s": interval,
        "duration_s": EXACT_DURATION_S,
    }
    return json.dumps(job)


def limiter_exactness(backend: str, where: Scratch) -> Exactness:
    client = f"exact-{secrets.token_hex(4)}"
    start_at = time.time() + 3  # every process imported and connected by then
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._limiter_load",
                limiter_job(backend, where, client, n, start_at),
            ],
            cwd=h.PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(EXACT_REPLICAS)
    ]
    calls: list[tuple[float, float, bool]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=EXACT_DURATION_S + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"bench._limiter_load ({backend}) failed:\n{err[-2000:]}")
        calls += [(float(s), float(r), bool(ok)) for s, r, ok in json.loads(out)]
    return Exactness(backend, calls)


# -- what one turn waits for ------------------------------------------------------------------

WAIT_CALLS = 500  # calls per measured wait (after 50 of warm-up)


@dataclass(frozen=True)
class TurnWaits:
    """Medians (ms) of the round trips a production chat turn waits for, measured alone from
    one process (no HTTP): what bounds one connection's req/s."""

    admit_ms: float  # RedisRateLimiter.admit: token budget + request slot, one script call
    append_ms: float  # PostgreSQL conversation append (one statement; its commit waits for
    # the WAL flush, as every durable commit does)
    append_no_flush_ms: float  # the same with synchronous_commit=off: the flush's share


async def _median_ms(call: Callable[[int], Awaitable[object]]) -> float:
    for i in range(50):
        await call(i)
    times = []
    for i in range(WAIT_CALLS):
        started = time.perf_counter()
        await call(50 + i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _turn_waits(where: Scratch) -> TurnWaits:
    from kubebots.runtime.conversations import ConversationKey
    from kubebots.runtime.conversations.postgres import PostgresConversationStore
    from kubebots.runtime.ratelimit import Limit, RedisRateLimiter

    limiter = await RedisRateLimiter.open(REDIS_URL, prefix=where.prefix)
    limits = [Limit("tokens", TPM, cost=0), Limit("requests", RPM)]
    no_flush = where.url + "%20-csynchronous_commit%3Doff"
    stores = [
        await PostgresConversationStore.open(url, table=f"{where.prefix}waits{n}")
        for n, url in enumerate((where.url, no_flush))
    ]
    turn = [("user", "a question of a few words"), ("assistant", "an answer of a few words")]
    try:
        admit = await _median_ms(lambda i: limiter.admit(f"waits-{where.prefix}", limits))
        appends = [
            await _median_ms(
                lambda i, store=store: store.append(
                    ConversationKey("default:echo", "tenant", f"c{i % 64}"), turn
                )
            )
            for store in stores
        ]
    finally:
        await limiter.close()
        for store in stores:
            await store.close()
    return TurnWaits(admit, appends[0], appends[1])


def turn_waits(where: Scratch) -> TurnWaits:
    return asyncio.run(_turn_waits(where))


# -- the whole run ---------------------------------------------------------------------------


@dataclass
class ProductionBench:
    load_generator: str
    pinned: bool
    results: dict[str, h.TargetResult] = field(default_factory=dict)
    scaling: dict[str, Scaling] = field(default_factory=dict)
    exactness: dict[str, Exactness] = field(default_factory=dict)
    litellm_version: str | None = None
    waits: TurnWaits | None = None
    #: the rollout configuration's conversations per generation that answered them
    rollout_split: dict[int, int] = field(default_factory=dict)
    load_before: float = 0.0
    load_after: float = 0.0

    def rps(self, name: str, connections: int) -> float:
        return self.results[name].runs[connections].rps


def run(with_litellm: bool = True) -> ProductionBench:
    """Every configuration, the /v1 route of the production one, LiteLLM in production
    (``with_litellm``), replica scaling and the limiter's exactness."""
    info = litellm.describe(litellm.litellm_executable()) if with_litellm else None
    wrk = h.ensure_wrk()
    pins = h.pinning()
    bench = ProductionBench(h.wrk_version(wrk), pins is not None, load_before=os.getloadavg()[0])
    bench.litellm_version = info.version if info else None
    pin = pins or ([], [])
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-prod-") as tmp, scratch() as where:
        root = Path(tmp)
        dirs = {c.name: prepare(c, root, where) for c in CONFIGS}
        stack = h.stack_of(h.CHAT, None)
        for config in CONFIGS:
            target = config.target()
            bench.results[target.name] = h.run_target(target, wrk, pin, dirs[config.name], stack)
        bench.rollout_split = rollout_split(where)
        v1 = PRODUCTION.target(h.COMPLETIONS_PATH)
        bench.results[v1.name] = h.run_target(v1, wrk, pin, dirs[PRODUCTION.name], stack)
        if info is not None:
            peer = LITELLM_PRODUCTION
            bench.results[peer.name] = h.run_target(peer, wrk, pin, root, info.stack)
        for config in SCALED:
            bench.scaling[config.name] = replica_scaling(config, wrk, pin, dirs[config.name])
        for backend in ("redis", "postgres"):
            bench.exactness[backend] = limiter_exactness(backend, where)
        bench.waits = turn_waits(where)
    bench.load_after = os.getloadavg()[0]
    return bench


def rollout_split(where: Scratch) -> dict[int, int]:
    """:func:`conversations_by_generation` of :data:`PRODUCTION_ROLLOUT`'s run; fails when the
    candidate answered none of them (the figures would then be of no rollout at all)."""
    split = conversations_by_generation(where, PRODUCTION_ROLLOUT.conversations)
    if not split.get(2):
        raise RuntimeError(f"{PRODUCTION_ROLLOUT.name}: the candidate answered nothing: {split}")
    return split


def profile(config: ServerConfig, connections: int, out_dir: Path) -> str:
    """Markdown: the py-spy profile of ``config``'s server under ``wrk`` (:mod:`bench.profile`)."""
    from .profile import profile_server

    with tempfile.TemporaryDirectory(prefix="kubebots-bench-prod-") as tmp, scratch() as where:
        data_dir = prepare(config, Path(tmp), where)
        return profile_server(config.target(), connections, out_dir, data_dir)


def config_of_figure(name: str) -> ServerConfig | None:
    """The configuration a figure of the production section is about (its label starts it)."""
    return next((c for c in CONFIGS if name.startswith(c.label)), None)
