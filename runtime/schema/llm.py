"""The ``llm`` section: which provider answers, and how it is reached."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from ._base import ENV_NAME_PATTERN, SchemaModel
from .urls import HTTP_SECRET_PARAMS, url_credentials

#: The request settings a ``/v1`` request may set for the upstream (OpenAI's names), which
#: ``llm.allowRequestOverrides`` can narrow.
RequestSetting = Literal[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
]

#: Keys that would carry a key value inline. They are rejected with a pointer to the safe fields.
INLINE_KEY_FIELDS = frozenset({"apiKey", "api_key", "key", "token", "apiToken", "api_token"})


class SecretKeyRef(SchemaModel):
    """A key of a Secret in the Bot's namespace (resolved by the runtime, never stored)."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The Secret's name.",
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The key in the Secret's data.",
    )


#: At most this many ``llm.fallbacks``.
MAX_FALLBACKS = 5

_BASE_URL_PATTERN = r"^https?://[^\s]+$"


class _Endpoint(SchemaModel):
    """What an OpenAI-compatible endpoint is reached by: its URL and where its key comes from
    (referenced, never inline), with the checks both the bot's endpoint and its fallbacks need."""

    base_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=_BASE_URL_PATTERN,
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
    def _one_key_source(self) -> Self:
        if self.api_key_env is not None and self.api_key_secret_ref is not None:
            raise ValueError("set at most one of apiKeyEnv and apiKeySecretRef")
        return self


class FallbackEndpoint(_Endpoint):
    """An OpenAI-compatible endpoint tried, in order, when the ones before it are rate limited
    (429), fail (5xx, connection) or time out; never after a 400. Its own model, endpoint and
    key source (referenced, never inline, like the bot's); ``timeout`` and ``maxRetries``
    default to the bot's."""

    model: str = Field(
        min_length=1, max_length=200, description="The model this endpoint is asked for."
    )
    timeout: float | None = Field(
        default=None, gt=0.0, le=3600.0, description="Seconds per attempt (default: the bot's)."
    )
    max_retries: int | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Retries of a failed call on this endpoint (default: the bot's).",
    )

    def llm_config(self, primary: LLMConfig) -> LLMConfig:
        """This endpoint as an ``openai`` config: the bot's settings with this endpoint's."""
        return primary.model_copy(
            update={
                "model": self.model,
                "base_url": self.base_url,
                "api_key_env": self.api_key_env,
                "api_key_secret_ref": self.api_key_secret_ref,
                "timeout": primary.timeout if self.timeout is None else self.timeout,
                "max_retries": (
                    primary.max_retries if self.max_retries is None else self.max_retries
                ),
                "fallbacks": [],
            }
        )


class LLMConfig(_Endpoint):
    """How the bot reaches its LLM. API keys are referenced, never written inline."""

    provider: Literal["openai", "echo"] = Field(
        default="echo", description="`openai` (any OpenAI-compatible endpoint) or `echo` (offline)."
    )
    model: str = Field(
        default="echo",
        min_length=1,
        max_length=200,
        description="The model name the endpoint is asked for, e.g. gpt-4o-mini.",
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Sampling temperature (unset: the model's)."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Most tokens in one reply (unset: no cap)."
    )
    timeout: float = Field(default=60.0, gt=0.0, le=3600.0, description="Seconds per attempt.")
    max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a call that was rate limited, failed or timed out.",
    )
    fallbacks: list[FallbackEndpoint] = Field(
        default_factory=list,
        max_length=MAX_FALLBACKS,
        description="Endpoints tried in order when this one is rate limited, fails or times "
        "out (openai provider only).",
    )
    cooldown_seconds: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description="With fallbacks: how long an endpoint that failed is skipped (unless all "
        "are cooling down).",
    )
    allow_request_overrides: list[RequestSetting] | None = Field(
        default=None,
        max_length=13,
        description="The request settings /v1 clients may set (OpenAI's names, e.g. "
        "temperature, max_tokens, tools); unset: all of them, []: none. maxTokens is a "
        "ceiling on max_tokens either way.",
    )

    @model_validator(mode="after")
    def _fallbacks_need_openai(self) -> LLMConfig:
        if self.fallbacks and self.provider != "openai":
            raise ValueError("fallbacks need the openai provider")
        return self
