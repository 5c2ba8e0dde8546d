"""What an upstream error becomes: the class, the safe public message and code, and the log.

A tiny upstream (FastAPI on a real port) answers whatever status, body and headers a test sets,
for what the fake OpenAI server does not send (an error ``code``/``param``, ``retry-after-ms``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from kubebots.runtime.errors import (
    LLMBadRequestError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from kubebots.runtime.llm import ChatMessage, OpenAIProvider
from kubebots.runtime.llm.openai_provider import upstream_retry_after
from kubebots.runtime.testing import ThreadedServer

from .conftest import API_KEY, openai_config

MESSAGES = [ChatMessage("user", "hi")]
UPSTREAM_TEXT = "internal shard 7 at 10.1.2.3 exploded"


@dataclass
class Answer:
    status: int = 500
    error: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class Upstream:
    def __init__(self) -> None:
        self.answer = Answer()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat() -> JSONResponse:
            body = {"error": {"type": "api_error", "param": None, "code": None} | self.answer.error}
            return JSONResponse(body, self.answer.status, headers=self.answer.headers)

        self.server = ThreadedServer(app, lifespan="off", name="tiny-upstream")

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    with up.server:
        yield up


@pytest.fixture
async def provider(upstream: Upstream) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(openai_config(upstream.base_url), api_key=API_KEY)
    yield p
    await p.close()


async def failure(
    upstream: Upstream, provider: OpenAIProvider, status: int, **answer: Any
) -> LLMError:
    upstream.answer = Answer(status, **answer)
    with pytest.raises(LLMError) as info:
        await provider.complete(MESSAGES)
    return info.value


def assert_public_is_safe(error: LLMError, upstream: Upstream) -> None:
    host = upstream.base_url.split("//")[1].split("/")[0]
    for text in (error.public_message, error.code, error.param or ""):
        assert host not in text
        assert "127.0.0.1" not in text
        assert "shard" not in text and "10.1.2.3" not in text
        assert API_KEY not in text


async def test_400_is_a_bad_request_with_the_upstream_code_and_param(
    upstream: Upstream, provider: OpenAIProvider
) -> None:
    error = await failure(
        upstream,
        provider,
        400,
        error={
            "message": f"{UPSTREAM_TEXT}; key {API_KEY}",
            "code": "context_length_exceeded",
            "param": "messages",
        },
    )
    assert isinstance(error, LLMBadRequestError)
    assert (error.code, error.param, error.status_code) == (
        "context_length_exceeded",
        "messages",
        400,
    )
    assert "too long" in error.public_message
    assert_public_is_safe(error, upstream)
    assert UPSTREAM_TEXT in error.message  # the log text keeps the detail
    assert API_KEY not in error.message


async def test_400_codes_that_are_text_are_not_passed_on(
    upstream: Upstream, provider: OpenAIProvider
) -> None:
    error = await failure(
        upstream,
        provider,
        400,
        error={"message": "nope", "code": UPSTREAM_TEXT, "param": "see http://10.1.2.3/x"},
    )
    assert isinstance(error, LLMBadRequestError)
    assert (error.code, error.param) == ("invalid_request", None)
    assert error.public_message == "The bot's LLM rejected the request as invalid"


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_credentials(
    upstream: Upstream, provider: OpenAIProvider, status: int
) -> None:
    error = await failure(upstream, provider, status, error={"message": f"bad key {API_KEY}"})
    assert type(error) is LLMRequestError
    assert error.status_code == status
    assert error.public_message == "The bot's LLM rejected its credentials"
    assert error.code == "upstream_authentication_failed"
    assert API_KEY not in str(error)


async def test_unknown_model(upstream: Upstream, provider: OpenAIProvider) -> None:
    error = await failure(upstream, provider, 404, error={"message": UPSTREAM_TEXT})
    assert type(error) is LLMRequestError
    assert error.code == "upstream_model_not_found"
    assert_public_is_safe(error, upstream)


async def test_other_4xx_are_refusals(upstream: Upstream, provider: OpenAIProvider) -> None:
    error = await failure(upstream, provider, 422, error={"message": UPSTREAM_TEXT})
    assert type(error) is LLMRequestError
    assert (error.status_code, error.code) == (422, "upstream_refused")
    assert_public_is_safe(error, upstream)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_are_unavailable(
    upstream: Upstream, provider: OpenAIProvider, status: int
) -> None:
    error = await failure(upstream, provider, status, error={"message": UPSTREAM_TEXT})
    assert isinstance(error, LLMUnavailableError)
    assert error.code == "upstream_unavailable"
    assert_public_is_safe(error, upstream)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
async def test_429_reads_retry_after_ms_then_retry_after(
    upstream: Upstream,
    provider: OpenAIProvider,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    error = await failure(
        upstream, provider, 429, error={"message": UPSTREAM_TEXT}, headers=headers
    )
    assert isinstance(error, RateLimitError)
    assert error.retry_after == expected
    assert error.code == "rate_limit_exceeded"
    assert_public_is_safe(error, upstream)


def test_retry_after_parsing_edges() -> None:
    assert upstream_retry_after({"retry-after-ms": "-5"}) == 0.0
    assert upstream_retry_after({"retry-after-ms": "nan", "retry-after": "1"}) == 1.0
    assert upstream_retry_after({}) is None


async def test_the_log_keeps_the_detail_without_the_key(
    upstream: Upstream, provider: OpenAIProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="kubebots.runtime.llm"):
        await failure(upstream, provider, 503, error={"message": f"{UPSTREAM_TEXT} ({API_KEY})"})
    logged = caplog.text
    assert UPSTREAM_TEXT in logged and "HTTP 503" in logged and "127.0.0.1" in logged
    assert API_KEY not in logged


async def test_a_timeout_is_public_without_the_endpoint() -> None:
    # Nothing answers on a listening socket that never accepts: a blackhole with a backlog.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        p = OpenAIProvider(
            openai_config(f"http://127.0.0.1:{port}/v1", timeout=0.3), api_key=API_KEY
        )
        try:
            with pytest.raises(LLMTimeoutError) as info:
                await p.complete(MESSAGES)
        finally:
            await p.close()
    assert info.value.public_message == "The bot's LLM did not answer in time"
    assert info.value.code == "upstream_timeout"
    assert str(port) in str(info.value) and str(port) not in info.value.public_message
