"""A provider for OpenAI and any OpenAI-compatible endpoint (vLLM, Ollama, LiteLLM, ...).

Errors from the ``openai`` client become :class:`~kubebots.runtime.errors.LLMError`s whose
messages are built here: they name the status, model and endpoint host, never the API key, and
they are raised outside the ``except`` block so neither ``__cause__`` nor ``__context__`` carries
the upstream exception (whose text can echo the key).
"""

from __future__ import annotations

import email.utils
import inspect
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from ..errors import (
    ConfigurationError,
    LLMBadRequestError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from ..schema.llm import LLMConfig
from .base import (
    ChatMessage,
    Completion,
    Delta,
    Settings,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageSink,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MAX_UPSTREAM_TEXT = 300
_MIN_REDACTED_KEY = 6

log = logging.getLogger("kubebots.runtime.llm")

#: Upstream ``code``/``param`` values passed on to clients: short identifiers only, never text.
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")
#: How vLLM/llama.cpp/LiteLLM word a context overflow in a 400 that names no ``code``.
_CONTEXT_TOO_LONG = re.compile(r"context length|context window|too many tokens", re.IGNORECASE)
#: Public messages for upstream 400 codes worth explaining (the rest get the generic one).
_BAD_REQUEST_MESSAGES = {
    "context_length_exceeded": "The conversation is too long for the bot's model "
    "(its context length was exceeded)",
}


def _identifier(value: object) -> str | None:
    return value if isinstance(value, str) and _IDENTIFIER_RE.fullmatch(value) else None


def upstream_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a response's ``retry-after-ms`` (OpenAI's) or ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return parse_retry_after(headers.get("retry-after"))


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


#: Settings the provider sets itself: a request's settings may not name them.
_RESERVED = frozenset(
    {"model", "messages", "stream", "stream_options", "timeout"}
    | {"extra_headers", "extra_query", "extra_body"}
)
#: The settings ``chat.completions.create`` takes by name (of the installed SDK); others
#: (an endpoint's own, e.g. vLLM's ``top_k``) are sent in ``extra_body``.
_NAMED = frozenset(inspect.signature(AsyncCompletions.create).parameters) - _RESERVED - {"self"}


def _to_wire(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "tool":
        return {
            "role": "tool",
            "content": message.content,
            "tool_call_id": message.tool_call_id or "",
        }
    if message.role == "assistant" and message.tool_calls:
        calls: list[ChatCompletionMessageFunctionToolCallParam] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        return {"role": "assistant", "content": message.content or None, "tool_calls": calls}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _delta(chunk: ChatCompletionChunk) -> Delta | None:
    """The :class:`Delta` of one streamed chunk, None when it carries nothing (role, usage)."""
    if not chunk.choices:
        return None
    choice = chunk.choices[0]
    calls = tuple(
        ToolCallDelta(
            call.index,
            call.id,
            call.function.name if call.function else None,
            (call.function.arguments or "") if call.function else "",
        )
        for call in choice.delta.tool_calls or ()
    )
    delta = Delta(choice.delta.content or "", calls, choice.finish_reason)
    return delta if delta != Delta() else None


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

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        """The whole reply (text, tool calls, finish reason), with usage when the endpoint
        reports it. Every setting in ``settings`` is sent, over the Bot's defaults."""
        self._check_open()
        request = self._request(messages, settings)
        try:
            response = await self._client.chat.completions.create(**request)
        except openai.OpenAIError as exc:
            error = self._translate(exc)
        else:
            return self._completion(response)
        raise error

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        """The reply as deltas, in order: text, tool call pieces and the finish reason (chunks
        carrying none of them are skipped). Settings as in :meth:`complete`. The endpoint is
        asked for the usage chunk (``stream_options.include_usage``); ``on_usage`` gets it."""
        self._check_open()
        request = self._request(messages, settings)
        error: LLMError | None = None
        try:
            chunks = await self._client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
            async with chunks:
                async for chunk in chunks:
                    delta = _delta(chunk)
                    if delta is not None:
                        yield delta
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

    def _request(
        self, messages: Sequence[ChatMessage], settings: Settings | None
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create``: the model, the messages, the
        Bot's ``temperature`` / ``max_tokens`` defaults, then ``settings`` over them (a
        ``max_completion_tokens`` replaces the default ``max_tokens``)."""
        settings = settings or {}
        reserved = sorted(_RESERVED & settings.keys())
        if reserved:
            raise ValueError(f"request settings may not set {', '.join(reserved)}")
        request: dict[str, Any] = {"model": self.model, "messages": [_to_wire(m) for m in messages]}
        if self._config.temperature is not None:
            request["temperature"] = self._config.temperature
        if self._config.max_tokens is not None and "max_completion_tokens" not in settings:
            request["max_tokens"] = self._config.max_tokens
        request |= {name: value for name, value in settings.items() if name in _NAMED}
        extra = {name: value for name, value in settings.items() if name not in _NAMED}
        if extra:
            request["extra_body"] = extra
        return request

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
        choice = response.choices[0]
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments)
            for call in choice.message.tool_calls or ()
            if call.type == "function"
        )
        return Completion(
            choice.message.content or "", usage, calls, choice.finish_reason or "stop"
        )

    def _upstream_text(self, exc: openai.APIError) -> str:
        """The upstream error message, key redacted and shortened, as a ``": ..."`` suffix
        (for the log only: clients get the error's ``public_message``)."""
        body = exc.body
        text = body.get("message") if isinstance(body, dict) else body
        if not isinstance(text, str) or not text.strip():
            return ""
        if len(self._api_key) >= _MIN_REDACTED_KEY:
            text = text.replace(self._api_key, "***")
        return ": " + text.strip()[:_MAX_UPSTREAM_TEXT]

    def _translate(self, exc: openai.OpenAIError) -> LLMError:
        """Our error for an ``openai`` error, logged here with its detail (endpoint, status,
        upstream text; never the API key). Clients see only its ``public_message``/``code``."""
        error = self._classify(exc)
        log.warning("LLM call failed: %s", error.message)
        return error

    def _classify(self, exc: openai.OpenAIError) -> LLMError:
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
            retry_after = upstream_retry_after(exc.response.headers)
            hint = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            return RateLimitError(
                f"the LLM is rate limited (HTTP 429, {where}){hint}", retry_after=retry_after
            )
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, exc.status_code)
        if isinstance(exc, openai.APIError):
            text = self._upstream_text(exc)
            return LLMUnavailableError(f"the LLM reported an error ({where}){text}")
        return LLMError(f"the LLM client failed ({where}): {type(exc).__name__}")

    def _status_error(self, exc: openai.APIStatusError, status: int) -> LLMError:
        where = self._where
        text = self._upstream_text(exc)
        if status >= 500:
            return LLMUnavailableError(f"the LLM failed (HTTP {status}, {where}){text}")
        if status in (401, 403):
            return LLMRequestError(
                f"the LLM rejected the API key (HTTP {status}, {where})",
                status_code=status,
                public_message="The bot's LLM rejected its credentials",
                code="upstream_authentication_failed",
            )
        if status == 400:
            code = _identifier(exc.code) or (
                "context_length_exceeded" if _CONTEXT_TOO_LONG.search(text) else None
            )
            return LLMBadRequestError(
                f"the LLM rejected the request as invalid (HTTP 400, {where}){text}",
                public_message=_BAD_REQUEST_MESSAGES.get(code or ""),
                code=code,
                param=_identifier(exc.param),
            )
        if status == 404:
            return LLMRequestError(
                f"the LLM does not know the model (HTTP 404, {where}){text}",
                status_code=status,
                public_message="The bot's LLM does not serve the bot's model",
                code="upstream_model_not_found",
            )
        return LLMRequestError(
            f"the LLM refused the request (HTTP {status}, {where}){text}", status_code=status
        )
