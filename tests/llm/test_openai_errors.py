"""Upstream failures become typed ``LLMError``s, and none of them carries the API key."""

from __future__ import annotations

import socket
import time
import traceback

import httpx
import pytest

from kubebots.runtime.errors import (
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from kubebots.runtime.llm import ChatMessage, OpenAIProvider
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import API_KEY, MODEL, ProviderFactory

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there friend")]


def assert_no_key(error: BaseException, key: str = API_KEY) -> None:
    """Neither the error nor anything chained to it shows the key."""
    assert error.__cause__ is None
    assert error.__context__ is None
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, LLMError):
        texts.append(repr(error.detail))
    for text in texts:
        assert key not in text
        assert "SECRET" not in text


async def collect(provider: OpenAIProvider) -> str:
    return "".join([delta.content async for delta in provider.stream(MESSAGES)])


async def test_rate_limit_carries_retry_after(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(429, retry_after=2)
    with pytest.raises(RateLimitError) as info:
        await make_provider().complete(MESSAGES)
    assert info.value.retry_after == 2.0
    assert info.value.detail == {"retry_after": 2.0}
    assert "429" in str(info.value) and MODEL in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert_no_key(info.value)


async def test_rate_limit_without_retry_after(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(429)
    with pytest.raises(RateLimitError) as info:
        await make_provider().complete(MESSAGES)
    assert info.value.retry_after is None


async def test_rate_limit_on_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(429, retry_after=2)
    with pytest.raises(RateLimitError) as info:
        await collect(make_provider())
    assert info.value.retry_after == 2.0
    assert_no_key(info.value)


async def test_retries_are_used_up_before_a_rate_limit_surfaces(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(429, times=2, retry_after=0.05)
    with pytest.raises(RateLimitError):
        await make_provider(max_retries=1).complete(MESSAGES)
    assert len(fake_openai.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer, status: int
) -> None:
    fake_openai.inject(status)
    with pytest.raises(LLMUnavailableError) as info:
        await make_provider().complete(MESSAGES)
    assert f"HTTP {status}" in str(info.value)
    assert_no_key(info.value)


async def test_server_errors_after_retries(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(500, times=2, retry_after=0.05)
    with pytest.raises(LLMUnavailableError):
        await make_provider(max_retries=1).complete(MESSAGES)
    assert len(fake_openai.requests) == 2


async def test_server_error_on_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(500)
    with pytest.raises(LLMUnavailableError):
        await collect(make_provider())


async def test_hang_beyond_the_timeout(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(hang=5.0)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as info:
        await make_provider(timeout=0.3).complete(MESSAGES)
    assert time.monotonic() - started < 3.0
    assert "0.3s" in str(info.value)
    assert_no_key(info.value)


async def test_hang_beyond_the_timeout_on_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(hang=5.0)
    with pytest.raises(LLMTimeoutError):
        await collect(make_provider(timeout=0.3))


async def test_stalled_stream_times_out(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.chunk_delay = 2.0
    with pytest.raises(LLMTimeoutError):
        await collect(make_provider(timeout=0.3))


async def test_timeout_through_a_shared_http_client(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(hang=5.0)
    async with httpx.AsyncClient() as client:
        with pytest.raises(LLMTimeoutError):
            await make_provider(timeout=0.3, http_client=client).complete(MESSAGES)


async def test_connection_refused_is_unavailable(make_provider: ProviderFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider(base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(LLMUnavailableError) as info:
        await provider.complete(MESSAGES)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert_no_key(info.value)
    with pytest.raises(LLMUnavailableError):
        await collect(provider)


async def test_wrong_key_is_a_request_error_that_never_shows_the_key(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.api_key = "the-right-key"  # the 401 body echoes the presented key
    with pytest.raises(LLMRequestError) as info:
        await make_provider().complete(MESSAGES)
    assert info.value.status_code == 401
    assert info.value.detail == {"status_code": 401}
    assert "401" in str(info.value)
    assert API_KEY in fake_openai.requests[0]["authorization"]
    assert_no_key(info.value)
    with pytest.raises(LLMRequestError) as streamed:
        await collect(make_provider())
    assert_no_key(streamed.value)


@pytest.mark.parametrize(("status", "error"), [(400, LLMRequestError), (503, LLMUnavailableError)])
async def test_upstream_messages_are_kept_but_redacted(
    make_provider: ProviderFactory,
    fake_openai: FakeOpenAIServer,
    status: int,
    error: type[LLMError],
) -> None:
    fake_openai.inject(status, message=f"model is busy; your key {API_KEY} was fine")
    with pytest.raises(error) as info:
        await make_provider().complete(MESSAGES)
    assert "model is busy; your key *** was fine" in str(info.value)
    assert_no_key(info.value)


async def test_error_event_mid_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(error_after=2, message=f"overloaded ({API_KEY})")
    chunks: list[str] = []
    with pytest.raises(LLMUnavailableError) as info:
        async for chunk in make_provider().stream(MESSAGES):
            chunks.append(chunk.content)
    assert chunks == [f"[{MODEL}] ", "Be "]
    assert "overloaded (***)" in str(info.value)
    assert_no_key(info.value)


async def test_connection_dropped_mid_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(drop_after=3)
    chunks: list[str] = []
    with pytest.raises(LLMUnavailableError) as info:
        async for chunk in make_provider().stream(MESSAGES):
            chunks.append(chunk.content)
    assert len(chunks) == 3
    assert_no_key(info.value)
