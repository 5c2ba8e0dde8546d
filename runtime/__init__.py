"""kubebots runtime: the library half of kubebots.

``BotManager`` caches and reloads bots by id, ``DynaBot`` answers chats, ``BotContext`` says who
is talking in which conversation. See the README for the Bot schema and the design.
"""

from .bot import DynaBot
from .context import BotContext
from .errors import (
    BotClosedError,
    BotCreationError,
    ConfigurationError,
    InvalidBotIdError,
    KubebotsError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    MessageRejectedError,
    RateLimitError,
    StorageError,
    UnknownBotError,
)
from .factory import BotFactory, create_bot
from .manager import BotManager, ConfigLoader, ManagerStats
from .schema import BotConfig, parse_bot_config
from .secrets import DirectorySecretResolver, MappingSecretResolver, SecretResolver

__all__ = [
    "BotClosedError",
    "BotConfig",
    "BotContext",
    "BotCreationError",
    "BotFactory",
    "BotManager",
    "ConfigLoader",
    "ConfigurationError",
    "DirectorySecretResolver",
    "DynaBot",
    "InvalidBotIdError",
    "KubebotsError",
    "LLMError",
    "LLMRequestError",
    "LLMTimeoutError",
    "LLMUnavailableError",
    "ManagerStats",
    "MappingSecretResolver",
    "MessageRejectedError",
    "RateLimitError",
    "SecretResolver",
    "StorageError",
    "UnknownBotError",
    "create_bot",
    "parse_bot_config",
]
