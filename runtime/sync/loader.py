"""``StoreConfigLoader``: the BotManager's config loader when configs live in the config store."""

from __future__ import annotations

from ..bot import BotVersion
from ..errors import UnknownBotError
from ..manager import VersionedConfig
from ..store.base import ConfigStore, StoreEntry


def version_of(entry: StoreEntry) -> BotVersion:
    return BotVersion(revision=entry.revision, generation=entry.generation, uid=entry.uid)


class StoreConfigLoader:
    """Loads a bot's newest config from the store, tagged with its revision and generation."""

    def __init__(self, store: ConfigStore) -> None:
        self._store = store

    async def __call__(self, bot_id: str) -> VersionedConfig:
        entry = await self._store.get(bot_id)
        if entry is None:
            raise UnknownBotError(f"Bot with ID '{bot_id}' not found", detail={"bot_id": bot_id})
        return VersionedConfig(entry.config, version_of(entry))
