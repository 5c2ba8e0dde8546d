"""What the client sees when a store fails matches what happened (issue 14.1): a turn that was
answered and stored is a 200 even if charging its tokens fails (a 503 would make the client
retry and store the turn twice); a failing component is named in the 503, with Retry-After."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kubebots.runtime.api.app import RuntimeSettings, create_app
from kubebots.runtime.errors import RateLimitStorageError
from kubebots.runtime.ratelimit import MemoryRateLimiter
from kubebots.runtime.testing import ThreadedServer

from .conftest import put_bots, wait_ready

KEY = "key-budget-0123456789"
KEYS = {"clients": [{"clientId": "metered", "keys": [KEY], "tokensPerMinute": 100000}]}
HEADERS = {"Authorization": f"Bearer {KEY}"}


class LimiterWhoseDatabaseFails(MemoryRateLimiter):
    """A real limiter whose storage fails on demand, for checks (acquire) or charges (record)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_checks = False
        self.fail_charges = False

    async def acquire(self, client_id: str, **kwargs: Any) -> Any:
        if self.fail_checks:
            raise RateLimitStorageError("PostgreSQL rate limiter failed: connection refused")
        return await super().acquire(client_id, **kwargs)

    async def record(self, client_id: str, **kwargs: Any) -> None:
        if self.fail_charges:
            raise RateLimitStorageError("PostgreSQL rate limiter failed: connection refused")
        await super().record(client_id, **kwargs)


def serve(tmp_path: Path, limiter: LimiterWhoseDatabaseFails) -> Callable[[], ThreadedServer]:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {"default:echo": {"llm": {"provider": "echo"}}})
    settings = RuntimeSettings(store=url, auth=True, api_keys=json.dumps(KEYS), replica_id="r1")
    return lambda: ThreadedServer(create_app(settings, env={}, limiter=limiter))


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
        metrics = httpx.get(f"{server.url}/metrics", headers=HEADERS).text
        assert "kubebots_uncharged_turns_total 1.0" in metrics


def test_a_failing_limiter_is_named_in_a_503_with_retry_after(tmp_path: Path) -> None:
    limiter = LimiterWhoseDatabaseFails()
    with serve(tmp_path, limiter)() as server:
        wait_ready(server.url)
        limiter.fail_checks = True
        turn = {"message": "hi", "conversation_id": "c2"}
        refused = httpx.post(f"{server.url}/bots/default:echo/chat", json=turn, headers=HEADERS)
        assert refused.status_code == 503
        assert refused.json()["message"] == "the rate limiter is unavailable"
        assert refused.headers["retry-after"] == "1"
        assert "connection refused" not in refused.text  # the detail stays in the log
