"""One writer for the tombstones of deleted Bots, so a namespace of 1,000 Bots goes in seconds.

A deleted Bot's event handler asks :meth:`Tombstones.write` and waits; one task writes every
tombstone asked for meanwhile in one transaction (``ConfigStore.delete_many``, up to ``BATCH``:
one commit instead of one per Bot; the store serialises writes anyway, so concurrent handlers
would only queue for the pool), and wakes each handler as soon as its tombstone is in the
store: the handler then releases the Bot's finalizer. With the store
down the task retries every ``retry`` seconds, logging once: the finalizers wait, nothing is
lost, and a Bot is never gone from Kubernetes while the runtimes still serve it.

Nothing here talks to Kubernetes or kopf: the store and the clock are passed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubebots.runtime.configstore import ConfigStore, StoreError
from kubebots.runtime.configstore.rollout import candidate_id

log = logging.getLogger("kubebots.operator.tombstones")

#: Tombstones per transaction: a namespace of 1,000 Bots is a few commits, and one batch still
#: holds the store's writer lock only briefly (runtimes' reads are not blocked by it).
BATCH = 250


@dataclass
class _Ask:
    uid: str | None  # only the entry of this uid is tombstoned (None: whatever is live)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class Tombstones:
    def __init__(
        self,
        store: ConfigStore,
        *,
        retry: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._retry = retry
        self._clock = clock
        self._beat = clock()  # when the writer last finished an attempt (or had nothing to do)
        self._asked: dict[str, _Ask] = {}
        self._wake = asyncio.Event()
        self.written = 0  # tombstones written since the start (for the logs and tests)

    async def write(self, bot_id: str, *, uid: str | None = None) -> None:
        """Return once ``bot_id`` is tombstoned (at once if it is not live). With ``uid``, an
        entry written for another object of the same name (recreated since) is kept."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ask = self._asked.get(bot_id)
        if ask is None:
            ask = self._asked[bot_id] = _Ask(uid)
        elif uid is None:
            ask.uid = None  # an unconditional ask covers the conditional one
        ask.waiters.append(done)
        self._wake.set()
        await done

    @property
    def waiting(self) -> int:
        """Bots whose tombstone is asked for and not written yet."""
        return len(self._asked)

    def lag(self) -> tuple[float, str]:
        """Seconds since the writer last finished an attempt while tombstones wait (0 when none
        wait): a store that refuses still counts as progress, a hung call does not."""
        if not self._asked:
            return 0.0, "no tombstone waits"
        lag = self._clock() - self._beat
        return lag, f"{len(self._asked)} tombstone(s) wait; the last write ended {lag:.0f}s ago"

    async def run(self) -> None:
        """Forever (cancelled at cleanup)."""
        down = False
        while True:
            self._beat = self._clock()
            await self._wake.wait()
            self._wake.clear()
            self._beat = self._clock()
            while self._asked:
                batch = dict(list(self._asked.items())[:BATCH])
                began = self._clock()
                try:
                    await self._tombstone(batch)
                except StoreError as exc:
                    self._beat = self._clock()
                    if not down:
                        log.warning(
                            f"{len(self._asked)} tombstone(s) wait: config store unavailable "
                            f"({exc.message}); retrying every {self._retry:g}s"
                        )
                    down = True
                    await asyncio.sleep(self._retry)
                    continue
                if down:
                    log.info("config store available again: writing the tombstones")
                down = False
                self._beat = self._clock()
                took = (self._beat - began) * 1000
                log.info(f"tombstoned {len(batch)} deleted Bot(s) in one write ({took:.0f} ms)")
                for bot_id, ask in batch.items():
                    if self._asked.get(bot_id) is ask:
                        del self._asked[bot_id]
                    self.written += 1
                    for waiter in ask.waiters:
                        if not waiter.done():
                            waiter.set_result(None)

    async def _tombstone(self, batch: dict[str, _Ask]) -> None:
        """One transaction for the batch, each Bot's entry with its candidate entry (a rollout,
        :mod:`kubebots.runtime.configstore.rollout`; tombstoning an absent one is a no-op); a
        conditional ask (``uid``) is checked first, for each of the two."""
        ids = []
        for bot_id, ask in batch.items():
            for entry_id in (bot_id, candidate_id(bot_id)):
                if ask.uid is not None:
                    entry = await self.store.get(entry_id)
                    if entry is None or entry.uid != ask.uid:
                        continue
                ids.append(entry_id)
        if ids:
            await self.store.delete_many(ids)
