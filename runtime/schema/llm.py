"""The ``llm`` section: which provider answers, and how it is reached."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._base import ENV_NAME_PATTERN, SchemaModel
from .urls import HTTP_SECRET_PARAMS, url_credentials

#: Keys that would carry a key value inline. They are rejected with a pointer to the safe fields.
INLINE_KEY_FIELDS = frozenset({"apiKey", "api_key", "key", "token", "apiToken", "api_token"})


class SecretKeyRef(SchemaModel):
    """A key of a Secret in the Bot's namespace (resolved by the runtime, never stored)."""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class LLMConfig(SchemaModel):
    """How the bot reaches its LLM. API keys are referenced, never written inline."""

    provider: Literal["openai", "echo"] = Field(
        default="echo", description="`openai` (any OpenAI-compatible endpoint) or `echo` (offline)."
    )
    model: str = Field(default="echo", min_length=1, max_length=200)
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1 (default: OpenAI).",
    )
    api_key_env: str | None = Field(
        default=None,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable holding the API key.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret (in the Bot's namespace) and key holding the API key."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    timeout: float = Field(default=60.0, gt=0.0, le=3600.0, description="Seconds per attempt.")
    max_retries: int = Field(default=2, ge=0, le=10)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        found = url_credentials(value, secret_params=HTTP_SECRET_PARAMS) if value else []
        if found:
            raise ValueError(
                f"must not hold credentials ({', '.join(found)}); "
                "give the key by apiKeyEnv or apiKeySecretRef"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_inline_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            inline = sorted(k for k in data if k in INLINE_KEY_FIELDS)
            if inline:
                raise ValueError(
                    f"inline API keys are not allowed ({', '.join(inline)}); "
                    "use apiKeyEnv or apiKeySecretRef"
                )
        return data

    @model_validator(mode="after")
    def _one_key_source(self) -> LLMConfig:
        if self.api_key_env is not None and self.api_key_secret_ref is not None:
            raise ValueError("set at most one of apiKeyEnv and apiKeySecretRef")
        return self
