"""FallbackProvider over real OpenAIProviders, each against its own fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kubebots.runtime.errors import (
    LLMBadRequestError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from kubebots.runtime.llm import ChatMessage, OpenAIProvider
from kubebots.runtime.llm.fallback import (
    MAX_RETRY_AFTER,
    Endpoint,
    FallbackProvider,
    backoff,
)
from kubebots.runtime.llm.stats import LLMRequestStats, endpoint_label
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import API_KEY, openai_config

MESSAGES = [ChatMessage("system", "sys"), ChatMessage("user", "hello")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with FakeOpenAIServer(api_key=API_KEY) as first, FakeOpenAIServer(api_key=API_KEY) as second:
        yield first, second


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stats() -> LLMRequestStats:
    return LLMRequestStats()


@pytest.fixture
async def provider(
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer], clock: Clock, stats: LLMRequestStats
) -> AsyncIterator[FallbackProvider]:
    endpoints = [
        Endpoint(
            endpoint_label(model, fake.base_url),
            OpenAIProvider(openai_config(fake.base_url, model=model, timeout=0.5), api_key=API_KEY),
        )
        for model, fake in zip(("primary-model", "backup-model"), upstreams, strict=True)
    ]
    wrapped = FallbackProvider(endpoints, bot_id="ns:bot", stats=stats, cooldown=30, clock=clock)
    yield wrapped
    await wrapped.close()
    assert all(e.provider.closed for e in endpoints)  # type: ignore[attr-defined]


def labels(upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> tuple[str, str]:
    first, second = upstreams
    return (
        endpoint_label("primary-model", first.base_url),
        endpoint_label("backup-model", second.base_url),
    )


async def text(provider: FallbackProvider) -> str:
    return "".join([d.content async for d in provider.stream(MESSAGES)])


async def test_the_primary_answers_when_it_can(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
) -> None:
    completion = await provider.complete(MESSAGES)
    assert completion.content == "[primary-model] sys | hello"
    assert len(upstreams[1].requests) == 0
    primary, _ = labels(upstreams)
    assert provider.served_by == primary
    assert provider.serving_fallback is None  # the primary is no news for the Bot's status
    assert stats.snapshot() == {("ns:bot", primary, "ok"): 1}


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        ({"status": 503}, "unavailable"),
        ({"status": 429}, "rate_limited"),
        ({"hang": 3.0}, "timeout"),
    ],
)
async def test_falls_back_on_5xx_429_and_timeout(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
    fault: dict[str, float],
    outcome: str,
) -> None:
    first, second = upstreams
    first.inject(**fault)
    completion = await provider.complete(MESSAGES)
    assert completion.content == "[backup-model] sys | hello"
    assert len(first.requests) == 1 and len(second.requests) == 1
    assert second.requests[0]["body"]["model"] == "backup-model"
    primary, backup = labels(upstreams)
    assert provider.served_by == provider.serving_fallback == backup
    assert stats.snapshot() == {("ns:bot", primary, outcome): 1, ("ns:bot", backup, "ok"): 1}


async def test_a_connection_failure_falls_back(stats: LLMRequestStats) -> None:
    with FakeOpenAIServer(api_key=API_KEY) as backup:
        dead = "http://127.0.0.1:9/v1"  # discard port: nothing listens
        endpoints = [
            Endpoint("a@dead", OpenAIProvider(openai_config(dead), api_key=API_KEY)),
            Endpoint("b@backup", OpenAIProvider(openai_config(backup.base_url), api_key=API_KEY)),
        ]
        provider = FallbackProvider(endpoints, bot_id="b", stats=stats)
        try:
            assert (await provider.complete(MESSAGES)).content.startswith("[fake-model]")
        finally:
            await provider.close()
    assert stats.snapshot() == {("b", "a@dead", "unavailable"): 1, ("b", "b@backup", "ok"): 1}


async def test_no_fallback_on_400(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
) -> None:
    first, second = upstreams
    first.inject(400, message="This model's maximum context length is 8192 tokens")
    with pytest.raises(LLMBadRequestError) as info:
        await provider.complete(MESSAGES)
    assert info.value.code == "context_length_exceeded"
    assert second.requests == []
    primary, _ = labels(upstreams)
    assert stats.snapshot() == {("ns:bot", primary, "bad_request"): 1}
    # A 400 is the request's fault, not the endpoint's: no cooldown.
    assert (await provider.complete(MESSAGES)).content.startswith("[primary-model]")


async def test_no_fallback_on_a_refused_key(
    provider: FallbackProvider, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    first, second = upstreams
    first.api_key = "another-key"
    with pytest.raises(LLMRequestError) as info:
        await provider.complete(MESSAGES)
    assert info.value.status_code == 401
    assert second.requests == []


async def test_cooldown_skips_the_failed_primary_then_it_is_tried_again(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    clock: Clock,
) -> None:
    first, second = upstreams
    assert provider.serving_fallback is None  # nothing asked yet
    first.inject(503)
    await provider.complete(MESSAGES)
    assert (len(first.requests), len(second.requests)) == (1, 1)
    assert provider.serving_fallback == labels(upstreams)[1]
    clock.now += 29  # still cooling down: the primary is not asked
    assert (await provider.complete(MESSAGES)).content.startswith("[backup-model]")
    assert (len(first.requests), len(second.requests)) == (1, 2)
    clock.now += 2  # the cooldown is over
    assert (await provider.complete(MESSAGES)).content.startswith("[primary-model]")
    assert (len(first.requests), len(second.requests)) == (2, 2)
    assert provider.serving_fallback is None  # the primary serves again


async def test_when_all_cool_down_all_are_tried_in_order(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    clock: Clock,
) -> None:
    first, second = upstreams
    first.inject(503, times=2)
    second.inject(502)
    with pytest.raises(LLMUnavailableError):
        await provider.complete(MESSAGES)
    clock.now += 1
    # Both cool down: both are tried anyway, and the backup answers.
    assert (await provider.complete(MESSAGES)).content.startswith("[backup-model]")
    assert (len(first.requests), len(second.requests)) == (2, 2)


async def test_the_last_error_is_raised_when_every_endpoint_fails(
    provider: FallbackProvider, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    first, second = upstreams
    first.inject(503)
    second.inject(hang=3.0)
    with pytest.raises(LLMTimeoutError):
        await provider.complete(MESSAGES)


async def test_stream_falls_back_before_its_first_delta(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
) -> None:
    first, _ = upstreams
    first.inject(503)
    assert await text(provider) == "[backup-model] sys | hello"
    primary, backup = labels(upstreams)
    assert stats.snapshot() == {("ns:bot", primary, "unavailable"): 1, ("ns:bot", backup, "ok"): 1}


async def test_stream_never_falls_back_after_its_first_delta(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
) -> None:
    first, second = upstreams
    first.inject(error_after=2)
    pieces: list[str] = []
    with pytest.raises(LLMUnavailableError):
        async for delta in provider.stream(MESSAGES):
            pieces.append(delta.content)
    assert "".join(pieces) == "[primary-model] sys "
    assert second.requests == []
    primary, _ = labels(upstreams)
    assert stats.snapshot() == {("ns:bot", primary, "unavailable"): 1}


async def test_an_abandoned_stream_is_counted_and_closed(
    provider: FallbackProvider,
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
    stats: LLMRequestStats,
) -> None:
    stream = provider.stream(MESSAGES)
    async for _ in stream:
        break
    await stream.aclose()
    primary, _ = labels(upstreams)
    assert stats.snapshot() == {("ns:bot", primary, "abandoned"): 1}


async def test_a_429_without_retry_after_gets_a_computed_one_per_endpoint(
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    first, _ = upstreams
    only = OpenAIProvider(openai_config(first.base_url), api_key=API_KEY)
    provider = FallbackProvider([Endpoint("m@h", only)], bot_id="b")
    try:
        seen = []
        for _ in range(3):
            first.inject(429)
            with pytest.raises(RateLimitError) as info:
                await provider.complete(MESSAGES)
            seen.append(info.value.retry_after)
        assert seen == [1.0, 2.0, 4.0]
        first.inject(429, retry_after=7)  # the upstream's own value wins
        with pytest.raises(RateLimitError) as info:
            await provider.complete(MESSAGES)
        assert info.value.retry_after == 7.0
        await provider.complete(MESSAGES)  # an answer resets the backoff
        first.inject(429)
        with pytest.raises(RateLimitError) as info:
            await provider.complete(MESSAGES)
        assert info.value.retry_after == 1.0
        assert info.value.__context__ is None and info.value.__cause__ is None
    finally:
        await provider.close()


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 7, 100)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff(10_000) == MAX_RETRY_AFTER


async def test_a_closed_provider_refuses_and_closing_is_idempotent(
    provider: FallbackProvider,
) -> None:
    await provider.close()
    await provider.close()
    assert provider.closed
    with pytest.raises(LLMUnavailableError, match="closed"):
        await provider.complete(MESSAGES)


def test_endpoint_labels_never_hold_credentials_or_paths() -> None:
    assert endpoint_label("m", "http://user:pw@vllm:8000/v1?key=x") == "m@vllm:8000"
    assert endpoint_label("gpt-4o", None) == "gpt-4o@api.openai.com"


def test_it_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FallbackProvider([], bot_id="b")
