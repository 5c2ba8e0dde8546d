"""The chat API over real HTTP: routes, auth, errors, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from .conftest import HEADERS_A, HEADERS_B


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "detail", "timestamp"}
    assert body["error"] == error
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
    return body


def test_chat_round_trip_and_conversation_routes(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url, headers=HEADERS_A) as c:
        r = c.post("/bots/default:echo/chat", json={"message": "hi", "conversation_id": "c1"})
        assert r.status_code == 200, r.text
        assert r.json()["response"] == "echo: hi"
        assert r.json()["usage"]["total_tokens"] > 0
        assert r.headers["x-request-id"]
        conv = c.get("/bots/default:echo/conversations/c1").json()
        assert conv["client_id"] == "tenant-a"
        assert [m["content"] for m in conv["messages"]] == ["hi", "echo: hi"]
        assert c.get("/bots/default:echo/conversations").json()["conversations"] == ["c1"]
        assert c.delete("/bots/default:echo/conversations/c1").json()["deleted"] is True
        assert_error(c.get("/bots/default:echo/conversations/c1"), 404, "ConversationNotFoundError")


def test_sse_stream(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url, headers=HEADERS_A) as c:
        with c.stream(
            "POST",
            "/bots/default:gpt/chat/stream",
            json={"message": "stream me", "conversation_id": "s1"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        deltas = [json.loads(e[6:]).get("delta", "") for e in events]
        assert "".join(deltas) == "[fake-model] be brief | stream me"
        done = json.loads(events[-1][6:])
        assert done.pop("usage")["total_tokens"] > 0
        assert done == {"conversation_id": "s1", "bot_id": "default:gpt", "status": "completed"}


def test_authentication_and_client_identity(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url) as c:
        body = {"message": "hi", "conversation_id": "c"}
        r = c.post("/bots/default:echo/chat", json=body)
        assert_error(r, 401, "AuthenticationError")
        assert r.headers["www-authenticate"].lower().startswith("bearer")
        bad = {"Authorization": "Bearer nope-nope-nope"}
        assert_error(
            c.post("/bots/default:echo/chat", json=body, headers=bad), 401, "AuthenticationError"
        )
        spoof = {**body, "client_id": "tenant-b"}
        assert_error(
            c.post("/bots/default:echo/chat", json=spoof, headers=HEADERS_A),
            403,
            "PermissionDeniedError",
        )
        same = {**body, "client_id": "tenant-a"}
        assert c.post("/bots/default:echo/chat", json=same, headers=HEADERS_A).status_code == 200
        x_api_key = {"X-API-Key": "key-a-0123456789"}
        assert c.post("/bots/default:echo/chat", json=body, headers=x_api_key).status_code == 200


def test_allow_list_and_admin(sqlite_app: Callable[..., Any]) -> None:
    narrow = {"Authorization": "Bearer key-n-0123456789"}
    ops = {"Authorization": "Bearer key-ops-0123456789"}
    with sqlite_app() as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/bots", headers=narrow).json()["bots"] == ["default:echo"]
        assert_error(
            c.post(
                "/bots/default:gpt/chat",
                json={"message": "x", "conversation_id": "c"},
                headers=narrow,
            ),
            404,
            "BotNotFoundError",
        )
        models = c.get("/v1/models", headers=narrow).json()
        assert [m["id"] for m in models["data"]] == ["default:echo"]
        c.post(
            "/bots/default:echo/chat",
            json={"message": "x", "conversation_id": "c"},
            headers=HEADERS_A,
        )
        assert_error(
            c.delete("/bots/default:echo", headers=HEADERS_A), 403, "PermissionDeniedError"
        )
        assert c.delete("/bots/default:echo", headers=ops).json()["removed"] is True
        assert_error(c.delete("/bots/default:echo", headers=ops), 404, "BotNotFoundError")


def test_bots_routes(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url, headers=HEADERS_B) as c:
        listing = c.get("/bots").json()
        assert listing["bots"] == ["default:echo", "default:gpt"] and listing["count"] == 2
        info = c.get("/bots/default:gpt").json()
        assert info["model"] == "fake-model" and info["status"] == "available"
        assert info["generation"] == 1
        assert_error(c.get("/bots/default:nope"), 404, "BotNotFoundError")
        assert_error(
            c.post("/bots/default:nope/chat", json={"message": "x", "conversation_id": "c"}),
            404,
            "BotNotFoundError",
        )


def test_error_formats(sqlite_app: Callable[..., Any]) -> None:
    with (
        sqlite_app(max_body_bytes=2048) as server,
        httpx.Client(base_url=server.url, headers=HEADERS_A) as c,
    ):
        assert_error(c.get("/no/such/route"), 404, "NotFound")
        r = c.put("/bots")
        assert_error(r, 405, "MethodNotAllowed")
        body = assert_error(
            c.post("/bots/default:echo/chat", json={"conversation_id": "c"}), 422, "ValidationError"
        )
        assert "message" in json.dumps(body["detail"])
        assert_error(
            c.post("/bots/default:echo/chat", content=b"{not json"), 422, "ValidationError"
        )
        assert_error(
            c.post("/bots/default:echo/chat", json={"message": "x" * 5000, "conversation_id": "c"}),
            413,
            "PayloadTooLargeError",
        )
        too_long = {"message": "y" * 2001, "conversation_id": "c"}
        with httpx.Client(base_url=server.url, headers=HEADERS_A) as big:
            r = big.post("/bots/default:gpt/chat", json=too_long)
        assert r.status_code in (413, 422)
        assert_error(
            c.post("/bots/bad id!/chat", json={"message": "x", "conversation_id": "c"}),
            422,
            "ValidationError",
        )


def test_health_ready_metrics(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and ready["synced_revision"] >= 2
        c.post(
            "/bots/default:echo/chat",
            json={"message": "m", "conversation_id": "c"},
            headers=HEADERS_A,
        )
        text = c.get("/metrics").text
        for name in (
            "kubebots_http_requests_total",
            "kubebots_http_request_duration_seconds_bucket",
            "kubebots_active_bots 1.0",
            "kubebots_bot_reloads_total",
            "kubebots_store_synced_revision",
        ):
            assert name in text, name
        assert 'route="/bots/{bot_id}/chat"' in text


def test_auth_off_takes_client_from_the_body(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app(auth=False) as server, httpx.Client(base_url=server.url) as c:
        body = {"message": "a", "conversation_id": "c", "client_id": "x"}
        assert c.post("/bots/default:echo/chat", json=body).status_code == 200
        assert (
            c.get("/bots/default:echo/conversations/c", params={"client_id": "x"}).status_code
            == 200
        )
        assert_error(c.get("/bots/default:echo/conversations/c"), 404, "ConversationNotFoundError")


def test_chunked_body_over_the_limit_is_413(sqlite_app: Callable[..., Any]) -> None:
    def chunks() -> Any:
        yield b'{"message": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'", "conversation_id": "c"}'

    with (
        sqlite_app(max_body_bytes=2048) as server,
        httpx.Client(base_url=server.url, headers=HEADERS_A) as c,
    ):
        r = c.post(
            "/bots/default:echo/chat",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "PayloadTooLargeError")
        # the server goes on serving
        ok = c.post("/bots/default:echo/chat", json={"message": "after", "conversation_id": "c"})
        assert ok.status_code == 200


def test_conversation_ids_with_slashes_and_huge_offsets(sqlite_app: Callable[..., Any]) -> None:
    with sqlite_app() as server, httpx.Client(base_url=server.url, headers=HEADERS_A) as c:
        c.post("/bots/default:echo/chat", json={"message": "x", "conversation_id": "a/b"})
        got = c.get("/bots/default:echo/conversations/a/b")
        assert got.status_code == 200 and got.json()["conversation_id"] == "a/b"
        assert_error(
            c.get("/bots/default:echo/conversations/a", params={"offset": 2**63}),
            422,
            "ValidationError",
        )
        assert c.delete("/bots/default:echo/conversations/a%2Fb").json()["deleted"] is True
