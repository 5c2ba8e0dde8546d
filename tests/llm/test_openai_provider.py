"""The OpenAI provider against the fake server, through the real ``openai`` client: happy paths,
what reaches the wire, retries, shared HTTP clients and closing."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
import pytest

from kubebots.runtime.errors import LLMUnavailableError
from kubebots.runtime.llm import ChatMessage, Completion, Delta, LLMProvider, Usage, joined
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import API_KEY, MODEL, ProviderFactory

HISTORY = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "What is k8s?"),
    ChatMessage("assistant", "An orchestrator."),
    ChatMessage("user", "And a pod?"),
]
WIRE_HISTORY = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is k8s?"},
    {"role": "assistant", "content": "An orchestrator."},
    {"role": "user", "content": "And a pod?"},
]
REPLY = f"[{MODEL}] You are terse. | And a pod?"


async def test_complete_returns_the_reply_and_usage(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    provider = make_provider()
    assert isinstance(provider, LLMProvider)
    completion = await provider.complete(HISTORY)
    assert completion == Completion(REPLY, usage=Usage(prompt_tokens=11, completion_tokens=8))


async def test_complete_sends_model_history_and_key(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    await make_provider().complete(HISTORY)
    (request,) = fake_openai.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == f"Bearer {API_KEY}"
    assert request["body"]["model"] == MODEL
    assert request["body"]["messages"] == WIRE_HISTORY
    assert "temperature" not in request["body"]
    assert "max_tokens" not in request["body"]
    assert not request["body"].get("stream")


async def test_temperature_and_max_tokens_reach_the_wire_when_set(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    provider = make_provider(temperature=0.0, max_tokens=64)
    await provider.complete(HISTORY)
    _ = [delta async for delta in provider.stream(HISTORY)]
    for request in fake_openai.requests:
        assert (request["body"]["temperature"], request["body"]["max_tokens"]) == (0.0, 64)


async def test_stream_yields_non_empty_deltas_that_join_to_the_reply(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    deltas = [delta async for delta in make_provider().stream(HISTORY)]
    words = ["[fake-model] ", "You ", "are ", "terse. ", "| ", "And ", "a ", "pod?"]
    assert deltas == [*(Delta(w) for w in words), Delta(finish_reason="stop")]
    assert joined(deltas).content == REPLY
    (request,) = fake_openai.requests
    assert request["body"]["stream"] is True
    assert request["body"]["messages"] == WIRE_HISTORY
    assert request["authorization"] == f"Bearer {API_KEY}"


async def test_stream_and_complete_agree(make_provider: ProviderFactory) -> None:
    provider = make_provider()
    usages: list[Usage] = []
    streamed = [delta async for delta in provider.stream(HISTORY, on_usage=usages.append)]
    completion = await provider.complete(HISTORY)
    assert usages == [completion.usage]
    assert joined(streamed, completion.usage) == completion


async def test_stream_can_be_abandoned_early(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.chunk_delay = 0.01
    provider = make_provider()
    stream = provider.stream(HISTORY)
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == Delta("[fake-model] ")
    await stream.aclose()
    assert (await provider.complete(HISTORY)).content == REPLY


async def test_latency_is_waited_out(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.latency = 0.2
    assert (await make_provider().complete(HISTORY)).content == REPLY


async def test_retries_ride_out_a_rate_limit(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(429, times=1, retry_after=0.1)
    completion = await make_provider(max_retries=1).complete(HISTORY)
    assert completion.content == REPLY
    assert len(fake_openai.requests) == 2


async def test_retries_ride_out_a_server_error_on_stream(
    make_provider: ProviderFactory, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.inject(503, times=1, retry_after=0.1)
    deltas = [delta async for delta in make_provider(max_retries=1).stream(HISTORY)]
    assert joined(deltas).content == REPLY
    assert len(fake_openai.requests) == 2


async def test_shared_http_client_works_and_stays_open_after_close(
    make_provider: ProviderFactory,
) -> None:
    async with httpx.AsyncClient() as client:
        first = make_provider(http_client=client)
        assert (await first.complete(HISTORY)).content == REPLY
        await first.close()
        await first.close()
        assert not client.is_closed
        second = make_provider(http_client=client)
        assert joined([d async for d in second.stream(HISTORY)]).content == REPLY
        await second.close()
        assert not client.is_closed


async def test_close_closes_the_own_client_and_is_idempotent(
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider()
    await provider.complete(HISTORY)
    await provider.close()
    await provider.close()
    assert provider.closed
    assert provider._client.is_closed()  # the provider's own openai/httpx client
    with pytest.raises(LLMUnavailableError, match="closed"):
        await provider.complete(HISTORY)
    with pytest.raises(LLMUnavailableError, match="closed"):
        await anext(provider.stream(HISTORY))
