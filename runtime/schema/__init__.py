"""The one schema: pydantic models for a bot's configuration.

The CRD is generated from these models, the operator validates Bot specs with them and the
runtime parses configs with them. Both camelCase (the CR) and snake_case (the seed's dicts) are
accepted; unknown keys are rejected with their field path.
"""

from .bot import BotConfig, LimitsConfig, MemoryConfig
from .document import (
    API_GROUP,
    API_VERSION,
    FULL_API_VERSION,
    KIND,
    PLURAL,
    BotDocument,
    bot_id_for,
    iter_bot_documents,
    load_bot_documents,
    parse_bot_document,
    split_bot_id,
)
from .llm import LLMConfig, SecretKeyRef
from .parse import field_errors, parse_bot_config
from .rollout import RolloutAnalysis, RolloutConfig, RolloutStep
from .storage import (
    ConversationStorageConfig,
    MemoryStorageConfig,
    PostgresStorageConfig,
    SqliteStorageConfig,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "FULL_API_VERSION",
    "KIND",
    "PLURAL",
    "BotConfig",
    "BotDocument",
    "ConversationStorageConfig",
    "LLMConfig",
    "LimitsConfig",
    "MemoryConfig",
    "MemoryStorageConfig",
    "PostgresStorageConfig",
    "RolloutAnalysis",
    "RolloutConfig",
    "RolloutStep",
    "SecretKeyRef",
    "SqliteStorageConfig",
    "bot_id_for",
    "field_errors",
    "iter_bot_documents",
    "load_bot_documents",
    "parse_bot_config",
    "parse_bot_document",
    "split_bot_id",
]
