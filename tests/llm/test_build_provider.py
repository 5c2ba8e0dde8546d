"""``build_provider`` and the ``Retry-After`` parser."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.llm import EchoProvider, OpenAIProvider, build_provider
from kubebots.runtime.llm.openai_provider import DEFAULT_BASE_URL, parse_retry_after
from kubebots.runtime.schema.llm import LLMConfig

from .conftest import API_KEY, openai_config


async def test_echo_config_builds_an_echo_provider_and_ignores_the_key() -> None:
    provider = build_provider(LLMConfig(provider="echo", model="e1"), api_key=None)
    assert isinstance(provider, EchoProvider)
    assert provider.model == "e1"
    await provider.close()


async def test_openai_config_builds_an_openai_provider() -> None:
    provider = build_provider(openai_config("http://127.0.0.1:9/v1"), api_key=API_KEY)
    assert isinstance(provider, OpenAIProvider)
    assert (provider.model, provider.base_url) == ("fake-model", "http://127.0.0.1:9/v1")
    await provider.close()


async def test_openai_without_base_url_uses_the_openai_default_not_the_environment() -> None:
    provider = build_provider(LLMConfig(provider="openai", model="gpt-x"), api_key=API_KEY)
    assert isinstance(provider, OpenAIProvider)
    assert provider.base_url == DEFAULT_BASE_URL
    await provider.close()


@pytest.mark.parametrize("api_key", [None, ""])
def test_openai_without_a_key_is_a_configuration_error(api_key: str | None) -> None:
    with pytest.raises(ConfigurationError, match="API key") as info:
        build_provider(openai_config("http://127.0.0.1:9/v1"), api_key=api_key)
    assert info.value.fields == ["llm"]


async def test_build_provider_passes_the_shared_http_client_through() -> None:
    async with httpx.AsyncClient() as client:
        provider = build_provider(
            openai_config("http://127.0.0.1:9/v1"), api_key=API_KEY, http_client=client
        )
        await provider.close()
        assert not client.is_closed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2.0), ("0.5", 0.5), (" 7 ", 7.0), ("-3", 0.0), (None, None), ("", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "Mon, 99 Foo 2024"])
def test_parse_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value) is None
