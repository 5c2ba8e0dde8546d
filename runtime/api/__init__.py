"""The HTTP API: the guide's FastAPI integration (manager dependency, errors, handlers)."""

from .deps import BotManagerDep, get_bot_manager, init_bot_manager, reset_bot_manager
from .errors import (
    APIError,
    AuthenticationError,
    BotCreationError,
    BotManagerNotInitialisedError,
    BotNotFoundError,
    ConfigurationError,
    ConversationNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from .handlers import register_exception_handlers

__all__ = [
    "APIError",
    "AuthenticationError",
    "BotCreationError",
    "BotManagerDep",
    "BotManagerNotInitialisedError",
    "BotNotFoundError",
    "ConfigurationError",
    "ConversationNotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "ValidationError",
    "get_bot_manager",
    "init_bot_manager",
    "register_exception_handlers",
    "reset_bot_manager",
]
