"""The HTTP API's errors: each one knows its status code and renders as the guide's error body.

These are *not* the library errors of :mod:`kubebots.runtime.errors` (which know nothing about
HTTP): several names are the same on purpose, because the guide's API exports them under these
names. :mod:`.handlers` translates library errors into these.

Status codes chosen where the guide leaves it open:

* :class:`BotCreationError` -- 503: building a bot fails for reasons other than its config
  (storage, provider) that are usually transient, so clients may retry.
* :class:`ConfigurationError` -- 500: a broken configuration is the server's fault and stays
  broken until someone fixes it; 503 would only make clients and proxies retry in vain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class APIError(Exception):
    """An error the API answers with ``status_code`` and a ``{error, message, detail}`` body.

    ``error`` defaults to the class name; ``detail`` must be JSON-serialisable and hold no
    secrets; ``headers`` are added to the response (e.g. ``Retry-After``).
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
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.error = error or type(self).__name__
        self.detail: dict[str, Any] = dict(detail or {})
        self.headers: dict[str, str] | None = dict(headers) if headers else None

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
    """500: a bot's (or the service's) configuration is missing or invalid; see module doc."""

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
        self, message: str = "Rate limit exceeded", retry_after: float | None = None
    ) -> None:
        super().__init__(
            message,
            detail={"retry_after": retry_after},
            headers=retry_after_header(retry_after),
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
        self, message: str = "Upstream service failed", detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, detail=detail)


class UpstreamTimeoutError(APIError):
    """504: the LLM provider did not answer in time."""

    status_code = 504

    def __init__(
        self,
        message: str = "Upstream service timed out",
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
