"""``llm.fallbacks`` in the schema, and the factory building a bot's endpoints from it: each
with its own model, endpoint and key (from the environment or a Secret, never inline)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubebots.runtime import BotContext
from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.factory import BotFactory
from kubebots.runtime.llm.fallback import FallbackProvider
from kubebots.runtime.llm.stats import endpoint_label
from kubebots.runtime.schema import parse_bot_config
from kubebots.runtime.secrets import MappingSecretResolver
from kubebots.runtime.testing import FakeOpenAIServer

PRIMARY_KEY = "sk-primary-0000001"
BACKUP_KEY = "sk-backup-0000002"
CTX = BotContext(conversation_id="c1", client_id="tenant")


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with (
        FakeOpenAIServer(api_key=PRIMARY_KEY) as first,
        FakeOpenAIServer(api_key=BACKUP_KEY) as second,
    ):
        yield first, second


def config(first: FakeOpenAIServer, fallbacks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "llm": {
            "provider": "openai",
            "model": "primary-model",
            "baseUrl": first.base_url,
            "apiKeyEnv": "PRIMARY_KEY",
            "maxRetries": 0,
            "timeout": 5,
            "fallbacks": fallbacks,
        },
        "systemPrompt": "sys",
    }


@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        ({"model": "m", "apiKey": "sk-inline"}, "llm.fallbacks.0"),
        ({"model": "m", "baseUrl": "http://u:pw@host/v1"}, "llm.fallbacks.0.baseUrl"),
        ({"model": "m", "baseUrl": "http://host/v1?api_key=x"}, "llm.fallbacks.0.baseUrl"),
        ({"model": "m", "apiKeyEnv": "A", "apiKeySecretRef": {"name": "s", "key": "k"}}, None),
        ({"model": "m", "timeout": 0}, "llm.fallbacks.0.timeout"),
        ({"model": "m", "maxRetries": 11}, "llm.fallbacks.0.maxRetries"),
        ({"baseUrl": "http://host/v1"}, "llm.fallbacks.0.model"),
        ({"model": "m", "temperature": 1}, "llm.fallbacks.0.temperature"),
    ],
)
def test_bad_fallbacks_are_rejected(fallback: dict[str, Any], field: str | None) -> None:
    data = {"llm": {"provider": "openai", "model": "x", "fallbacks": [fallback]}}
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config(data)
    assert "sk-inline" not in str(info.value) and "pw@" not in str(info.value)
    assert any(f.startswith("llm.fallbacks.0") for f in info.value.fields), info.value.fields
    if field is not None:
        assert field in info.value.fields


def test_at_most_five_fallbacks_and_only_for_openai() -> None:
    six = [{"model": f"m{i}", "baseUrl": "http://h/v1"} for i in range(6)]
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config({"llm": {"provider": "openai", "model": "x", "fallbacks": six}})
    assert "llm.fallbacks" in info.value.fields
    parse_bot_config({"llm": {"provider": "openai", "model": "x", "fallbacks": six[:5]}})
    with pytest.raises(ConfigurationError, match="openai"):
        parse_bot_config({"llm": {"provider": "echo", "fallbacks": six[:1]}})


def test_a_fallback_inherits_the_bots_settings_unless_it_sets_its_own() -> None:
    parsed = parse_bot_config(
        {
            "llm": {
                "provider": "openai",
                "model": "x",
                "temperature": 0.3,
                "maxTokens": 99,
                "timeout": 7,
                "maxRetries": 4,
                "fallbacks": [{"model": "y", "baseUrl": "http://h/v1", "maxRetries": 1}],
            }
        }
    )
    fallback = parsed.llm.fallbacks[0].llm_config(parsed.llm)
    assert (fallback.model, fallback.base_url) == ("y", "http://h/v1")
    assert (fallback.temperature, fallback.max_tokens, fallback.timeout) == (0.3, 99, 7)
    assert fallback.max_retries == 1
    assert fallback.fallbacks == [] and fallback.api_key_env is None


async def test_the_factory_resolves_each_endpoints_own_key(
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    first, second = upstreams
    backup = {
        "model": "backup-model",
        "baseUrl": second.base_url,
        "apiKeySecretRef": {"name": "llm-keys", "key": "backup"},
    }
    factory = BotFactory(
        env={"PRIMARY_KEY": PRIMARY_KEY},
        secrets=MappingSecretResolver({("llm-keys", "backup"): BACKUP_KEY}),
    )
    bot = await factory.build("ns:b", parse_bot_config(config(first, [backup])))
    try:
        assert await bot.chat("one", CTX) == "[primary-model] sys | one"
        first.inject(503)
        assert await bot.chat("two", CTX) == "[backup-model] sys | two"
        assert second.requests[-1]["authorization"] == f"Bearer {BACKUP_KEY}"
        assert first.requests[0]["authorization"] == f"Bearer {PRIMARY_KEY}"
        counts = factory.llm_stats.snapshot()
        primary = endpoint_label("primary-model", first.base_url)
        assert counts[("ns:b", primary, "ok")] == 1
        assert counts[("ns:b", primary, "unavailable")] == 1
        assert counts[("ns:b", endpoint_label("backup-model", second.base_url), "ok")] == 1
    finally:
        await bot.close()


async def test_a_fallbacks_missing_key_names_the_fallback(
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    first, second = upstreams
    backup = {"model": "b", "baseUrl": second.base_url, "apiKeyEnv": "BACKUP_KEY"}
    factory = BotFactory(env={"PRIMARY_KEY": PRIMARY_KEY})
    with pytest.raises(ConfigurationError) as info:
        await factory.build("ns:b", parse_bot_config(config(first, [backup])))
    assert info.value.fields == ["llm.fallbacks.0.apiKeyEnv"]
    assert "BACKUP_KEY" in str(info.value)
    assert factory.open_stores == 0  # nothing was left open


async def test_openai_bots_are_wrapped_and_echo_bots_are_not(
    upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    first, _ = upstreams
    built: list[Any] = []

    def providers(cfg: Any, key: str | None) -> Any:
        from kubebots.runtime.llm import build_provider

        built.append(build_provider(cfg, api_key=key))
        return built[-1]

    factory = BotFactory(env={"PRIMARY_KEY": PRIMARY_KEY}, providers=providers)
    bot = await factory.build("ns:o", parse_bot_config(config(first, [])))
    echo = await factory.build("ns:e", parse_bot_config({"llm": {"provider": "echo"}}))
    try:
        assert isinstance(bot._llm, FallbackProvider)
        assert [e.provider for e in bot._llm.endpoints] == [built[0]]
        assert echo._llm is built[1]
    finally:
        await bot.close()
        await echo.close()
