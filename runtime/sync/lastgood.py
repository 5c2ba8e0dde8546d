"""``LastGoodConfigs``: the newest valid config of every bot, as this replica synced them.

A replica builds bots lazily, from the store. While the store is unreachable it could build
none, so a bot this replica had not loaded yet would answer 503 although the replica holds its
config from the last sync. The sync records each valid entry here (compact JSON, a few hundred
bytes a bot: ~5 MB for 10,000), and the loader falls back to it when the store fails. An entry
that fails validation never replaces the last good one, as a bad config never replaces a good
bot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..bot import BotVersion
from ..configstore.base import StoreEntry
from ..manager import VersionedConfig


def _pack(entry: StoreEntry) -> bytes:
    document = [dict(entry.config), entry.revision, entry.generation, entry.uid]
    return json.dumps(document, separators=(",", ":")).encode()


class LastGoodConfigs:
    """bot id -> its newest valid entry, packed; filled by ``StoreSync``, read by the loader."""

    def __init__(self) -> None:
        self._packed: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._packed)

    def put(self, entry: StoreEntry) -> None:
        self._packed[entry.bot_id] = _pack(entry)

    def discard(self, bot_id: str) -> None:
        self._packed.pop(bot_id, None)

    def keep_only(self, bot_ids: Iterable[str]) -> None:
        """After a full listing: forget bots the store no longer has."""
        live = set(bot_ids)
        for bot_id in [b for b in self._packed if b not in live]:
            del self._packed[bot_id]

    def get(self, bot_id: str) -> VersionedConfig | None:
        packed = self._packed.get(bot_id)
        if packed is None:
            return None
        config, revision, generation, uid = json.loads(packed)
        return VersionedConfig(
            config, BotVersion(revision=revision, generation=generation, uid=uid)
        )
