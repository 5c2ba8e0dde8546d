"""The guide's FastAPI integration: what the Bot Manager Guide imports from here.

* :mod:`.manager_registry`: the process-wide manager (``init_bot_manager``, ``get_bot_manager``,
  ``reset_bot_manager``) and the route dependency ``BotManagerDep``;
* :mod:`.http_errors`: the HTTP errors (``APIError`` and below), and the table that maps the
  library's errors (:mod:`kubebots.runtime.errors`) to them: several names are in both trees;
* :mod:`.exception_handlers`: ``register_exception_handlers``, the guide's error body.

The runtime's own multi-tenant chat API (``kubebots serve``) is built on these, in :mod:`.app`.
"""

from .exception_handlers import register_exception_handlers
from .http_errors import (
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
from .manager_registry import BotManagerDep, get_bot_manager, init_bot_manager, reset_bot_manager

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
