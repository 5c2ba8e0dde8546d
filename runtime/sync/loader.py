"""``StoreConfigLoader``: the BotManager's config loader when configs live in the config store."""

from __future__ import annotations

import logging

from ..bot import BotVersion
from ..configstore.base import ConfigStore, StoreEntry, StoreError
from ..errors import UnknownBotError
from ..manager import VersionedConfig
from .lastgood import LastGoodConfigs

log = logging.getLogger("kubebots.runtime.sync")


def version_of(entry: StoreEntry) -> BotVersion:
    return BotVersion(revision=entry.revision, generation=entry.generation, uid=entry.uid)


class StoreConfigLoader:
    """Loads a bot's newest config from the store, tagged with its revision and generation.

    With ``last_good`` (filled by ``StoreSync``), a bot is built from its last synced config
    while the store is unreachable; without one, or for a bot never synced, the store's error
    is raised.
    """

    def __init__(self, store: ConfigStore, last_good: LastGoodConfigs | None = None) -> None:
        self._store = store
        self._last_good = last_good

    async def __call__(self, bot_id: str) -> VersionedConfig:
        try:
            entry = await self._store.get(bot_id)
        except StoreError as exc:
            fallback = self._last_good.get(bot_id) if self._last_good is not None else None
            if fallback is None:
                raise
            log.warning(
                "config store unavailable (%s): building bot %s from its last synced config"
                " (revision %d)",
                exc.message,
                bot_id,
                fallback.version.revision if fallback.version else 0,
            )
            return fallback
        if entry is None:
            raise UnknownBotError(f"Bot with ID '{bot_id}' not found", detail={"bot_id": bot_id})
        return VersionedConfig(entry.config, version_of(entry))
