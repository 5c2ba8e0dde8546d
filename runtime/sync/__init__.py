"""Store-driven runtime: the BotManager's store loader and the list-then-watch sync loop."""

from .lastgood import LastGoodConfigs
from .loader import StoreConfigLoader, version_of
from .status import ServingStatus
from .sync import StoreSync, SyncSettings

__all__ = [
    "LastGoodConfigs",
    "ServingStatus",
    "StoreConfigLoader",
    "StoreSync",
    "SyncSettings",
    "version_of",
]
