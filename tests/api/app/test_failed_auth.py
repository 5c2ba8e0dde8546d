"""Failed authentications are throttled per source address (issue 14.8): a script trying keys
gets 429 after a few a minute, before its key is even looked at; other addresses are served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from .conftest import HEADERS_A

CHAT = {"message": "hi", "conversation_id": "c1"}


def client(base: str, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=base, transport=transport, timeout=10)


def test_wrong_keys_from_one_address_are_throttled(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app(auth_failures_per_minute=5) as server:
        with client(server.url, "127.0.0.1") as attacker:
            wrong = {"Authorization": "Bearer wrong-key-0123456789"}
            codes = [
                attacker.post("/bots/default:echo/chat", json=CHAT, headers=wrong).status_code
                for _ in range(4)
            ]
            codes.append(attacker.post("/bots/default:echo/chat", json=CHAT).status_code)
            assert codes == [401] * 5
            refused = attacker.post("/bots/default:echo/chat", json=CHAT, headers=wrong)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"] == "RateLimitError"
            # A right key from the throttled address waits too: the key is not tried.
            right = attacker.post("/bots/default:echo/chat", json=CHAT, headers=HEADERS_A)
            assert right.status_code == 429
        with client(server.url, "127.0.0.2") as someone_else:
            ok = someone_else.post("/bots/default:echo/chat", json=CHAT, headers=HEADERS_A)
            assert ok.status_code == 200, ok.text
            metrics = someone_else.get("/metrics", headers=HEADERS_A).text
    assert 'kubebots_rate_limited_requests_total{scope="auth-failures"} 2.0' in metrics


def test_successful_requests_count_nothing(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app(auth_failures_per_minute=2) as server, client(server.url, "127.0.0.1") as c:
        for _ in range(10):
            assert (
                c.post("/bots/default:echo/chat", json=CHAT, headers=HEADERS_A).status_code == 200
            )
