"""A provider for OpenAI and any OpenAI-compatible endpoint (vLLM, Ollama, LiteLLM, ...).

Errors from the ``openai`` client become :class:`~kubebots.runtime.errors.LLMError`s whose
messages are built here: they name the status, model and endpoint host, never the API key, and
they are raised outside the ``except`` block so neither ``__cause__`` nor ``__context__`` carries
the upstream exception (whose text can echo the key).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from ..errors import (
    ConfigurationError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from ..schema.llm import LLMConfig
from .base import ChatMessage, Completion, Usage, UsageSink

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MAX_UPSTREAM_TEXT = 300
_MIN_REDACTED_KEY = 6


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP date), else None."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _to_wire(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


class OpenAIProvider:
    """Chat completions through ``openai.AsyncOpenAI``; retries and timeouts per ``LLMConfig``.

    A passed-in ``http_client`` is shared: :meth:`close` leaves it open for its owner.
    """

    def __init__(
        self, config: LLMConfig, *, api_key: str, http_client: httpx.AsyncClient | None = None
    ) -> None:
        if not api_key:
            raise ConfigurationError(
                "llm: the openai provider needs a non-empty API key",
                errors=[("llm", "empty API key")],
            )
        self.model = config.model
        self.base_url = config.base_url or DEFAULT_BASE_URL
        self._config = config
        self._api_key = api_key
        self._host = urlsplit(self.base_url).netloc.rpartition("@")[2] or "?"
        self._owns_client = http_client is None
        self._closed = False
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=config.timeout,
            max_retries=config.max_retries,
            # openai>=3 types this as httpx2.AsyncClient but accepts (legacy) httpx clients.
            http_client=cast(Any, http_client),
        )

    async def complete(self, messages: Sequence[ChatMessage]) -> Completion:
        """The whole reply, with usage when the endpoint reports it."""
        self._check_open()
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[_to_wire(m) for m in messages],
                temperature=self._temperature,
                max_tokens=self._max_tokens,
            )
        except openai.OpenAIError as exc:
            error = self._translate(exc)
        else:
            return self._completion(response)
        raise error

    async def stream(
        self, messages: Sequence[ChatMessage], *, on_usage: UsageSink | None = None
    ) -> AsyncIterator[str]:
        """The reply as non-empty content deltas, in order. The endpoint is asked for the
        usage chunk (``stream_options.include_usage``) and ``on_usage`` gets it if it comes."""
        self._check_open()
        error: LLMError | None = None
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=[_to_wire(m) for m in messages],
                stream=True,
                stream_options={"include_usage": True},
                temperature=self._temperature,
                max_tokens=self._max_tokens,
            )
            async with chunks:
                async for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
                    if chunk.usage is not None and on_usage is not None:
                        on_usage(Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens))
        except openai.OpenAIError as exc:
            error = self._translate(exc)
        if error is not None:
            raise error

    async def close(self) -> None:
        """Close the client this provider created (never a shared one). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def _temperature(self) -> float | openai.Omit:
        return openai.omit if self._config.temperature is None else self._config.temperature

    @property
    def _max_tokens(self) -> int | openai.Omit:
        return openai.omit if self._config.max_tokens is None else self._config.max_tokens

    def _check_open(self) -> None:
        if self._closed:
            raise LLMUnavailableError(f"the LLM provider for {self._where} was closed")

    @property
    def _where(self) -> str:
        return f"model {self.model!r} at {self._host}"

    def _completion(self, response: ChatCompletion) -> Completion:
        if not response.choices:
            raise LLMUnavailableError(f"the LLM returned no choices ({self._where})")
        usage = None
        if response.usage is not None:
            usage = Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
        return Completion(response.choices[0].message.content or "", usage=usage)

    def _upstream_text(self, exc: openai.APIError) -> str:
        """The upstream error message, key redacted and shortened, as a ``": ..."`` suffix."""
        body = exc.body
        text = body.get("message") if isinstance(body, dict) else body
        if not isinstance(text, str) or not text.strip():
            return ""
        if len(self._api_key) >= _MIN_REDACTED_KEY:
            text = text.replace(self._api_key, "***")
        return ": " + text.strip()[:_MAX_UPSTREAM_TEXT]

    def _translate(self, exc: openai.OpenAIError) -> LLMError:
        """Our error for an ``openai`` error; its message never contains the API key."""
        where = self._where
        if isinstance(exc, openai.APITimeoutError):
            return LLMTimeoutError(
                f"the LLM did not answer within {self._config.timeout:g}s "
                f"({where}, {self._config.max_retries} retries)"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
            return LLMUnavailableError(f"the connection to the LLM failed ({where}){cause}")
        if isinstance(exc, openai.RateLimitError):
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
            hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            return RateLimitError(
                f"the LLM is rate limited (HTTP 429, {where}){hint}", retry_after=retry_after
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status >= 500:
                text = self._upstream_text(exc)
                return LLMUnavailableError(f"the LLM failed (HTTP {status}, {where}){text}")
            if status in (401, 403):
                return LLMRequestError(
                    f"the LLM rejected the API key (HTTP {status}, {where})", status_code=status
                )
            text = self._upstream_text(exc)
            return LLMRequestError(
                f"the LLM refused the request (HTTP {status}, {where}){text}", status_code=status
            )
        if isinstance(exc, openai.APIError):
            text = self._upstream_text(exc)
            return LLMUnavailableError(f"the LLM reported an error ({where}){text}")
        return LLMError(f"the LLM client failed ({where}): {type(exc).__name__}")
