"""Exception handlers: every error the API answers has the guide's body, and nothing else.

``{"error": str, "message": str, "detail": object | null, "timestamp": "...+00:00"}``

What an exception becomes (status, ``error``, message) is decided by
:func:`~.http_errors.as_api_error` and its table in :mod:`.http_errors`; this module renders
it. Unexpected exceptions answer 500 ``InternalServerError`` without their text (it is logged,
with ``request.state.request_id`` when a middleware set one; 5xx bodies carry it as
``request_id``).
"""

from __future__ import annotations

import http
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import errors as lib
from .http_errors import INTERNAL_MESSAGE, APIError, ValidationError, as_api_error

log = logging.getLogger("kubebots.runtime.api")


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
