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
    """Base of errors from an LLM provider. Messages never carry the API key.

    Two texts: ``message`` (``str(error)``) is for the log and may name the endpoint and quote
    the upstream's error text (keys redacted); ``public_message`` is all a client is told, with
    ``code`` (an OpenAI-style error code) and ``param`` (the request field at fault, if the
    upstream named one). Tenants never see upstream hosts, credentials or upstream text.
    """

    default_code: ClassVar[str] = "upstream_error"
    default_public_message: ClassVar[str] = "The bot's LLM failed"

    def __init__(
        self,
        message: str,
        *,
        public_message: str | None = None,
        code: str | None = None,
        param: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.public_message = public_message or self.default_public_message
        self.code = code or self.default_code
        self.param = param


class RateLimitError(LLMError):
    """The upstream LLM answered 429. ``retry_after`` is in seconds when known (the upstream's
    ``Retry-After``/``retry-after-ms``, or the backoff a caller computed)."""

    default_code: ClassVar[str] = "rate_limit_exceeded"
    default_public_message: ClassVar[str] = "The bot's LLM is rate limited; retry later"

    def __init__(
        self, message: str, *, retry_after: float | None = None, public_message: str | None = None
    ) -> None:
        super().__init__(
            message, public_message=public_message, detail={"retry_after": retry_after}
        )
        self.retry_after = retry_after

    def with_retry_after(self, seconds: float) -> RateLimitError:
        """The same error with ``retry_after`` set (e.g. a backoff computed by the caller)."""
        return RateLimitError(self.message, retry_after=seconds, public_message=self.public_message)


class LLMTimeoutError(LLMError):
    """The upstream LLM did not answer within the configured timeout (after retries)."""

    default_code: ClassVar[str] = "upstream_timeout"
    default_public_message: ClassVar[str] = "The bot's LLM did not answer in time"


class LLMUnavailableError(LLMError):
    """The upstream LLM failed (5xx or connection error) after retries."""

    default_code: ClassVar[str] = "upstream_unavailable"
    default_public_message: ClassVar[str] = "The bot's LLM is unavailable"


class LLMRequestError(LLMError):
    """The upstream LLM refused the request (4xx other than 429: auth, unknown model, ...).

    ``status_code`` is the upstream's status. Not the client's fault (except a 400, see
    :class:`LLMBadRequestError`): the bot's key or model is wrong.
    """

    default_code: ClassVar[str] = "upstream_refused"
    default_public_message: ClassVar[str] = "The bot's LLM refused the request"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        public_message: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(
            message,
            public_message=public_message,
            code=code,
            param=param,
            detail={"status_code": status_code},
        )
        self.status_code = status_code


class LLMBadRequestError(LLMRequestError):
    """The upstream LLM answered 400: this request cannot succeed as sent (e.g. the
    conversation exceeds the model's context). Retrying it, or trying another endpoint, is
    pointless; the client must change it."""

    default_code: ClassVar[str] = "invalid_request"
    default_public_message: ClassVar[str] = "The bot's LLM rejected the request as invalid"

    def __init__(
        self,
        message: str,
        *,
        public_message: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(
            message, status_code=400, public_message=public_message, code=code, param=param
        )


class StorageError(KubebotsError):
    """Conversation storage failed (connection, schema, constraint).

    ``component`` names what failed, for the client's 503 (``"conversation storage"``; the
    config store's and the rate limiter's errors are subclasses naming themselves).
    """

    component: ClassVar[str] = "conversation storage"


class RateLimitStorageError(StorageError):
    """The storage behind the shared rate limits and token budgets failed."""

    component: ClassVar[str] = "the rate limiter"


class ToolError(KubebotsError):
    """A tool call failed (the tool answered an error, broke its contract or could not be
    reached). The tool loop turns it into a tool result the model sees (``message``: no secret,
    no header, no URL query); it never reaches a client as an HTTP error."""


class ToolTimeoutError(ToolError):
    """A tool did not answer within its timeout (or the turn's tool deadline)."""


class ToolUnavailableError(BotCreationError):
    """A declared tool source (an MCP server) could not be listed when the bot was built: the
    replica keeps serving the last good version and reports the reason ``ToolUnavailable``."""

    reason_code: ClassVar[str] = "ToolUnavailable"

    def __init__(self, bot_id: str, source: str, reason: str) -> None:
        super().__init__(bot_id, f"tool source '{source}' is unavailable: {reason}")
        self.source = source


class UnknownBotError(KubebotsError, LookupError):
    """No configuration exists for the bot id (the loader found none)."""
