"""The status controller's store work: adopted Bots checked, failed writes retried, drift
repaired, each with one store listing, and the Bots waiting for a Secret written when it comes.

A Bot whose write fails stays (or becomes) unresolved and is retried every ``retry`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from kubebots.runtime.configstore import ConfigStore, StoreEntry, StoreError
from kubebots.runtime.configstore.rollout import candidate_id

from .kube import describe_failure
from .reconcile import Applied, SecretVersions, apply, holds
from .rollout_writes import in_store
from .status_index import BotIndex, Key, Timing

log = logging.getLogger("kubebots.operator.status")


class BotWrites(BotIndex):
    def __init__(
        self,
        store: ConfigStore,
        secrets: SecretVersions,
        timing: Timing,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(timing, clock=clock)
        self.store = store
        self._secrets = secrets
        self.wall = wall  # unix seconds: when a rollout's first step begins

    async def retry_secret_missing(self, namespace: str) -> list[str]:
        """A Secret of ``namespace`` appeared or changed: write the Bots there that waited for
        theirs (the others are written by ``rotate_secret``). Returns the bot ids written."""
        waiting = [
            k
            for k, b in self.bots.items()
            if k[0] == namespace
            and b.applied is not None
            and b.applied.secret_missing
            and not b.unresolved
        ]
        return await self._rewrite(waiting)

    async def recheck(self, bot_ids: Collection[str]) -> list[str]:
        """Write these Bots again (their Secret changed under them: a key they name is gone, so
        each becomes ``SecretMissing``). Returns the bot ids whose outcome changed."""
        wanted = set(bot_ids)
        return await self._rewrite([k for k, b in self.bots.items() if b.ref.bot_id in wanted])

    async def resolve(self) -> list[str]:
        """Check the unresolved Bots against one store listing: an entry of their uid and
        generation is taken as it is (no write); the others are written. Returns the bot ids
        written. With the store down, everything waits ``retry`` seconds."""
        self._next_resolve = self._clock() + self._timing.retry
        stored = await self._stored("store check postponed")
        if stored is None:
            return []
        to_write = []
        for key, bot in list(self.bots.items()):
            if not bot.unresolved:
                continue
            entry = stored.get(bot.ref.bot_id)
            # a Bot naming a Secret is written again: the Secret may have rotated meanwhile
            leftover = candidate_id(bot.ref.bot_id) in stored
            if holds(entry, bot.ref) and not bot.ref.secret_refs and not leftover:
                annotations = dict(entry.annotations)
                bot.applied = Applied(revision=entry.revision, annotations=annotations)
                bot.unresolved, bot.pending = False, True
                self._dirty.add(key)
            else:
                to_write.append(key)
        self._wake.set()
        return await self._rewrite(to_write)

    # -- drift repair --------------------------------------------------------------------------

    async def repair(self) -> list[str]:
        """One store listing against the index: rewrite what is missing or stale (a Bot under
        rollout: its candidate entry; a leftover candidate entry is stale too), retry Bots
        waiting for their Secret. Returns the bot ids rewritten."""
        stored = await self._stored("drift repair skipped")
        if stored is None:
            return []
        stale = [
            key
            for key, bot in self.bots.items()
            if bot.applied is not None
            and not bot.unresolved
            and bot.applied.invalid is None
            and not (
                bot.applied.revision is not None
                and in_store(
                    stored, bot.ref, bot.applied.annotations, rolling_out=bot.applied.rolling_out
                )
            )
        ]
        return await self._rewrite(stale)

    async def _rewrite(self, keys: list[Key]) -> list[str]:
        """``apply`` each Bot again; the ids whose store entry or Secret state changed. A Bot
        that fails stays (or becomes) unresolved: retried in ``retry`` seconds."""
        fixed = []
        for key in keys:
            bot = self.bots.get(key)
            if bot is None or (bot.applied is None and not bot.unresolved):
                continue  # a handler works on it
            applied = bot.applied or Applied()
            try:
                new = await apply(self.store, bot.ref, self._secrets, wall=self.wall)
            except Exception as exc:  # noqa: BLE001 - store down, Secret read failed: retried
                log.warning(f"writing {bot.ref.bot_id} failed, will retry: {describe_failure(exc)}")
                if self.bots.get(key) is bot:
                    bot.unresolved = True
                    self._next_resolve = min(self._next_resolve, self._clock() + self._timing.retry)
                if isinstance(exc, StoreError):
                    break
                continue
            self.beat = self._clock()
            if self.bots.get(key) is not bot or (bot.applied is None and not bot.unresolved):
                continue  # a handler took it over meanwhile
            if new.revision != applied.revision or new.secret_missing != applied.secret_missing:
                outcome = new.secret_missing or "written to the config store"
                log.info(f"{bot.ref.bot_id}: {outcome}")
                fixed.append(bot.ref.bot_id)
            bot.applied, bot.pending, bot.unresolved = new, new.revision is not None, False
            self._dirty.add(key)
        self._wake.set()
        return fixed

    async def _stored(self, skipped: str) -> dict[str, StoreEntry] | None:
        """Every live store entry by bot id, in one listing; None (logged) with the store down."""
        try:
            entries, _ = await self.store.list()
        except StoreError as exc:
            log.warning(f"{skipped}: config store unavailable ({exc.message})")
            return None
        return {e.bot_id: e for e in entries}
