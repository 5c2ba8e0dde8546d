"""The bot manager and its config loaders."""

from .loaders import ConfigLoader, adapt_loader, load_config
from .manager import BotManager, ManagerStats

__all__ = ["BotManager", "ConfigLoader", "ManagerStats", "adapt_loader", "load_config"]
