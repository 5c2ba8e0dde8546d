"""Exception handlers: every error the API answers has the guide's body, and nothing else.

``{"error": str, "message": str, "detail": object | null, "timestamp": "...+00:00"}``

Library errors (:mod:`kubebots.runtime.errors`) are translated by :func:`to_api_error`:

================================  ======  ==========================================
library error                     status  ``error``
================================  ======  ==========================================
UnknownBotError                   404     BotNotFoundError
InvalidBotIdError                 422     ValidationError (field ``bot_id``)
MessageRejectedError              422     ValidationError (field ``message``) [1]
ConfigurationError                500     ConfigurationError (library message) [2]
BotCreationError                  503     BotCreationError
BotClosedError                    503     ServiceUnavailableError, ``Retry-After: 1``
StorageError                      503     ServiceUnavailableError (generic message) [3]
RateLimitError (upstream 429)     429     RateLimitError, ``Retry-After`` when known
LLMTimeoutError                   504     UpstreamTimeoutError
LLMUnavailableError               502     UpstreamError
LLMRequestError                   502     UpstreamError
any other KubebotsError           500     its class name, its message
================================  ======  ==========================================

[1] Also when the message is longer than the bot's ``max_message_chars`` (the detail carries
    ``max_message_chars`` and ``length``): 413 is kept for bodies over the server's byte limit,
    so clients can tell the two apart. [2] A broken config stays broken until someone fixes it,
    so 500 rather than a retryable 503. Loaders that raise ``KeyError``/``LookupError`` or return
    ``None`` for an unknown bot get a 404; any other loader exception (e.g. the guide's
    ``ValueError("Unknown bot: x")``) is a configuration failure, hence 500. [3] Storage errors
    can name files or servers, so the client gets a generic message and the log the real one.

Unexpected exceptions answer 500 ``InternalServerError`` without their text (it is logged, with
``request.state.request_id`` when a middleware set one; 5xx bodies carry it as ``request_id``).
"""

from __future__ import annotations

import http
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors as lib
from .errors import (
    APIError,
    BotNotFoundError,
    ConfigurationError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)

log = logging.getLogger("kubebots.runtime.api")

INTERNAL_MESSAGE = "An internal error occurred"

# -- library errors -> API errors ------------------------------------------------------------


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


def _rate_limited(exc: lib.RateLimitError) -> APIError:
    return RateLimitError(message=exc.message, retry_after=exc.retry_after)


_MAPPERS: dict[type[lib.KubebotsError], Callable[[Any], APIError]] = {
    lib.UnknownBotError: _unknown_bot,
    lib.InvalidBotIdError: _invalid("bot_id"),
    lib.InvalidContextError: lambda e: _invalid(str(e.detail.get("field", "body")))(e),
    lib.MessageRejectedError: _invalid("message"),
    lib.ConfigurationError: lambda e: ConfigurationError(e.message, e.detail),
    lib.BotCreationError: lambda e: APIError(e.message, 503, e.detail, error="BotCreationError"),
    lib.BotClosedError: lambda e: ServiceUnavailableError(e.message, e.detail, retry_after=1),
    lib.StorageError: lambda e: ServiceUnavailableError("conversation storage is unavailable"),
    lib.RateLimitError: _rate_limited,
    lib.LLMTimeoutError: lambda e: UpstreamTimeoutError(e.message, e.detail),
    lib.LLMUnavailableError: lambda e: UpstreamError(e.message, e.detail),
    lib.LLMRequestError: lambda e: UpstreamError(e.message, e.detail),
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


# -- bodies and responses ---------------------------------------------------------------------


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def format_error(
    error: str, message: str, detail: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The guide's error body; an empty ``detail`` becomes ``null``, the timestamp is now."""
    return {
        "error": error,
        "message": message,
        "detail": dict(detail) if detail else None,
        "timestamp": _timestamp(),
    }


def error_body(exc: BaseException, *, request_id: str | None = None) -> dict[str, Any]:
    """The error body for any exception (also for errors sent inside a stream).

    5xx bodies carry ``request_id`` in their detail when one is given.
    """
    err = as_api_error(exc)
    detail = dict(err.detail)
    if request_id is not None and err.status_code >= 500:
        detail["request_id"] = request_id
    try:
        json.dumps(detail, allow_nan=False)
    except (TypeError, ValueError):
        log.warning("dropping the detail of a %s: not JSON-serialisable", err.error)
        detail = {"request_id": request_id} if "request_id" in detail else {}
    return format_error(err.error, err.message, detail)


def error_response(exc: BaseException, *, request_id: str | None = None) -> JSONResponse:
    """A JSON response with the error's status, body and headers (e.g. ``Retry-After``)."""
    err = as_api_error(exc)
    body = error_body(err, request_id=request_id)
    return JSONResponse(body, status_code=err.status_code, headers=err.headers)


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return None if value is None else str(value)


def _where(request: Request) -> str:
    return f"{request.scope.get('method', 'WS')} {request.url.path}"


# -- handlers -------------------------------------------------------------------------------


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """:class:`APIError` and library errors: their status, body and headers."""
    err = as_api_error(exc)
    rid = _request_id(request)
    if err.status_code >= 500:
        log.warning(
            "%s -> %d %s: %s (request_id=%s)",
            _where(request),
            err.status_code,
            err.error,
            exc,  # the library's message, which may hold more than the client is told
            rid,
        )
    return error_response(err, request_id=rid)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's request validation: 422 listing ``field`` and ``reason``, never the input."""
    problems = exc.errors() if isinstance(exc, RequestValidationError) else []
    errors = [
        {
            "field": ".".join(str(part) for part in problem.get("loc", ())),
            "reason": str(problem.get("msg", "invalid value")),
        }
        for problem in problems
    ]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"Invalid request: {first['field']}: {first['reason']}{more}"
    else:
        message = "Invalid request"
    return error_response(ValidationError(message, {"errors": errors}))


_HTTP_ERROR_NAMES = {
    # Stable names for statuses whose phrase differs between Python versions.
    413: "PayloadTooLarge",
    414: "URITooLong",
    416: "RangeNotSatisfiable",
    422: "UnprocessableEntity",
}


def http_error_name(status: int) -> str:
    """``404`` -> ``"NotFound"``, ``405`` -> ``"MethodNotAllowed"``, ..."""
    if status in _HTTP_ERROR_NAMES:
        return _HTTP_ERROR_NAMES[status]
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        return "HTTPError"
    words = "".join(c if c.isalnum() else " " if c in " -" else "" for c in phrase).split()
    return "".join(word[:1].upper() + word[1:] for word in words)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI ``HTTPException`` (unknown route, wrong method, ...), headers kept."""
    if not isinstance(exc, StarletteHTTPException):
        return await handle_unexpected(request, exc)
    status = exc.status_code
    if status < 400 or status in (204, 304):
        return Response(status_code=status, headers=exc.headers)
    raw = exc.detail
    message = raw if isinstance(raw, str) and raw else _phrase(status)
    detail: Mapping[str, Any] | None
    if isinstance(raw, Mapping):
        detail = raw
    elif raw is None or isinstance(raw, str):
        detail = None
    else:
        detail = {"detail": raw}
    err = APIError(message, status, detail, error=http_error_name(status), headers=exc.headers)
    return error_response(err, request_id=_request_id(request))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Anything else: a 500 that never contains the exception's text; the log gets it all."""
    rid = _request_id(request)
    log.error(
        "unhandled %s in %s (request_id=%s)",
        type(exc).__name__,
        _where(request),
        rid,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    internal = APIError(INTERNAL_MESSAGE, 500, error="InternalServerError")
    return error_response(internal, request_id=rid)


def register_exception_handlers(app: Starlette) -> None:
    """Install the handlers on ``app`` (a FastAPI or Starlette application)."""
    app.add_exception_handler(APIError, handle_api_error)
    app.add_exception_handler(lib.KubebotsError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
