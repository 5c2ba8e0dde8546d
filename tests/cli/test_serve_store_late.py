"""``kubebots serve`` started before its PostgreSQL (a quick start where every pod starts at once).

A real process against a PostgreSQL of the test's own (initialised, started later, stopped and
started again): the runtime stays up, ``/healthz`` 200, ``/readyz`` 503 saying why (without the
password), and it becomes ready by itself once the database is up (config store and rate
limiter both connect on first use). After that, a database outage keeps it ready with its last
good configs, and ``/readyz`` says the store is down, then up again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from kubebots.runtime.configstore import open_config_store
from tests.private_postgres import PrivatePostgres

from .support import free_port, kubebots_exe

SECRET = "pw-never-in-readyz-7f3a"
BOT = {"llm": {"provider": "echo", "model": "echo-1"}, "systemPrompt": "You are terse."}
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float, log: Path) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


async def put_bot(url: str, bot_id: str) -> int:
    store = await open_config_store(url, prefix="late_")
    try:
        return await store.put(bot_id, BOT, generation=1, uid="uid-late")
    finally:
        await store.close()


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


def test_serve_starts_before_postgres_and_becomes_ready_by_itself(
    tmp_path: Path, pg: PrivatePostgres
) -> None:
    exe = kubebots_exe()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    env |= {
        "KUBEBOTS_STORE": pg.url(password=SECRET),
        "KUBEBOTS_TABLE_PREFIX": "late_",
        "KUBEBOTS_AUTH": "false",
        "KUBEBOTS_HOST": "127.0.0.1",
        "KUBEBOTS_PORT": str(port),
        "KUBEBOTS_HEARTBEAT_INTERVAL": "0.5",
        # limits on: the PostgreSQL rate limiter must start without its database too
        "KUBEBOTS_REQUESTS_PER_MINUTE": "1000",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "serve", "--examples", "/nonexistent"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        healthy = wait_for(lambda: get(f"{base}/healthz"), "/healthz", 30, log)
        assert healthy.status_code == 200
        # Several seconds without the database: alive, unready, and saying why.
        for _ in range(3):
            ready = get(f"{base}/readyz")
            assert ready is not None and ready.status_code == 503, ready and ready.text
            message = ready.json()["message"]
            assert message.startswith("not ready: the first config store sync has not finished")
            assert "config store unavailable: PostgreSQL connection failed" in message
            assert SECRET not in ready.text
            assert get(f"{base}/healthz") is not None
            assert proc.poll() is None
            time.sleep(1)
        chat = {"message": "hi", "conversation_id": "c1"}
        refused = httpx.post(f"{base}/bots/default:late/chat", json=chat, timeout=10)
        assert refused.status_code == 503 and SECRET not in refused.text

        pg.start()
        asyncio.run(put_bot(pg.url(), "default:late"))

        def is_ready() -> dict[str, Any] | None:
            r = get(f"{base}/readyz")
            return r.json() if r is not None and r.status_code == 200 else None

        body = wait_for(is_ready, "/readyz 200 after PostgreSQL started", 30, log)
        assert body["status"] == "ready" and body["config_store"] == "ok"
        reply = httpx.post(f"{base}/bots/default:late/chat", json=chat, timeout=10)
        assert reply.status_code == 200, reply.text
        assert reply.json()["response"] == "echo: hi"

        # The database goes away: still ready, still serving the loaded bot, and saying so.
        pg.stop()

        def store_down() -> dict[str, Any] | None:
            body = is_ready()
            return body if body and body["config_store"].startswith("unavailable:") else None

        down = wait_for(store_down, "/readyz naming the store outage", 20, log)
        assert SECRET not in str(down)
        # (chats need the PostgreSQL rate limiter meanwhile: it refuses them, 503, fail-closed)

        pg.start()
        wait_for(lambda: (b := is_ready()) and b["config_store"] == "ok", "store ok again", 30, log)
        again = httpx.post(f"{base}/bots/default:late/chat", json=chat, timeout=10)
        assert again.status_code == 200 and again.json()["response"] == "echo: hi", again.text
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
