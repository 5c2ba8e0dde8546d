"""The admission every bot route shares: client id, token budget, request rate, allow-list.

Six routes reach a bot: chat, its stream, ``/v1/chat/completions`` and the three conversation
routes. Each refuses a request in the same order, with the same status (in OpenAI's error shape
under ``/v1``, where a 422 is a 400); a request that fails validation is refused before anything
is admitted, so it is not counted against a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import default_bots, put_bots, running_app
from .v1_support import assert_refusal

#: A request: method, path, JSON body.
Request = tuple[str, str, dict[str, Any] | None]


def chat_body(claim: str | None) -> dict[str, Any]:
    return {"message": "hi", "conversation_id": "c1"} | ({"client_id": claim} if claim else {})


def query(claim: str | None) -> str:
    return f"?client_id={claim}" if claim else ""


#: Each route that reaches a bot: its request to ``bot``, claiming to be client ``claim``.
ROUTES: dict[str, Callable[[str, str | None], Request]] = {
    "chat": lambda bot, claim: ("POST", f"/bots/{bot}/chat", chat_body(claim)),
    "chat_stream": lambda bot, claim: ("POST", f"/bots/{bot}/chat/stream", chat_body(claim)),
    "completion": lambda bot, _: (  # /v1 takes the client from the key only
        "POST",
        "/v1/chat/completions",
        {"model": bot, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "conversations": lambda bot, claim: ("GET", f"/bots/{bot}/conversations{query(claim)}", None),
    "history": lambda bot, claim: ("GET", f"/bots/{bot}/conversations/c1{query(claim)}", None),
    "delete": lambda bot, claim: ("DELETE", f"/bots/{bot}/conversations/c1{query(claim)}", None),
}
CLAIMING = set(ROUTES) - {"completion"}


def key(name: str) -> str:
    return f"key-{name}-0123456789"


def send(client: httpx.Client, who: str, call: Request) -> httpx.Response:
    method, path, body = call
    headers = {"Authorization": f"Bearer {key(who)}"}
    return client.request(method, path, json=body, headers=headers)


def test_each_route_checks_client_then_rate_then_allow_list(
    tmp_path: Path, fake_llm: FakeOpenAIServer
) -> None:
    # One client per route, each allowed one request a minute and only default:echo.
    clients = [
        {"clientId": name, "keys": [key(name)], "requestsPerMinute": 1, "bots": ["default:echo"]}
        for name in ROUTES
    ]
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))
    with (
        running_app(url, keys={"clients": clients}) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for name, route in ROUTES.items():
            # A bot outside the allow-list does not exist for the client (the request counts).
            assert_refusal(send(c, name, route("default:gpt", None)), 404, "BotNotFoundError")
            # The request limit comes before the allow-list.
            limited = assert_refusal(
                send(c, name, route("default:gpt", None)), 429, "RateLimitError"
            )
            assert "requests per minute" in limited["message"]
            if name in CLAIMING:
                # The client id comes before everything: another client's id is a 403.
                spoof = route("default:gpt", "someone-else")
                assert_refusal(send(c, name, spoof), 403, "PermissionDeniedError")


def test_tokens_are_checked_before_the_request_rate_and_only_for_turns(
    tmp_path: Path, fake_llm: FakeOpenAIServer
) -> None:
    budget = {
        "clientId": "budget",
        "keys": [key("budget")],
        "tokensPerMinute": 1,
        "requestsPerMinute": 3,
    }
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))
    with (
        running_app(url, keys={"clients": [budget]}) as server,
        httpx.Client(base_url=server.url) as c,
    ):

        def call(route: str) -> httpx.Response:
            return send(c, "budget", ROUTES[route]("default:echo", None))

        first = call("chat")
        assert first.status_code == 200, first.text
        assert first.json()["usage"]["total_tokens"] > 1  # charged: the budget is spent
        for turn in ("chat", "chat_stream", "completion"):
            refused = assert_refusal(call(turn), 429, "RateLimitError")
            assert "token budget" in refused["message"]
        # Reads spend no tokens; the refused turns were not counted as requests (1 of 3 so far).
        assert call("conversations").status_code == 200
        assert call("history").status_code == 200
        refused = assert_refusal(call("history"), 429, "RateLimitError")
        assert "requests per minute" in refused["message"]
        # With both spent, a turn is refused for its tokens: they are checked first.
        refused = assert_refusal(call("chat"), 429, "RateLimitError")
        assert "token budget" in refused["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/bots/default:gpt/conversations/c1", {"params": {"offset": -1}}),
        ("GET", "/bots/default:gpt/conversations/c1", {"params": {"limit": 0}}),
        ("GET", "/bots/default:gpt/conversations", {"params": {"client_id": "x" * 300}}),
        ("POST", "/bots/default:gpt/chat", {"json": {"conversation_id": "c1"}}),
        (
            "POST",
            "/v1/chat/completions",
            {
                "json": {"model": "default:gpt", "messages": [{"role": "user", "content": "hi"}]},
                "headers": {"X-Conversation-Id": "c" * 300},
            },
        ),
    ],
    ids=["offset", "limit", "client_id", "body", "header"],
)
def test_an_invalid_request_is_refused_before_it_is_admitted(
    sqlite_app: Callable[..., Any], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    # ``limited`` may send 60 requests a minute, to any bot.
    headers = {"Authorization": "Bearer key-l-0123456789", **kwargs.pop("headers", {})}
    with sqlite_app() as server, httpx.Client(base_url=server.url) as c:
        for _ in range(70):  # more than the limit: none of them is counted
            assert_refusal(
                c.request(method, path, headers=headers, **kwargs), 422, "ValidationError"
            )
        assert c.get("/bots/default:gpt/conversations", headers=headers).status_code == 200
