"""The bot manager and its config loaders."""

from .loaders import ConfigLoader, VersionedConfig, adapt_loader, load_config
from .manager import BotManager, ManagerStats

__all__ = [
    "BotManager",
    "ConfigLoader",
    "ManagerStats",
    "VersionedConfig",
    "adapt_loader",
    "load_config",
]
