"""Fixtures for the LLM provider tests: a fake OpenAI server on a real port, and providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kubebots.runtime.llm import OpenAIProvider
from kubebots.runtime.schema.llm import LLMConfig
from kubebots.runtime.testing import FakeOpenAIServer

#: The key the fake server accepts. Distinctive, so a leak is easy to spot.
API_KEY = "sk-test-SECRET-123"
MODEL = "fake-model"

ProviderFactory = Callable[..., OpenAIProvider]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A started server that requires :data:`API_KEY`; stopped (and checked) afterwards."""
    server = FakeOpenAIServer(api_key=API_KEY)
    with server:
        yield server
    assert not server.running


def openai_config(base_url: str, **overrides: Any) -> LLMConfig:
    """An ``openai`` config for ``base_url``: no retries and a short timeout unless overridden."""
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": MODEL,
        "base_url": base_url,
        "max_retries": 0,
        "timeout": 5.0,
    }
    return LLMConfig(**(fields | overrides))


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAIServer) -> AsyncIterator[ProviderFactory]:
    """``make_provider(api_key=..., http_client=..., **config_fields)``; all closed afterwards."""
    providers: list[OpenAIProvider] = []

    def make(*, api_key: str = API_KEY, **overrides: Any) -> OpenAIProvider:
        http_client = overrides.pop("http_client", None)
        config = openai_config(overrides.pop("base_url", fake_openai.base_url), **overrides)
        provider = OpenAIProvider(config, api_key=api_key, http_client=http_client)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        await provider.close()
