"""API keys reach the wire from env or Secret references, and never appear in errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime import (
    BotContext,
    BotManager,
    ConfigurationError,
    DirectorySecretResolver,
    LLMRequestError,
    MappingSecretResolver,
)
from kubebots.runtime.testing import FakeOpenAIServer

KEY = "sk-test-SECRET-0123456789"
CTX = BotContext(conversation_id="c", client_id="t")


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY) as server:
        yield server


def openai_cfg(fake: FakeOpenAIServer, **llm: Any) -> dict[str, Any]:
    return {
        "llm": {"provider": "openai", "model": "m1", "baseUrl": fake.base_url, **llm},
        "systemPrompt": "sys",
    }


async def test_key_from_named_env_variable(fake: FakeOpenAIServer) -> None:
    async with BotManager(env={"MY_KEY": KEY}) as manager:
        bot = await manager.get_or_create("b", openai_cfg(fake, apiKeyEnv="MY_KEY"))
        assert await bot.chat("hi", CTX) == "[m1] sys | hi"
    assert fake.requests[-1]["authorization"] == f"Bearer {KEY}"


async def test_missing_env_variable_names_it(fake: FakeOpenAIServer) -> None:
    async with BotManager(env={}) as manager:
        with pytest.raises(ConfigurationError) as info:
            await manager.get_or_create("b", openai_cfg(fake, apiKeyEnv="MY_KEY"))
    assert info.value.fields == ["llm.apiKeyEnv"]
    assert "MY_KEY" in str(info.value)


async def test_key_from_secret_ref_mapping(fake: FakeOpenAIServer) -> None:
    secrets = MappingSecretResolver({("llm-keys", "openai"): KEY})
    ref = {"name": "llm-keys", "key": "openai"}
    async with BotManager(env={}, secrets=secrets) as manager:
        bot = await manager.get_or_create("b", openai_cfg(fake, apiKeySecretRef=ref))
        assert await bot.chat("hi", CTX) == "[m1] sys | hi"
        with pytest.raises(ConfigurationError) as info:
            await manager.get_or_create(
                "c", openai_cfg(fake, apiKeySecretRef={"name": "llm-keys", "key": "nope"})
            )
        assert info.value.fields == ["llm.apiKeySecretRef"]


async def test_key_from_mounted_secret_directory_and_rotation(
    fake: FakeOpenAIServer, tmp_path: Path
) -> None:
    (tmp_path / "llm-keys").mkdir()
    (tmp_path / "llm-keys" / "openai").write_text("sk-old-key-000000\n")
    ref = {"name": "llm-keys", "key": "openai"}
    cfg = openai_cfg(fake, apiKeySecretRef=ref)
    async with BotManager(
        config_loader=lambda _id: cfg, secrets=DirectorySecretResolver(tmp_path), env={}
    ) as manager:
        bot = await manager.get_or_create("b")
        with pytest.raises(LLMRequestError) as info:
            await bot.chat("hi", CTX)
        assert info.value.status_code == 401
        assert "sk-old-key" not in str(info.value)
        (tmp_path / "llm-keys" / "openai").write_text(KEY)
        bot = await manager.reload("b")  # a reload re-reads the Secret
        assert await bot.chat("hi", CTX) == "[m1] sys | hi"


async def test_no_secret_resolver(fake: FakeOpenAIServer) -> None:
    ref = {"name": "s", "key": "k"}
    async with BotManager(env={}) as manager:
        with pytest.raises(ConfigurationError, match="no secret resolver"):
            await manager.get_or_create("b", openai_cfg(fake, apiKeySecretRef=ref))


async def test_openai_without_any_key_source_is_a_clear_error() -> None:
    async with BotManager(env={}) as manager:
        with pytest.raises(ConfigurationError, match="needs apiKeyEnv or apiKeySecretRef"):
            await manager.get_or_create("b", {"llm": {"provider": "openai", "model": "gpt-4o"}})


async def test_keyless_local_endpoint_works(fake: FakeOpenAIServer) -> None:
    with FakeOpenAIServer() as open_server:  # like vLLM/Ollama: no key required
        async with BotManager(env={}) as manager:
            bot = await manager.get_or_create("b", openai_cfg(open_server))
            assert await bot.chat("hi", CTX) == "[m1] sys | hi"


async def test_bots_with_one_storage_config_share_one_store(tmp_path: Path) -> None:
    cfg = {"conversationStorage": {"backend": "sqlite", "path": str(tmp_path / "c.db")}}
    async with BotManager(env={}) as manager:
        for i in range(20):
            await manager.get_or_create(f"b{i}", cfg)
        assert manager.factory.open_stores == 1
        await manager.clear_all()
        assert manager.factory.open_stores == 0
