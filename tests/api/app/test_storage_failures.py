"""What the client sees when a store fails matches what happened (issue 14.1): a turn that was
answered and stored is a 200 even if charging its tokens fails (a 503 would make the client
retry and store the turn twice); a failing component is named in the 503, with Retry-After."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from kubebots.runtime.api.app import RuntimeSettings, create_app
from kubebots.runtime.errors import RateLimitStorageError
from kubebots.runtime.ratelimit import Charge, Decision, Limit, MemoryRateLimiter
from kubebots.runtime.testing import ThreadedServer
from tests.private_postgres import PrivatePostgres

from .conftest import put_bots, wait_ready

KEY = "key-budget-0123456789"
KEYS = {"clients": [{"clientId": "metered", "keys": [KEY], "tokensPerMinute": 100000}]}
HEADERS = {"Authorization": f"Bearer {KEY}"}


class LimiterWhoseDatabaseFails(MemoryRateLimiter):
    """A real limiter whose storage fails on demand, for checks (admit) or charges
    (record_many)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_checks = False
        self.fail_charges = False

    async def admit(self, client_id: str, limits: Sequence[Limit]) -> Decision:
        if self.fail_checks:
            raise RateLimitStorageError("PostgreSQL rate limiter failed: connection refused")
        return await super().admit(client_id, limits)

    async def record_many(self, charges: Sequence[Charge]) -> None:
        if self.fail_charges:
            raise RateLimitStorageError("PostgreSQL rate limiter failed: connection refused")
        await super().record_many(charges)


def serve(
    tmp_path: Path, limiter: LimiterWhoseDatabaseFails, **settings: Any
) -> Callable[[], ThreadedServer]:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {"default:echo": {"llm": {"provider": "echo"}}})
    config = RuntimeSettings(
        store=url, auth=True, api_keys=json.dumps(KEYS), replica_id="r1", **settings
    )
    return lambda: ThreadedServer(create_app(config, env={}, limiter=limiter))


def wait_for_metric(url: str, line: str) -> str:
    """The metrics page once it holds ``line`` (charges are sent after the reply)."""
    deadline = time.monotonic() + 10
    while line not in (metrics := httpx.get(f"{url}/metrics", headers=HEADERS).text):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.02)
    return metrics


def test_a_failed_charge_keeps_the_stored_turn_a_success(tmp_path: Path) -> None:
    limiter = LimiterWhoseDatabaseFails()
    with serve(tmp_path, limiter)() as server:
        wait_ready(server.url)
        limiter.fail_charges = True
        turn = {"message": "count me once", "conversation_id": "c1"}
        done = httpx.post(f"{server.url}/bots/default:echo/chat", json=turn, headers=HEADERS)
        assert done.status_code == 200, done.text
        assert done.json()["response"] == "echo: count me once"
        history = httpx.get(
            f"{server.url}/bots/default:echo/conversations/c1", headers=HEADERS
        ).json()
        assert [m["content"] for m in history["messages"]] == [
            "count me once",
            "echo: count me once",
        ]
        wait_for_metric(server.url, "kubebots_uncharged_turns_total 1.0")


def test_a_failing_limiter_is_named_in_a_503_with_retry_after(tmp_path: Path) -> None:
    """Policy ``closed``: no request passes without the shared limiter's verdict."""
    limiter = LimiterWhoseDatabaseFails()
    with serve(tmp_path, limiter, rate_limit_on_outage="closed")() as server:
        wait_ready(server.url)
        limiter.fail_checks = True
        turn = {"message": "hi", "conversation_id": "c2"}
        refused = httpx.post(f"{server.url}/bots/default:echo/chat", json=turn, headers=HEADERS)
        assert refused.status_code == 503
        assert refused.json()["message"] == "the rate limiter is unavailable"
        assert refused.headers["retry-after"] == "1"
        assert "connection refused" not in refused.text  # the detail stays in the log


def test_a_conversation_database_outage_fails_fast_and_shows_in_readyz(tmp_path: Path) -> None:
    """(issue 14.5) A stored turn during the outage is a 503 with Retry-After within seconds
    (not the 10 s connect timeout); /readyz stays 200 (stateless turns are still served) and
    says the conversation database is unavailable, never quoting its password; all of it
    recovers by itself."""
    secret = "pw-readyz-never-quoted-4c2d"
    with PrivatePostgres() as pg:
        pg.start()
        url = f"sqlite:{tmp_path / 'store.db'}"
        bot = {
            "llm": {"provider": "echo"},
            "conversationStorage": {"backend": "postgres", "urlEnv": "DB_URL", "poolSize": 2},
        }
        put_bots(url, "kubebots_", {"default:pg": bot})
        settings = RuntimeSettings(store=url, auth=False, replica_id="r1")
        app = create_app(settings, env={"DB_URL": pg.url(password=secret)})
        with ThreadedServer(app) as server:
            wait_ready(server.url)
            chat = f"{server.url}/bots/default:pg/chat"
            turn = {"message": "stored", "conversation_id": "c1"}
            assert httpx.post(chat, json=turn, timeout=30).status_code == 200
            assert httpx.get(f"{server.url}/readyz").json()["conversations"] == "ok"
            pg.stop()
            started = time.monotonic()
            down = httpx.post(chat, json=turn, timeout=30)
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert time.monotonic() - started < 5
            assert down.json()["message"] == "conversation storage is unavailable"
            ready = httpx.get(f"{server.url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["conversations"].startswith("unavailable: PostgreSQL")
            assert secret not in ready.text
            stateless = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={"model": "default:pg", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert stateless.status_code == 200
            pg.start()
            deadline = time.monotonic() + 30
            while httpx.post(chat, json=turn, timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.2)
            assert httpx.get(f"{server.url}/readyz").json()["conversations"] == "ok"
