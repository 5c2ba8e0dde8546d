"""Tool headers resolve from a value, an environment variable or a Secret; failures name the
field, never a value."""

from __future__ import annotations

import pytest

from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.schema.tools import ToolHeader
from kubebots.runtime.secrets import MappingSecretResolver
from kubebots.runtime.tools.headers import resolve_headers

SECRETS = MappingSecretResolver({("weather", "token"): "Bearer s3cr3t-from-secret"})


def header(**fields: object) -> ToolHeader:
    return ToolHeader.model_validate(fields)


async def test_values_env_and_secrets_resolve() -> None:
    headers = [
        header(name="X-Client", value="kubebots"),
        header(name="X-Api-Key", valueFromEnv="WEATHER_KEY"),
        header(name="Authorization", secretRef={"name": "weather", "key": "token"}),
    ]
    resolved = await resolve_headers(
        headers,
        field="tools.http.0.headers",
        bot_id="b",
        env={"WEATHER_KEY": "env-s3cr3t"},
        secrets=SECRETS,
    )
    assert resolved == {
        "X-Client": "kubebots",
        "X-Api-Key": "env-s3cr3t",
        "Authorization": "Bearer s3cr3t-from-secret",
    }


async def test_a_missing_secret_key_names_the_field_and_no_value() -> None:
    headers = [
        header(name="X-Client", value="kubebots"),
        header(name="Authorization", secretRef={"name": "weather", "key": "nope"}),
    ]
    with pytest.raises(ConfigurationError) as caught:
        await resolve_headers(
            headers, field="tools.http.1.headers", bot_id="b", env={}, secrets=SECRETS
        )
    assert caught.value.fields == ["tools.http.1.headers.1.secretRef"]
    assert "s3cr3t" not in caught.value.message + str(caught.value.detail)


async def test_a_missing_env_or_resolver_names_the_field() -> None:
    env_header = [header(name="X-Api-Key", valueFromEnv="UNSET_KEY")]
    with pytest.raises(ConfigurationError) as caught:
        await resolve_headers(
            env_header, field="tools.mcp.0.headers", bot_id="b", env={}, secrets=None
        )
    assert caught.value.fields == ["tools.mcp.0.headers.0.valueFromEnv"]
    secret_header = [header(name="Authorization", secretRef={"name": "weather", "key": "token"})]
    with pytest.raises(ConfigurationError) as caught:
        await resolve_headers(
            secret_header, field="tools.mcp.0.headers", bot_id="b", env={}, secrets=None
        )
    assert caught.value.fields == ["tools.mcp.0.headers.0.secretRef"]


async def test_a_value_with_a_line_break_is_refused_without_the_value() -> None:
    headers = [header(name="X-Api-Key", valueFromEnv="KEY")]
    with pytest.raises(ConfigurationError) as caught:
        await resolve_headers(
            headers,
            field="tools.http.0.headers",
            bot_id="b",
            env={"KEY": "a\r\nX-Evil: 1"},
            secrets=None,
        )
    assert caught.value.fields == ["tools.http.0.headers.0"]
    assert "X-Evil" not in caught.value.message
