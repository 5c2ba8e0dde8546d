"""Token budgets and request limits through the app on the real Redis limiter (issue 15):
every turn is charged exactly once, streams included, and a limiter outage is handled by the
``rate_limit_on_outage`` policy."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubebots.runtime.api.app import RuntimeSettings, create_app
from kubebots.runtime.ratelimit import Charge, Limit, MemoryRateLimiter, RedisRateLimiter
from kubebots.runtime.testing import ThreadedServer

from .conftest import put_bots, running_app, wait_ready
from .helpers import assert_error

REDIS_URL = "redis://127.0.0.1:6379/0"
HUGE = 10**9  # a budget no test spends: what is left of it tells what was charged


def sqlite_bots(directory: Path, prefix: str = "kubebots_") -> str:
    """A SQLite config store in ``directory`` holding the echo bot ``default:echo``."""
    url = f"sqlite:{directory / 'store.db'}"
    put_bots(url, prefix, {"default:echo": {"llm": {"provider": "echo"}}})
    return url


def key(name: str) -> str:
    return f"key-{name}-0123456789abcdef"


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key(name)}"}


def charged(prefix: str, client_id: str) -> int:
    """The tokens charged to ``client_id`` in the last minute, read from Redis by a limiter of
    our own (another replica, as far as Redis can tell)."""

    async def read() -> int:
        limiter = await RedisRateLimiter.open(REDIS_URL, prefix=prefix)
        try:
            decision = await limiter.admit(client_id, [Limit("tokens", HUGE, cost=0)])
        finally:
            await limiter.close()
        return HUGE - decision.remaining

    return asyncio.run(read())


def stream_usage(response: httpx.Response) -> int:
    """The total_tokens of an OpenAI stream's usage chunk."""
    chunks = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    return int(usage["total_tokens"])


@pytest.mark.redis
def test_every_turn_is_charged_exactly_once_streams_included(tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    client = f"metered-{uuid.uuid4().hex[:6]}"
    keys = {"clients": [{"clientId": client, "keys": [key("m")], "tokensPerMinute": HUGE}]}
    url = sqlite_bots(tmp_path, prefix)
    with (
        running_app(url, keys=keys, rate_limit_backend="redis", prefix=prefix) as server,
        httpx.Client(base_url=server.url, headers=headers("m"), timeout=30) as c,
    ):
        message = "please count these five words"
        turn = c.post("/bots/default:echo/chat", json={"message": message, "conversation_id": "a"})
        assert turn.status_code == 200, turn.text
        one_turn = turn.json()["usage"]["total_tokens"]
        # The same first turn, streamed in a conversation of its own, costs the same.
        streamed = c.post(
            "/bots/default:echo/chat/stream", json={"message": message, "conversation_id": "b"}
        )
        assert streamed.status_code == 200 and "event: done" in streamed.text
        completion = {"model": "default:echo", "messages": [{"role": "user", "content": message}]}
        v1 = c.post("/v1/chat/completions", json=completion)
        assert v1.status_code == 200, v1.text
        v1_stream = c.post(
            "/v1/chat/completions",
            json={**completion, "stream": True, "stream_options": {"include_usage": True}},
        )
        stored_stream = c.post(
            "/v1/chat/completions",
            json={**completion, "stream": True, "stream_options": {"include_usage": True}},
            headers={"X-Conversation-Id": "c"},
        )
        expected = (
            2 * one_turn
            + v1.json()["usage"]["total_tokens"]
            + stream_usage(v1_stream)
            + stream_usage(stored_stream)
        )
        # Charges leave after the replies: wait for them, then make sure none comes twice.
        deadline = time.monotonic() + 10
        while charged(prefix, client) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert charged(prefix, client) == expected


class SlowChargesLimiter(MemoryRateLimiter):
    """A real limiter whose charges take 300 ms to land (a slow network to its storage)."""

    async def record_many(self, charges: Sequence[Charge]) -> None:
        await asyncio.sleep(0.3)
        await super().record_many(charges)


def test_a_sequential_client_is_refused_right_after_its_budget_is_spent(tmp_path: Path) -> None:
    """Charges are sent after the reply, yet the next request of the same client is checked
    against them, however slowly they land: a budget smaller than one turn admits one turn."""
    keys = {"clients": [{"clientId": "small", "keys": [key("s")], "tokensPerMinute": 5}]}
    settings = RuntimeSettings(
        store=sqlite_bots(tmp_path), api_keys=json.dumps(keys), replica_id="r1"
    )
    app = create_app(settings, env={}, limiter=SlowChargesLimiter())
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        wait_ready(server.url)
        body = {"message": "one two three four five six", "conversation_id": "c"}
        first = c.post("/bots/default:echo/chat", json=body, headers=headers("s"))
        assert first.status_code == 200, first.text
        started = time.monotonic()
        refused = c.post("/bots/default:echo/chat", json=body, headers=headers("s"))
        assert_error(refused, 429, "RateLimitError")
        assert "token budget" in refused.json()["message"]
        assert time.monotonic() - started >= 0.1  # it did wait for the charge to land


def dead_redis_url() -> str:
    """A Redis URL where nothing listens (a port just freed), with a password that must never
    be quoted."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://:never-quoted-pw@127.0.0.1:{port}/0"


def outage_app(tmp_path: Path, policy: str) -> Any:
    keys = {"clients": [{"clientId": "rpm2", "keys": [key("r")], "requestsPerMinute": 2}]}
    return running_app(
        sqlite_bots(tmp_path),
        keys=keys,
        rate_limit_backend="redis",
        redis_url=dead_redis_url(),
        rate_limit_on_outage=policy,
    )


def turns(server_url: str, count: int) -> list[httpx.Response]:
    with httpx.Client(base_url=server_url, headers=headers("r"), timeout=30) as c:
        return [
            c.post("/bots/default:echo/chat", json={"message": "hi", "conversation_id": f"c{i}"})
            for i in range(count)
        ]


def test_outage_policy_closed_refuses_with_503(tmp_path: Path) -> None:
    with outage_app(tmp_path, "closed") as server:
        started = time.monotonic()
        (refused,) = turns(server.url, 1)
        assert time.monotonic() - started < 5  # fails fast, no hanging on the dead server
        assert_error(refused, 503, "ServiceUnavailableError")
        assert refused.json()["message"] == "the rate limiter is unavailable"
        assert refused.headers["retry-after"] == "1"
        assert "never-quoted-pw" not in refused.text


def test_outage_policy_open_admits_everything_and_counts_it(tmp_path: Path) -> None:
    with outage_app(tmp_path, "open") as server:
        assert [r.status_code for r in turns(server.url, 4)] == [200] * 4
        metrics = httpx.get(f"{server.url}/metrics", headers=headers("r")).text
        assert 'kubebots_rate_limit_degraded_requests_total{policy="open"} 4.0' in metrics
        assert "never-quoted-pw" not in metrics


def test_outage_policy_local_keeps_the_limits_in_memory(tmp_path: Path) -> None:
    with outage_app(tmp_path, "local") as server:
        first, second, third = turns(server.url, 3)
        assert (first.status_code, second.status_code) == (200, 200)
        assert_error(third, 429, "RateLimitError")
        assert int(third.headers["retry-after"]) >= 1
        metrics = httpx.get(f"{server.url}/metrics", headers=headers("r")).text
        assert 'kubebots_rate_limit_degraded_requests_total{policy="local"} 3.0' in metrics
