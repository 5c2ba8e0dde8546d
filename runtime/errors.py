"""The runtime's error hierarchy. Library code raises these; the HTTP layer maps them.

No message built here ever contains a secret or a user's input value: configuration errors name
the field path and what was wrong with it, never what was written there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class KubebotsError(Exception):
    """Base of every error kubebots raises on purpose."""

    def __init__(self, message: str, *, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})


class ConfigurationError(KubebotsError, ValueError):
    """A bot configuration is missing or invalid. ``errors`` lists ``(field_path, reason)``."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[tuple[str, str]] = (),
        bot_id: str | None = None,
    ) -> None:
        detail: dict[str, Any] = {}
        if bot_id is not None:
            detail["bot_id"] = bot_id
        if errors:
            detail["errors"] = [{"field": f, "reason": r} for f, r in errors]
        super().__init__(message, detail=detail)
        self.errors: list[tuple[str, str]] = list(errors)
        self.bot_id = bot_id

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.errors]


class InvalidBotIdError(KubebotsError, ValueError):
    """A bot id is empty, too long, or holds a path separator or control character."""


class InvalidContextError(KubebotsError, ValueError):
    """A ``client_id``, ``conversation_id`` or ``user_id`` is empty, too long or malformed."""


class BotCreationError(KubebotsError):
    """Building a bot failed for a reason other than its configuration (storage, provider)."""

    def __init__(self, bot_id: str, reason: str) -> None:
        super().__init__(f"Failed to create bot '{bot_id}': {reason}", detail={"bot_id": bot_id})
        self.bot_id = bot_id


class BotClosedError(KubebotsError):
    """The bot instance was closed (removed, reloaded or evicted) and released its resources."""


class MessageRejectedError(KubebotsError, ValueError):
    """A chat message breaks the bot's limits (empty, too long, conversation full)."""


class LLMError(KubebotsError):
    """Base of errors from an LLM provider. Messages never carry the API key."""


class RateLimitError(LLMError):
    """The upstream LLM answered 429. ``retry_after`` is in seconds when the upstream said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, detail={"retry_after": retry_after})
        self.retry_after = retry_after


class LLMTimeoutError(LLMError):
    """The upstream LLM did not answer within the configured timeout (after retries)."""


class LLMUnavailableError(LLMError):
    """The upstream LLM failed (5xx or connection error) after retries."""


class LLMRequestError(LLMError):
    """The upstream LLM refused the request (4xx other than 429: auth, unknown model, ...)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message, detail={"status_code": status_code})
        self.status_code = status_code


class StorageError(KubebotsError):
    """Conversation storage failed (connection, schema, constraint).

    ``component`` names what failed, for the client's 503 (``"conversation storage"``; the
    config store's and the rate limiter's errors are subclasses naming themselves).
    """

    component: ClassVar[str] = "conversation storage"


class RateLimitStorageError(StorageError):
    """The storage behind the shared rate limits and token budgets failed."""

    component: ClassVar[str] = "the rate limiter"


class UnknownBotError(KubebotsError, LookupError):
    """No configuration exists for the bot id (the loader found none)."""
