"""Where API keys come from. Values are fetched when a bot is built and never logged or stored."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .errors import ConfigurationError
from .schema import LLMConfig, SecretKeyRef

#: Sent to keyless OpenAI-compatible endpoints (vLLM, Ollama) that ignore the key.
KEYLESS_PLACEHOLDER = "kubebots-no-key"


class SecretResolver(Protocol):
    """Reads one key of a Kubernetes Secret (or whatever stands in for it)."""

    async def get(self, ref: SecretKeyRef, *, bot_id: str) -> str: ...


class MappingSecretResolver:
    """Secrets from a mapping ``{(name, key): value}`` (tests, embedding)."""

    def __init__(self, values: Mapping[tuple[str, str], str]) -> None:
        self._values = dict(values)

    async def get(self, ref: SecretKeyRef, *, bot_id: str) -> str:
        try:
            return self._values[(ref.name, ref.key)]
        except KeyError:
            raise _missing(ref, bot_id) from None


class DirectorySecretResolver:
    """Secrets mounted as files: ``<root>/<secret name>/<key>`` (a Secret volume per name)."""

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root)

    async def get(self, ref: SecretKeyRef, *, bot_id: str) -> str:
        path = self._root / ref.name / ref.key
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        except OSError:
            raise _missing(ref, bot_id) from None
        return text.strip()


def _missing(ref: SecretKeyRef, bot_id: str) -> ConfigurationError:
    reason = f"Secret '{ref.name}' has no key '{ref.key}' (or is not readable)"
    return ConfigurationError(
        f"bot '{bot_id}': {reason}", errors=[("llm.apiKeySecretRef", reason)], bot_id=bot_id
    )


async def resolve_api_key(
    llm: LLMConfig,
    *,
    bot_id: str,
    env: Mapping[str, str],
    secrets: SecretResolver | None,
) -> str | None:
    """The API key for ``llm``, or ``None`` for providers that need none."""
    if llm.provider == "echo":
        return None
    if llm.api_key_env is not None:
        value = env.get(llm.api_key_env)
        if not value:
            reason = f"environment variable {llm.api_key_env} is not set"
            raise ConfigurationError(
                f"bot '{bot_id}': {reason}", errors=[("llm.apiKeyEnv", reason)], bot_id=bot_id
            )
        return value
    if llm.api_key_secret_ref is not None:
        if secrets is None:
            reason = "no secret resolver is configured in this process"
            raise ConfigurationError(
                f"bot '{bot_id}': {reason}",
                errors=[("llm.apiKeySecretRef", reason)],
                bot_id=bot_id,
            )
        return await secrets.get(llm.api_key_secret_ref, bot_id=bot_id)
    if env.get("OPENAI_API_KEY"):
        return env["OPENAI_API_KEY"]
    if llm.base_url is None:
        reason = "the openai provider at api.openai.com needs apiKeyEnv or apiKeySecretRef"
        raise ConfigurationError(
            f"bot '{bot_id}': {reason}", errors=[("llm", reason)], bot_id=bot_id
        )
    return KEYLESS_PLACEHOLDER
