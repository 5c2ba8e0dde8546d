"""Upstream LLM failures through the chat API: status mapping, Retry-After, nothing of the
upstream in the body, and fallbacks (with their cooldown and metrics), on real uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubebots.runtime.llm.stats import endpoint_label
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, put_bots, running_app
from .helpers import TIMEOUT, assert_error

SECRET = "sk-upstream-SECRET-0042"
UPSTREAM_TEXT = f"shard 7 exploded; your key {SECRET}"


@pytest.fixture(scope="module")
def primary() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def llm(fake: FakeOpenAIServer, model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "baseUrl": fake.base_url, "timeout": 0.5, "maxRetries": 0} | extra


@pytest.fixture
def server(
    tmp_path: Path, primary: FakeOpenAIServer, backup: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    primary.reset()
    backup.reset()
    url = f"sqlite:{tmp_path / 'store.db'}"
    bots = {
        "default:single": {"llm": {"provider": "openai"} | llm(primary, "primary-model")},
        "default:fb": {
            "llm": {"provider": "openai", "cooldownSeconds": 60}
            | llm(primary, "primary-model")
            | {"fallbacks": [llm(backup, "backup-model")]}
        },
    }
    put_bots(url, "kubebots_", bots)
    with running_app(url) as app:
        yield app
    primary.reset()
    backup.reset()


def chat(server: ThreadedServer, bot: str, message: str = "hi") -> httpx.Response:
    return httpx.post(
        f"{server.url}/bots/{bot}/chat",
        json={"message": message, "conversation_id": "c1"},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )


def assert_reveals_nothing(response: httpx.Response, *fakes: FakeOpenAIServer) -> None:
    for fake in fakes:
        assert f"127.0.0.1:{fake.port}" not in response.text
        assert str(fake.port) not in response.text
    assert "shard" not in response.text
    assert SECRET not in response.text and "SECRET" not in response.text


@pytest.mark.parametrize(
    ("status", "expected", "error", "code"),
    [
        (400, 400, "UpstreamBadRequestError", "invalid_request"),
        (401, 502, "UpstreamError", "upstream_authentication_failed"),
        (403, 502, "UpstreamError", "upstream_authentication_failed"),
        (404, 502, "UpstreamError", "upstream_model_not_found"),
        (409, 502, "UpstreamError", "upstream_refused"),
        (429, 429, "RateLimitError", "rate_limit_exceeded"),
        (500, 502, "UpstreamError", "upstream_unavailable"),
        (503, 502, "UpstreamError", "upstream_unavailable"),
    ],
)
def test_upstream_status_mapping(
    server: ThreadedServer,
    primary: FakeOpenAIServer,
    status: int,
    expected: int,
    error: str,
    code: str,
) -> None:
    primary.inject(status, message=UPSTREAM_TEXT)
    response = chat(server, "default:single")
    body = assert_error(response, expected, error)
    assert body["detail"]["code"] == code
    assert_reveals_nothing(response, primary)
    if status in (401, 403):
        assert body["message"] == "The bot's LLM rejected its credentials"
    if expected == 429:
        assert response.headers["retry-after"] == "1"
    assert chat(server, "default:single").status_code == 200  # the fault was one-off


def test_upstream_timeout_is_504(server: ThreadedServer, primary: FakeOpenAIServer) -> None:
    primary.inject(hang=3.0)
    response = chat(server, "default:single")
    body = assert_error(response, 504, "UpstreamTimeoutError")
    assert body["message"] == "The bot's LLM did not answer in time"
    assert body["detail"]["code"] == "upstream_timeout"
    assert_reveals_nothing(response, primary)


def test_upstream_connection_failure_is_502(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    dead = {"provider": "openai", "model": "m", "baseUrl": "http://127.0.0.1:9/v1"}
    put_bots(url, "kubebots_", {"default:dead": {"llm": dead | {"maxRetries": 0}}})
    with running_app(url) as app:
        response = chat(app, "default:dead")
    body = assert_error(response, 502, "UpstreamError")
    assert body["message"] == "The bot's LLM is unavailable"
    assert "127.0.0.1:9" not in response.text


def test_a_context_overflow_is_a_400_that_says_so(
    server: ThreadedServer, primary: FakeOpenAIServer
) -> None:
    primary.inject(400, message="This model's maximum context length is 8192 tokens")
    response = chat(server, "default:single")
    body = assert_error(response, 400, "UpstreamBadRequestError")
    assert "too long" in body["message"]
    assert body["detail"] == {"code": "context_length_exceeded"}
    assert "8192" not in response.text


def test_429_always_has_retry_after(server: ThreadedServer, primary: FakeOpenAIServer) -> None:
    primary.inject(429, retry_after=7)
    assert chat(server, "default:single").headers["retry-after"] == "7"
    waits = []
    for _ in range(3):  # none from the upstream: 1 s doubling per consecutive 429
        primary.inject(429)
        response = chat(server, "default:single")
        assert response.status_code == 429
        waits.append(response.headers["retry-after"])
    assert waits == ["2", "4", "8"]  # the 429 with Retry-After: 7 was the first in the row


def test_stream_errors_reveal_nothing(server: ThreadedServer, primary: FakeOpenAIServer) -> None:
    primary.inject(503, message=UPSTREAM_TEXT)
    with httpx.stream(
        "POST",
        f"{server.url}/bots/default:single/chat/stream",
        json={"message": "hi", "conversation_id": "c1"},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    ) as response:
        text = response.read().decode()
    assert "UpstreamError" in text and "The bot's LLM is unavailable" in text
    assert "shard" not in text and SECRET not in text and str(primary.port) not in text


@pytest.mark.parametrize("fault", [{"status": 503}, {"hang": 3.0}, {"status": 429}])
def test_fallback_answers_when_the_primary_fails(
    server: ThreadedServer,
    primary: FakeOpenAIServer,
    backup: FakeOpenAIServer,
    fault: dict[str, Any],
) -> None:
    primary.inject(**fault)
    response = chat(server, "default:fb")
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "[backup-model] - | hi"
    assert [r["body"]["model"] for r in backup.requests] == ["backup-model"]
    # The primary cools down: the next turn goes straight to the backup.
    assert chat(server, "default:fb", "again").json()["response"] == "[backup-model] - | again"
    assert len(primary.requests) == 1 and len(backup.requests) == 2


def test_no_fallback_on_400(
    server: ThreadedServer, primary: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    primary.inject(400, message=UPSTREAM_TEXT)
    assert_error(chat(server, "default:fb"), 400, "UpstreamBadRequestError")
    assert backup.requests == []


def test_every_endpoint_failing_is_the_last_ones_error(
    server: ThreadedServer, primary: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    primary.inject(503, message=UPSTREAM_TEXT)
    backup.inject(hang=3.0)
    response = chat(server, "default:fb")
    assert_error(response, 504, "UpstreamTimeoutError")
    assert_reveals_nothing(response, primary, backup)


def test_metrics_count_calls_per_endpoint(
    server: ThreadedServer, primary: FakeOpenAIServer, backup: FakeOpenAIServer
) -> None:
    primary.inject(503)
    assert chat(server, "default:fb").status_code == 200
    assert chat(server, "default:single").status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    first = endpoint_label("primary-model", primary.base_url)
    second = endpoint_label("backup-model", backup.base_url)
    for bot, endpoint, outcome in [
        ("default:fb", first, "unavailable"),
        ("default:fb", second, "ok"),
        ("default:single", first, "ok"),
    ]:
        labels = f'bot="{bot}",endpoint="{endpoint}",outcome="{outcome}"'
        line = f"kubebots_llm_requests_total{{{labels}}} 1.0"
        assert line in text, line


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (
            {"status": 400, "message": "maximum context length exceeded"},
            400,
            "context_length_exceeded",
        ),
        ({"status": 401, "message": UPSTREAM_TEXT}, 502, "upstream_authentication_failed"),
        ({"status": 429, "message": UPSTREAM_TEXT}, 429, "rate_limit_exceeded"),
        ({"status": 503, "message": UPSTREAM_TEXT}, 502, "upstream_unavailable"),
        ({"hang": 3.0}, 504, "upstream_timeout"),
    ],
)
def test_v1_gets_the_same_errors_in_openais_shape(
    server: ThreadedServer,
    primary: FakeOpenAIServer,
    fault: dict[str, Any],
    status: int,
    code: str,
) -> None:
    primary.inject(**fault)
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "default:single", "messages": [{"role": "user", "content": "hi"}]},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(("The bot's LLM", "The conversation is too long"))
    assert_reveals_nothing(response, primary)
    if status == 429:
        assert response.headers["retry-after"] == "1"
