"""The HTTP errors of ``kubebots.runtime.api``, and the one table mapping library errors to them.

Two exception trees meet here, and several class names are in both on purpose (the guide
imports ``BotCreationError``, ``ConfigurationError``, ``RateLimitError``... from
``kubebots.runtime.api``):

* **library errors**, :mod:`kubebots.runtime.errors` (``KubebotsError`` and below): raised by
  bots, the manager and the stores; they know nothing about HTTP.
* **HTTP errors**, this module (:class:`APIError` and below): each knows its status code and
  renders as the guide's error body. Routes raise them; :func:`as_api_error` turns anything
  else into one, library errors by this table (the nearest class in the error's MRO wins):

================================  ======  ==========================================
library error                     status  HTTP error (``error`` in the body)
================================  ======  ==========================================
UnknownBotError                   404     BotNotFoundError
InvalidBotIdError                 422     ValidationError (field ``bot_id``)
InvalidContextError               422     ValidationError (the field it names)
MessageRejectedError              422     ValidationError (field ``message``) [1]
ConfigurationError                500     ConfigurationError (library message) [2]
BotCreationError                  503     BotCreationError [3]
BotClosedError                    503     ServiceUnavailableError, ``Retry-After: 1``
StorageError                      503     ServiceUnavailableError naming the component [4],
                                          ``Retry-After: 1``
RateLimitError (upstream 429)     429     RateLimitError, always ``Retry-After`` [5]
LLMTimeoutError                   504     UpstreamTimeoutError [6]
LLMUnavailableError (5xx, conn.)  502     UpstreamError [6]
LLMBadRequestError (upstream 400) 400     UpstreamBadRequestError [6]
LLMRequestError (401/403/404/4xx) 502     UpstreamError [6]
LLMError (any other)              502     UpstreamError [6]
any other KubebotsError           500     its class name, its message
any other exception               500     InternalServerError, a fixed message
================================  ======  ==========================================

[1] Also when the message is longer than the bot's ``max_message_chars`` (the detail carries
    ``max_message_chars`` and ``length``): 413 is kept for bodies over the server's byte limit,
    so clients can tell the two apart. [2] A broken config stays broken until someone fixes it,
    so 500 rather than a retryable 503. Loaders that raise ``KeyError``/``LookupError`` or return
    ``None`` for an unknown bot get a 404; any other loader exception (e.g. the guide's
    ``ValueError("Unknown bot: x")``) is a configuration failure, hence 500. [3] Building a bot
    fails for reasons other than its config (storage, provider) that are usually transient, so
    clients may retry. [4] Storage errors can name files or servers, so the client gets a
    generic message and the log the real one. [5] The upstream's ``Retry-After`` (or
    ``retry-after-ms``), else the backoff the provider computed, else 1 s: a 429 without one
    makes SDKs retry at once. [6] The client gets the error's ``public_message``, and its
    ``code`` (and ``param``, if the upstream named one) in ``detail``; never its ``message``,
    which names the endpoint and may quote the upstream's text: that goes to the log only (the
    provider logs it, keys redacted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .. import errors as lib

#: What a client is told about an exception that is not an error of ours (never its text).
INTERNAL_MESSAGE = "An internal error occurred"


class APIError(Exception):
    """An error the API answers with ``status_code`` and a ``{error, message, detail}`` body.

    ``error`` defaults to the class name; ``detail`` must be JSON-serialisable and hold no
    secrets; ``headers`` are added to the response (e.g. ``Retry-After``). ``code`` (an
    OpenAI-style error code) and ``param`` (the request field at fault) are for renderings
    that have room for them (the OpenAI shape on ``/v1``); the guide's body shows them only
    where a class copies them into ``detail``.
    """

    status_code: int = 500

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        detail: Mapping[str, Any] | None = None,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.error = error or type(self).__name__
        self.detail: dict[str, Any] = dict(detail or {})
        self.headers: dict[str, str] | None = dict(headers) if headers else None
        self.code = code
        self.param = param

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.message!r})"


class BotNotFoundError(APIError):
    """404: no bot with this id (or none this caller may see)."""

    status_code = 404

    def __init__(self, bot_id: str) -> None:
        super().__init__(f"Bot with ID '{bot_id}' not found", detail={"bot_id": bot_id})
        self.bot_id = bot_id


class BotCreationError(APIError):
    """503 by default: the bot could not be built for a (usually transient) non-config reason."""

    status_code = 503

    def __init__(self, bot_id: str, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(
            f"Failed to create bot '{bot_id}': {reason}",
            status_code,
            {"bot_id": bot_id, "reason": reason},
        )
        self.bot_id = bot_id
        self.reason = reason


class ConversationNotFoundError(APIError):
    """404: no such conversation for this bot and client."""

    status_code = 404

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            f"Conversation with ID '{conversation_id}' not found",
            detail={"conversation_id": conversation_id},
        )
        self.conversation_id = conversation_id


class ValidationError(APIError):
    """422: the request is well-formed but its content is not acceptable."""

    status_code = 422

    def __init__(self, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, detail=detail)


class ConfigurationError(APIError):
    """500: a bot's (or the service's) configuration is missing or invalid (see [2] above)."""

    status_code = 500

    def __init__(self, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, detail=detail)


def retry_after_header(seconds: float | None) -> dict[str, str] | None:
    """``{"Retry-After": n}`` with ``n`` whole seconds (rounded up, at least 1), or ``None``."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RateLimitError(APIError):
    """429, with ``Retry-After`` (whole seconds, rounded up, at least 1) when known."""

    status_code = 429

    def __init__(
        self,
        message: str = "Rate limit exceeded",
        retry_after: float | None = None,
        *,
        code: str | None = "rate_limit_exceeded",
    ) -> None:
        super().__init__(
            message,
            detail={"retry_after": retry_after},
            headers=retry_after_header(retry_after),
            code=code,
        )
        self.retry_after = retry_after


class AuthenticationError(APIError):
    """401: no or an invalid credential; asks for a bearer token."""

    status_code = 401

    def __init__(
        self, message: str = "Authentication required", detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class PermissionDeniedError(APIError):
    """403: the caller is known but may not do this."""

    status_code = 403

    def __init__(
        self, message: str = "Permission denied", detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, detail=detail)


class PayloadTooLargeError(APIError):
    """413: the request body exceeds the server's byte limit."""

    status_code = 413

    def __init__(
        self, message: str = "Request body too large", *, max_bytes: int | None = None
    ) -> None:
        super().__init__(message, detail={"max_bytes": max_bytes} if max_bytes else None)
        self.max_bytes = max_bytes


class ServiceUnavailableError(APIError):
    """503: try again later (``Retry-After`` when ``retry_after`` is given)."""

    status_code = 503

    def __init__(
        self,
        message: str = "Service unavailable",
        detail: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, detail=detail, headers=retry_after_header(retry_after))
        self.retry_after = retry_after


class BotManagerNotInitialisedError(ServiceUnavailableError, RuntimeError):
    """503 (and a ``RuntimeError``): ``get_bot_manager()`` before ``init_bot_manager()``."""

    def __init__(self) -> None:
        super().__init__("bot manager not initialised: call init_bot_manager() at startup")
        self.error = "ServiceUnavailableError"


class UpstreamError(APIError):
    """502: the LLM provider failed or refused the request."""

    status_code = 502

    def __init__(
        self,
        message: str = "Upstream service failed",
        detail: Mapping[str, Any] | None = None,
        *,
        code: str | None = "upstream_error",
    ) -> None:
        super().__init__(message, detail=detail, code=code)


class UpstreamTimeoutError(APIError):
    """504: the LLM provider did not answer in time."""

    status_code = 504

    def __init__(
        self,
        message: str = "Upstream service timed out",
        detail: Mapping[str, Any] | None = None,
        *,
        code: str | None = "upstream_timeout",
    ) -> None:
        super().__init__(message, detail=detail, code=code)


class UpstreamBadRequestError(APIError):
    """400: the LLM provider rejected the request as invalid; it cannot succeed as sent (e.g.
    the conversation exceeds the model's context), so clients must not retry it unchanged."""

    status_code = 400

    def __init__(
        self,
        message: str = "The bot's LLM rejected the request as invalid",
        detail: Mapping[str, Any] | None = None,
        *,
        code: str | None = "invalid_request",
        param: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail, code=code, param=param)


# -- the table: library errors -> HTTP errors ---------------------------------------------------


def _unknown_bot(exc: lib.UnknownBotError) -> APIError:
    bot_id = exc.detail.get("bot_id")
    if isinstance(bot_id, str):
        return BotNotFoundError(bot_id)
    return APIError(exc.message, 404, exc.detail, error="BotNotFoundError")


def _invalid(field: str) -> Callable[[lib.KubebotsError], APIError]:
    def convert(exc: lib.KubebotsError) -> APIError:
        extra = {k: v for k, v in exc.detail.items() if k != "field"}
        return ValidationError(
            exc.message, {"errors": [{"field": field, "reason": exc.message}], **extra}
        )

    return convert


#: ``Retry-After`` for an upstream 429 that came with none and had none computed.
DEFAULT_UPSTREAM_RETRY_AFTER = 1.0


def _upstream(err: APIError, exc: lib.LLMError) -> APIError:
    """``err`` with the upstream error's ``code`` (and ``param``), also in its detail."""
    err.code, err.param = exc.code, exc.param
    err.detail["code"] = exc.code
    if exc.param is not None:
        err.detail["param"] = exc.param
    return err


def _rate_limited(exc: lib.RateLimitError) -> APIError:
    retry_after = exc.retry_after
    if retry_after is None or not math.isfinite(retry_after):
        retry_after = DEFAULT_UPSTREAM_RETRY_AFTER
    return _upstream(RateLimitError(exc.public_message, retry_after=retry_after), exc)


def _upstream_refused(exc: lib.LLMRequestError) -> APIError:
    return _upstream(UpstreamError(exc.public_message, {"status_code": exc.status_code}), exc)


_MAPPERS: dict[type[lib.KubebotsError], Callable[[Any], APIError]] = {
    lib.UnknownBotError: _unknown_bot,
    lib.InvalidBotIdError: _invalid("bot_id"),
    lib.InvalidContextError: lambda e: _invalid(str(e.detail.get("field", "body")))(e),
    lib.MessageRejectedError: _invalid("message"),
    lib.ConfigurationError: lambda e: ConfigurationError(e.message, e.detail),
    lib.BotCreationError: lambda e: APIError(e.message, 503, e.detail, error="BotCreationError"),
    lib.BotClosedError: lambda e: ServiceUnavailableError(e.message, e.detail, retry_after=1),
    lib.StorageError: lambda e: ServiceUnavailableError(
        f"{e.component} is unavailable", retry_after=1
    ),
    lib.RateLimitError: _rate_limited,
    lib.LLMTimeoutError: lambda e: _upstream(UpstreamTimeoutError(e.public_message), e),
    lib.LLMUnavailableError: lambda e: _upstream(UpstreamError(e.public_message), e),
    lib.LLMBadRequestError: lambda e: _upstream(UpstreamBadRequestError(e.public_message), e),
    lib.LLMRequestError: _upstream_refused,
    lib.LLMError: lambda e: _upstream(UpstreamError(e.public_message), e),
}


def to_api_error(exc: lib.KubebotsError) -> APIError:
    """The API error for a library error (the nearest mapped class in its MRO wins)."""
    for cls in type(exc).__mro__:
        mapper = _MAPPERS.get(cls)
        if mapper is not None:
            return mapper(exc)
    return APIError(exc.message, 500, exc.detail, error=type(exc).__name__)


def as_api_error(exc: BaseException) -> APIError:
    """``exc`` itself, its translation, or the generic 500 that reveals nothing about it."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, lib.KubebotsError):
        return to_api_error(exc)
    return APIError(INTERNAL_MESSAGE, 500, error="InternalServerError")
