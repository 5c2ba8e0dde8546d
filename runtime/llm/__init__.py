"""LLM providers: the :class:`LLMProvider` protocol, its implementations and a factory.

The ``openai`` SDK is imported on first use (building an openai bot, or touching
``OpenAIProvider``): it is a third of a runtime's start-up time and ~20 MB of memory, which a
replica serving only echo bots (or none yet: bots are built lazily) should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from ..errors import ConfigurationError
from ..schema.llm import LLMConfig
from .base import (
    ChatMessage,
    Completion,
    Delta,
    LLMProvider,
    Role,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageSink,
    joined,
)
from .echo import EchoProvider

if TYPE_CHECKING:
    from .openai_provider import OpenAIProvider

__all__ = [
    "ChatMessage",
    "Completion",
    "Delta",
    "EchoProvider",
    "LLMProvider",
    "OpenAIProvider",
    "Role",
    "Settings",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "UsageSink",
    "build_provider",
    "joined",
]


def build_provider(
    config: LLMConfig, *, api_key: str | None, http_client: httpx.AsyncClient | None = None
) -> LLMProvider:
    """The provider ``config`` asks for.

    ``api_key`` is resolved by the caller (keyless endpoints get a placeholder); ``None`` is an
    error for the ``openai`` provider and ignored by ``echo``. A passed ``http_client`` is shared
    and stays open when the provider is closed.
    """
    if config.provider == "echo":
        return EchoProvider(config.model, max_tokens=config.max_tokens)
    if config.provider == "openai":
        if api_key is None:
            raise ConfigurationError(
                "llm: the openai provider needs an API key (set apiKeyEnv or apiKeySecretRef; "
                "keyless endpoints take any placeholder value)",
                errors=[("llm", "no API key source resolved")],
            )
        from .openai_provider import OpenAIProvider

        return OpenAIProvider(config, api_key=api_key, http_client=http_client)
    raise ConfigurationError(  # pragma: no cover - LLMConfig.provider is a closed Literal
        f"llm: unknown provider {config.provider!r}",
        errors=[("llm.provider", "unknown provider")],
    )


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from .openai_provider import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
