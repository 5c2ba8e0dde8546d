"""One runtime process over a config store of many bots (lazy): startup, memory, first chat.

:func:`runtime_at_scale` seeds a config store (PostgreSQL at :data:`POSTGRES_URL` under a
fresh table prefix, dropped afterwards; a PostgreSQL that is down fails the run)
with echo bots keeping conversations in memory, ids ``bench-scale:bot-NNNNN``. It measures:

* seeding: wall time of the ``put`` calls (one by one, as the operator writes) and bots/s;
* for ``kubebots serve`` (this venv's console script; auth off, log level WARNING; on CPU 0
  when CPUs 0 and 1 are usable, the client staying in this process): seconds from spawn to
  ``/healthz`` = 200 (imports, app, store open: uvicorn listens only after the lifespan; the
  sync may already hold the event loop then) and to ``/readyz`` = 200 (first store sync done:
  list + validation of every entry), then VmRSS (KiB, /proc/PID/status) and loaded bots and
  builds from ``/metrics`` (lazy: both 0);
* the same for a store of 1 bot (the baseline; after an unmeasured warm-up spawn);
* at ``bots``: the first chat (builds the bot) to :data:`SAMPLED` distinct bots spread over
  the range, one by one over one keep-alive httpx client (p50/p99/max ms), then a second chat
  to each (bot cached), then VmRSS and loaded bots / builds again.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.schema import bot_id_for

from .http import free_port, pinning, stop, vm_rss_kib
from .stats import median, percentile

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
NAMESPACE = "bench-scale"
SAMPLED = 200
READY_TIMEOUT_S = 120
KUBEBOTS = Path(sys.executable).with_name("kubebots")  # the console script of this venv
SPEC = {
    "llm": {"provider": "echo"},
    "systemPrompt": "echo bot",
    "conversationStorage": {"backend": "memory"},
}


@dataclass(frozen=True)
class Startup:
    healthz_s: float  # spawn -> /healthz 200
    readyz_s: float  # spawn -> /readyz 200 (first store sync done)
    rss_kib: int  # VmRSS right after ready
    loaded: int  # kubebots_active_bots after ready
    builds: int  # kubebots_bot_builds_total after ready


@dataclass(frozen=True)
class ScaleResult:
    bots: int
    pinned: bool  # server on CPU 0
    seed_s: float
    seed_bots_per_s: float
    at_scale: Startup
    baseline: Startup  # the same with 1 bot in the store
    sampled: int  # distinct bots chatted with
    first_chat_p50_ms: float
    first_chat_p99_ms: float
    first_chat_max_ms: float
    cached_chat_p50_ms: float
    cached_chat_p99_ms: float
    cached_chat_max_ms: float
    rss_after_chats_kib: int
    loaded_after_chats: int
    builds_after_chats: int

    @property
    def kib_per_store_entry(self) -> float:
        """Ready RSS growth over the baseline, per extra bot in the store."""
        return (self.at_scale.rss_kib - self.baseline.rss_kib) / max(1, self.bots - 1)

    @property
    def lazy(self) -> bool:
        """Nothing built at start; exactly one build per sampled bot, none on the second chat."""
        start = self.at_scale.loaded == self.at_scale.builds == 0
        return start and self.loaded_after_chats == self.builds_after_chats == self.sampled


def bot_id(i: int) -> str:
    return bot_id_for(NAMESPACE, f"bot-{i:05d}")


async def seed(url: str, prefix: str, ids: range) -> tuple[float, int]:
    """``put`` the bots ``ids``; return (seconds spent in the puts, the last revision)."""
    store = await open_config_store(url, prefix=prefix)
    try:
        started, revision = time.perf_counter(), 0
        for i in ids:
            revision = await store.put(bot_id(i), SPEC, generation=1, uid=f"bench-{i}")
        return time.perf_counter() - started, revision
    finally:
        await store.close()


def drop_tables(prefix: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND left(tablename, length(%s)) = %s",
            (prefix, prefix),
        ).fetchall()
        for (table,) in rows:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))


def metric(client: httpx.Client, name: str) -> int:
    text = client.get("/metrics").raise_for_status().text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"metric {name} missing from /metrics")
    return int(float(found.group(1)))


def wait_for(client: httpx.Client, path: str, proc: subprocess.Popen[bytes], log: Path) -> float:
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if client.get(path).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{path} not 200 within {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


@contextmanager
def serve(
    url: str, prefix: str, tmp: Path, revision: int
) -> Iterator[tuple[httpx.Client, int, Startup]]:
    """Spawn the runtime; yield (client, pid, its startup figures); always stop it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOTS_")}
    env.update(
        KUBEBOTS_STORE=url,
        KUBEBOTS_TABLE_PREFIX=prefix,
        KUBEBOTS_AUTH="false",
        KUBEBOTS_LOG_LEVEL="WARNING",
        KUBEBOTS_DATA_DIR=str(tmp),
        KUBEBOTS_REPLICA_ID=f"bench-scale-{port}",
    )
    pins = pinning()
    pin = pins[0] if pins else []  # the server's taskset prefix (CPU 0)
    cmd = [*pin, str(KUBEBOTS), "serve", "--port", str(port)]
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            healthz = wait_for(client, "/healthz", proc, log) - started
            readyz = wait_for(client, "/readyz", proc, log) - started
            synced = client.get("/readyz").json()["synced_revision"]
            if synced < revision:
                raise RuntimeError(f"ready at revision {synced}, store is at {revision}")
            startup = Startup(
                healthz,
                readyz,
                vm_rss_kib(proc.pid),
                metric(client, "kubebots_active_bots"),
                metric(client, "kubebots_bot_builds_total"),
            )
            yield client, proc.pid, startup
    finally:
        stop(proc)


def chat_ms(client: httpx.Client, bot: str) -> float:
    body = {"message": "Hello at scale", "conversation_id": "c1"}
    started = time.perf_counter()
    reply = client.post(f"/bots/{bot}/chat", json=body)
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status_code != 200 or reply.json().get("bot_id") != bot:
        raise RuntimeError(f"chat to {bot}: {reply.status_code} {reply.text[:300]}")
    return elapsed


def runtime_at_scale(bots: int = 10_000) -> ScaleResult:
    """Seed ``bots`` bots, then measure one runtime over them (see the module docstring)."""
    if bots < 2:
        raise ValueError("bots must be >= 2 (the baseline is 1 bot)")
    prefix = f"benchscale{secrets.token_hex(4)}_"
    url = POSTGRES_URL
    with tempfile.TemporaryDirectory(prefix="kubebots-scale-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            _, revision = asyncio.run(seed(url, prefix, range(1)))
            with serve(url, prefix, tmp, revision):
                pass  # warm-up: page cache, .pyc files
            with serve(url, prefix, tmp, revision) as (_, _, baseline):
                pass
            seed_s, revision = asyncio.run(seed(url, prefix, range(1, bots)))
            sampled = [bot_id(i * bots // min(SAMPLED, bots)) for i in range(min(SAMPLED, bots))]
            with serve(url, prefix, tmp, revision) as (client, pid, at_scale):
                first = [chat_ms(client, b) for b in sampled]
                cached = [chat_ms(client, b) for b in sampled]
                rss_after = vm_rss_kib(pid)
                loaded = metric(client, "kubebots_active_bots")
                builds = metric(client, "kubebots_bot_builds_total")
        finally:
            drop_tables(prefix)
    return ScaleResult(
        bots=bots,
        pinned=pinning() is not None,
        seed_s=seed_s,
        seed_bots_per_s=(bots - 1) / seed_s,
        at_scale=at_scale,
        baseline=baseline,
        sampled=len(sampled),
        first_chat_p50_ms=median(first),
        first_chat_p99_ms=percentile(first, 99),
        first_chat_max_ms=max(first),
        cached_chat_p50_ms=median(cached),
        cached_chat_p99_ms=percentile(cached, 99),
        cached_chat_max_ms=max(cached),
        rss_after_chats_kib=rss_after,
        loaded_after_chats=loaded,
        builds_after_chats=builds,
    )
