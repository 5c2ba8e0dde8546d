from __future__ import annotations

import pytest

from kubebots.runtime import ConfigurationError, parse_bot_config
from kubebots.runtime.schema import (
    BotConfig,
    PostgresStorageConfig,
    SqliteStorageConfig,
    iter_bot_documents,
)

SEED = {
    "llm": {"provider": "openai", "model": "gpt-4o"},
    "conversation_storage": {"backend": "memory"},
    "system_prompt": "You are a helpful customer support assistant.",
}


def test_seed_snake_case_dict_parses() -> None:
    cfg = parse_bot_config(SEED)
    assert cfg.llm.provider == "openai"
    assert cfg.llm.model == "gpt-4o"
    assert cfg.system_prompt.startswith("You are")
    assert cfg.conversation_storage.backend == "memory"


def test_cr_camel_case_parses_to_the_same_model() -> None:
    camel = {
        "llm": {"provider": "openai", "model": "gpt-4o"},
        "conversationStorage": {"backend": "memory"},
        "systemPrompt": "You are a helpful customer support assistant.",
    }
    assert parse_bot_config(camel) == parse_bot_config(SEED)


def test_all_documented_fields() -> None:
    cfg = parse_bot_config(
        {
            "llm": {
                "provider": "openai",
                "model": "m",
                "baseUrl": "http://vllm:8000/v1",
                "apiKeySecretRef": {"name": "llm-keys", "key": "openai"},
                "temperature": 0.5,
                "maxTokens": 100,
                "timeout": 5,
                "maxRetries": 0,
            },
            "conversationStorage": {"backend": "sqlite", "path": "/tmp/x.db"},
            "memory": {"type": "buffer", "maxMessages": 4},
            "limits": {"maxMessageChars": 10, "maxHistoryMessages": 6},
        }
    )
    assert cfg.llm.api_key_secret_ref is not None
    assert cfg.llm.api_key_secret_ref.key == "openai"
    assert isinstance(cfg.conversation_storage, SqliteStorageConfig)
    assert cfg.memory.max_messages == 4
    assert cfg.limits.max_history_messages == 6
    # round trip through the CR's spelling
    assert parse_bot_config(cfg.model_dump(by_alias=True)) == cfg


def test_defaults_are_offline_and_in_memory() -> None:
    cfg = parse_bot_config({})
    assert cfg.llm.provider == "echo"
    assert cfg.conversation_storage.backend == "memory"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"llm": {"provider": "openai", "modle": "gpt-4o"}}, "llm.modle"),
        ({"systemPromt": "typo"}, "systemPromt"),
        (
            {"conversationStorage": {"backend": "sqlite", "pth": "x"}},
            "conversationStorage.sqlite.pth",
        ),
        ({"limits": {"maxMessageChars": 0}}, "limits.maxMessageChars"),
        ({"llm": {"provider": "anthropic"}}, "llm.provider"),
        ({"llm": {"temperature": 3}}, "llm.temperature"),
        ({"conversationStorage": {"backend": "redis"}}, "conversationStorage"),
    ],
)
def test_invalid_configs_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config(data, bot_id="b")
    assert field in info.value.fields
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_inline_api_key_is_rejected_without_echoing_it() -> None:
    secret = "sk-live-THIS-MUST-NOT-LEAK"
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config({"llm": {"provider": "openai", "apiKey": secret}})
    assert "apiKeyEnv or apiKeySecretRef" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in repr(info.value.detail)


def test_error_messages_never_contain_input_values() -> None:
    secret = "hunter2-secret-value"
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config({"llm": {"model": secret, "unknownKnob": secret, "temperature": secret}})
    assert secret not in str(info.value)
    assert secret not in repr(info.value.detail)


def test_both_key_sources_rejected() -> None:
    with pytest.raises(ConfigurationError, match="at most one"):
        parse_bot_config({"llm": {"apiKeyEnv": "K", "apiKeySecretRef": {"name": "s", "key": "k"}}})


SECRET = "S3CRET-value-never-echoed"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@h/db",
        f"postgresql://u@h/db?password={SECRET}",
        f"postgresql://u@h/db?pass%77ord={SECRET}",  # libpq decodes the name: a password
        f"postgresql://u@h/db?sslmode=require&sslpassword={SECRET}",
        f"postgres://u:{SECRET}@h1:5432,h2:5432/db",
        f"postgresql://u%3Ax:{SECRET}@h/db",
    ],
)
def test_postgres_url_credentials_found_by_parsing(url: str) -> None:
    spec = {"conversationStorage": {"backend": "postgres", "url": url}}
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config(spec)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.detail)
    assert "conversationStorage.postgres.url" in info.value.fields


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@vllm:8000/v1",
        f"https://api.example/v1?api-key={SECRET}",
        f"https://api.example/v1?API_KEY={SECRET}",
        f"https://api.example/v1?api%2Dkey={SECRET}",
        f"https://api.example/v1?x=1&token={SECRET}",
        f"https://api.example/v1?sig={SECRET}",
    ],
)
def test_base_url_credentials_rejected(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config({"llm": {"provider": "openai", "model": "m", "baseUrl": url}})
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.detail)
    assert "llm.baseUrl" in info.value.fields
    assert "apiKeyEnv" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://vllm.llm.svc:8000/v1",
        "https://my.openai.azure.com/openai/deployments/d?api-version=2024-06-01",
        "http://user@ollama:11434/v1",
        "https://host/v1?keyword=x",
    ],
)
def test_base_url_without_credentials_accepted(url: str) -> None:
    cfg = parse_bot_config({"llm": {"provider": "openai", "model": "m", "baseUrl": url}})
    assert cfg.llm.base_url == url


def test_postgres_url_with_password_rejected() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_bot_config(
            {"conversationStorage": {"backend": "postgres", "url": "postgresql://u:pw@h/db"}}
        )
    assert "pw" not in str(info.value).replace("password", "")
    assert "conversationStorage.postgres.url" in info.value.fields
    ok = parse_bot_config({"conversationStorage": {"backend": "postgres", "urlEnv": "DB_URL"}})
    assert isinstance(ok.conversation_storage, PostgresStorageConfig)


def test_non_mapping_rejected() -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        parse_bot_config(["llm"])


def test_config_is_immutable() -> None:
    cfg = parse_bot_config(SEED)
    with pytest.raises(ValueError, match="frozen"):
        cfg.system_prompt = "x"  # type: ignore[misc]


def test_bot_documents_multi_doc_and_field_paths() -> None:
    text = """
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {name: a, namespace: team-1}
spec: {systemPrompt: hi}
---
---
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata: {name: b}
spec: {llm: {provider: echo}}
"""
    docs = list(iter_bot_documents(text))
    assert [(d.namespace, d.name) for d in docs] == [("team-1", "a"), ("default", "b")]
    assert isinstance(docs[0].spec, BotConfig)
    bad = text.replace("provider: echo", "provder: echo")
    with pytest.raises(ConfigurationError) as info:
        list(iter_bot_documents(bad, source="f.yaml"))
    assert "spec.llm.provder" in info.value.fields
    assert str(info.value).startswith("f.yaml:11:14: default/b: spec.llm.provder: unknown field")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("kind: Bot\nmetadata: {name: a}", "apiVersion"),
        ("apiVersion: kubebots.io/v1alpha1\nkind: Pod\nmetadata: {name: a}", "kind"),
        ("apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata: {}", "metadata.name"),
        ("apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata: {name: A_B}", "metadata.name"),
        ("apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata: {name: a}\nspek: {}", "spek"),
    ],
)
def test_bad_documents(doc: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        list(iter_bot_documents(doc))
    assert field in info.value.fields


def test_invalid_yaml_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        list(iter_bot_documents("a: [unclosed"))
