"""Errors under ``/v1`` in OpenAI's shape; every other route keeps the guide's.

``{"error": {"message": str, "type": str, "param": str | null, "code": str | null}}``

The guide's handlers (:mod:`..exception_handlers`) decide status, message and headers and log
as they do for every route; under ``/v1`` their body is re-rendered here, so the OpenAI SDKs
raise the class of the status with the server's message (they read ``error.message``):

======  ==============================  =====================================================
status  ``type``                        ``code``
======  ==============================  =====================================================
400     ``invalid_request_error``       the error's own (e.g. an upstream's), else ``null``;
                                        request validation (FastAPI's 422 too) names ``param``
401     ``authentication_error``        ``invalid_api_key``
403     ``permission_error``            ``permission_denied``
404     ``not_found_error``             ``model_not_found`` for an unknown (or hidden) bot
413     ``invalid_request_error``       ``request_too_large``
429     ``rate_limit_error``            ``rate_limit_exceeded`` (``Retry-After`` kept)
5xx     ``api_error``                   the guide's error name in snake case
======  ==============================  =====================================================

Other 4xx are ``invalid_request_error``. Headers (``Retry-After``, ``WWW-Authenticate``) are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..exception_handlers import error_body
from ..http_errors import as_api_error

V1_PREFIX = "/v1"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_CODES = {
    401: "invalid_api_key",
    403: "permission_denied",
    413: "request_too_large",
    429: "rate_limit_exceeded",
}
#: Union members and type tags pydantic puts in an error's location (``stop.list[str]``).
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})
_SKIPPED_LOCATIONS = frozenset({"body", "query", "header", "path"})

Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_v1(path: str) -> bool:
    return path == V1_PREFIX or path.startswith(V1_PREFIX + "/")


def param_of(field: str) -> str | None:
    """OpenAI's ``param`` for a validation error's field path: ``body.messages.0.content`` ->
    ``messages.[0].content``, type tags of unions dropped (``body.stop.list[str]`` -> ``stop``)."""
    parts: list[str] = []
    for index, part in enumerate(field.split(".")):
        if index == 0 and part in _SKIPPED_LOCATIONS:
            continue
        if part.isdigit():
            parts.append(f"[{part}]")
        elif part in _TYPE_TAGS or re.search(r"[\[\]'\"()\-]", part) or part[:1].isupper():
            continue  # a union member's tag, not a field
        elif part:
            parts.append(part)
    return ".".join(parts) or None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def openai_error(status: int, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI body for a guide error body ``body`` answered with ``status``."""
    if status == 422:
        status = 400
    name = str(body.get("error", "APIError"))
    message = str(body.get("message", ""))
    detail = body.get("detail") or {}
    param = detail.get("param")
    errors = detail.get("errors")
    if param is None and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        param = param_of(str(first.get("field", "")))
        if param is not None and name == "ValidationError":
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            message = f"Invalid value for '{param}': {first.get('reason', 'invalid value')}{more}"
    code = detail.get("code")
    if not isinstance(code, str):
        code = _CODES.get(status)
        if name == "BotNotFoundError":
            code = "model_not_found"
        elif status >= 500:
            code = _snake(name)
    kind = "api_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")
    error = {"message": message, "type": kind, "param": param, "code": code}
    return status, {"error": error}


def openai_error_body(exc: BaseException) -> dict[str, Any]:
    """The OpenAI body for ``exc`` (an error sent inside a ``/v1`` stream)."""
    err = as_api_error(exc)
    return openai_error(err.status_code, error_body(err))[1]


def as_openai_response(response: Response) -> Response:
    """The guide's error ``response`` re-rendered in OpenAI's shape (others unchanged; a
    websocket handler's ``None`` too)."""
    if not isinstance(response, JSONResponse) or response.status_code < 400:
        return response
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return response
    status, payload = openai_error(response.status_code, body)
    headers = {
        k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
    }
    return JSONResponse(payload, status_code=status, headers=headers)


def _v1_aware(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        return as_openai_response(response) if is_v1(request.url.path) else response

    return handle


def register_openai_error_handlers(app: Starlette) -> None:
    """Give ``/v1`` OpenAI's error shape: wraps the handlers registered so far (call it after
    :func:`~..exception_handlers.register_exception_handlers`)."""
    for key, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(key, _v1_aware(handler))
