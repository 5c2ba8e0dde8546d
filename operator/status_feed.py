"""The operator-wide status controller: one task keeps every Bot's ``Ready`` current.

The Bot event handler writes a new generation to the store, waits briefly and patches its status
itself; then it hands the Bot to :class:`StatusFeed` (``track``). Bots the operator finds already
handled when it starts (status of their generation present) are ``adopt``-ed: the feed checks
them against one store listing and writes only the missing or stale ones; a write that failed
(store down) is retried the same way every ``retry`` seconds. The feed keeps an index of the
Bots in memory and follows the replica reports: one ``replica_reports()`` read per tick, every
``fast`` seconds while a Bot is rolling out or the replicas are moving, else every ``idle``
seconds. It recomputes (pure, in memory) the Bots an event concerns: the pending ones, or all of
them when the set of live replicas or a replica's error list changed, and patches only the
statuses that changed, with bounded concurrency. Drift repair (a wiped or stale store entry
rewritten) is one store listing every ``drift_interval`` seconds, jittered by +-20%.

Nothing here talks to Kubernetes or kopf: the patcher, the store, the Secret reader and the
clock are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kubebots.runtime.store import ConfigStore, ReplicaReport, StoreError

from .reconcile import Applied, BotRef, SecretVersions, apply, is_current, secret_of
from .status import differs, serving_from, status_patch

log = logging.getLogger("kubebots.operator.status")

Key = tuple[str, str]  # (namespace, name)


class StatusPatcher(Protocol):
    """Merge-patches a Bot's status; returns False when the Bot is gone (404)."""

    async def patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Timing:
    fast: float  # tick while something is pending
    idle: float  # tick otherwise (replicas appearing, disappearing, expiring)
    drift: float  # drift repair period (jittered)
    replica_max_age: float
    concurrency: int = 8
    retry: float = 2.0  # failed writes are retried this often


@dataclass
class Tracked:
    """What the feed knows of one Bot: ``applied`` is None while a handler works on
    ``ref.generation`` (the feed then leaves the Bot to the handler)."""

    ref: BotRef
    applied: Applied | None
    status: Mapping[str, Any] | None  # the last status patched or seen
    pending: bool = True  # written, not yet served by every live replica
    unresolved: bool = False  # the feed must check the store (adopted, or a write failed)
    since: float = 0.0  # when a handler began on it (applied None), by the feed's clock


def _signature(reports: Sequence[ReplicaReport]) -> dict[str, tuple[Any, ...]]:
    """What makes every Bot's status change: which replicas are live and their error lists."""
    return {r.replica_id: r.bots for r in reports}


class StatusFeed:
    def __init__(
        self,
        store: ConfigStore,
        patcher: StatusPatcher,
        secrets: SecretVersions,
        timing: Timing,
        *,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self._patcher = patcher
        self._secrets = secrets
        self._timing = timing
        self._clock = clock
        self._rng = rng or random.Random()
        self.bots: dict[Key, Tracked] = {}
        self._dirty: set[Key] = set()
        self._signature: dict[str, tuple[Any, ...]] | None = None
        self._synced: dict[str, int] = {}
        self._in_flight: dict[Key, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._next_repair = clock() + self._jittered()
        self._next_resolve = clock()
        self._store_down = False
        self.beat = clock()  # when the loop last made progress (a step, a patch, a write)

    # -- fed by the handlers -------------------------------------------------------------------

    def knows(self, ref: BotRef) -> bool:
        """Whether this generation of ``ref`` (or a newer one) is handled or tracked already."""
        bot = self.bots.get((ref.namespace, ref.name))
        return bot is not None and bot.ref.uid == ref.uid and bot.ref.generation >= ref.generation

    def adopt(self, ref: BotRef, status: Mapping[str, Any]) -> None:
        """A Bot found with the status of its generation (the operator restarted): checked
        against the store in the next batch (one listing for all of them)."""
        if self.knows(ref):
            return
        now = self._clock()
        if self._next_resolve <= now:  # no check due soon: gather a batch (O(1): 10,000 adopts)
            self._next_resolve = now + min(self._timing.retry, 0.5)
        self.bots[(ref.namespace, ref.name)] = Tracked(
            ref, None, dict(status), pending=False, unresolved=True
        )
        self._wake.set()

    def failed(self, ref: BotRef, applied: Applied, status: Mapping[str, Any]) -> None:
        """The handler could not write ``ref`` (``applied.unavailable`` says why; ``status`` is
        what it patches): the feed retries every ``retry`` seconds."""
        key = (ref.namespace, ref.name)
        old = self.bots.get(key)
        if old is not None and old.ref.uid == ref.uid and old.ref.generation > ref.generation:
            return
        self.bots[key] = Tracked(ref, applied, status, pending=False, unresolved=True)
        self._next_resolve = min(self._next_resolve, self._clock() + self._timing.retry)
        self._wake.set()

    def references_secret(self, namespace: str, secret: str) -> bool:
        """Whether a Bot of ``namespace`` names ``secret`` in its spec (in memory, no I/O)."""
        return any(
            k[0] == namespace and secret_of(b.ref.spec) == secret for k, b in self.bots.items()
        )

    def begin(self, ref: BotRef) -> None:
        """A handler works on ``ref``'s generation: the feed keeps off it until ``track``."""
        old = self.bots.get((ref.namespace, ref.name))
        if old is not None and old.ref.uid == ref.uid and old.ref.generation > ref.generation:
            return
        self.bots[(ref.namespace, ref.name)] = Tracked(
            ref, None, old.status if old else None, since=self._clock()
        )

    def track(self, ref: BotRef, applied: Applied, status: Mapping[str, Any]) -> None:
        """The handler is done: ``status`` is what it patches; the feed takes over."""
        key = (ref.namespace, ref.name)
        old = self.bots.get(key)
        if old is not None and old.ref.uid == ref.uid and old.ref.generation > ref.generation:
            return  # a newer generation is already being handled
        self.bots[key] = Tracked(ref, applied, status, pending=applied.revision is not None)
        self._dirty.add(key)  # the replicas may have moved since the handler looked
        self._wake.set()

    async def settled(self, ref: BotRef) -> None:
        """Wait for a patch of the feed in flight for ``ref`` (started before ``begin``): the
        handler's own patch, sent by kopf after it returns, then always lands last."""
        done = self._in_flight.get((ref.namespace, ref.name))
        if done is not None:
            await done.wait()

    def forget(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Stop tracking a Bot (of ``uid``, if given); whether it was tracked."""
        bot = self.bots.get((namespace, name))
        if bot is None or (uid is not None and bot.ref.uid != uid):
            return False
        del self.bots[(namespace, name)]
        self._dirty.discard((namespace, name))
        return True

    def saw(self, namespace: str, name: str, uid: str, status: Mapping[str, Any] | None) -> None:
        """A watch event's status: if it is not the one the feed holds (a handler's patch that
        landed after the feed's, an older generation), recompute and re-patch the Bot."""
        bot = self.bots.get((namespace, name))
        if bot is None or bot.ref.uid != uid or bot.applied is None or status is None:
            return
        if status.get("observedGeneration") != bot.ref.generation:
            return  # the handler's patch for this generation has not landed yet
        if bot.status is None or differs(bot.status, status):
            bot.status = status
            self._dirty.add((namespace, name))
            self._wake.set()

    def secrets_rotated(self, revisions: Mapping[str, int]) -> None:
        """``rotate_secret`` re-wrote these bot ids at these revisions: Ready follows them."""
        for bot in self.bots.values():
            revision = revisions.get(bot.ref.bot_id)
            if revision is not None and bot.applied is not None:
                bot.applied = replace(bot.applied, revision=revision)
                bot.pending = True
                self._dirty.add((bot.ref.namespace, bot.ref.name))
        self._wake.set()

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

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever (cancelled at cleanup)."""
        while True:
            delay = await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def step(self) -> float:
        """Drift repair when due, then a tick; returns how long to wait for the next one."""
        if self._clock() >= self._next_repair:
            await self.repair()
            self._next_repair = self._clock() + self._jittered()
        unresolved = any(b.unresolved for b in self.bots.values())
        if unresolved and self._clock() >= self._next_resolve:
            await self.resolve()
            unresolved = any(b.unresolved for b in self.bots.values())
        busy = await self.tick()
        self.beat = self._clock()
        delay = self._timing.fast if busy else self._timing.idle
        due = [self._next_repair] + ([self._next_resolve] if unresolved else [])
        return max(0.0, min(delay, min(due) - self._clock()))

    def lag(self) -> tuple[float, str]:
        """How far behind the feed is, in seconds, and what: the time since its loop last made
        progress (finished a step, a status patch or a write: a step of 10,000 patches is long,
        not stuck), or the age of the oldest handler still running, whichever is older."""
        now = self._clock()
        loop = now - self.beat
        handling = [now - b.since for b in self.bots.values() if b.applied is None and b.since]
        oldest = max(handling, default=0.0)
        if oldest > loop:
            return oldest, f"a Bot handler has been running for {oldest:.0f}s"
        return loop, f"the status controller last made progress {loop:.0f}s ago"

    async def tick(self) -> bool:
        """One read of the replica reports; patches what changed. True while busy."""
        try:
            reports = await self.store.replica_reports(max_age_seconds=self._timing.replica_max_age)
        except StoreError as exc:
            if not self._store_down:
                log.warning(f"status follow-up paused: config store unavailable ({exc.message})")
            self._store_down = True
            return False
        self._store_down = False
        signature = _signature(reports)
        synced = {r.replica_id: r.synced_revision for r in reports}
        moved = synced != self._synced
        if signature != self._signature:
            targets = set(self.bots)
        else:
            targets = set(self._dirty)
            if moved:
                targets |= {k for k, b in self.bots.items() if b.pending}
        self._signature, self._synced = signature, synced
        self._dirty.clear()
        await self._patch_all(self._compute(targets, reports))
        return moved or bool(self._dirty) or any(b.pending for b in self.bots.values())

    def _compute(
        self, keys: set[Key], reports: Sequence[ReplicaReport]
    ) -> list[tuple[Tracked, dict[str, Any]]]:
        changed = []
        for key in keys:
            bot = self.bots.get(key)
            if bot is None or bot.applied is None or bot.unresolved:
                continue
            applied = bot.applied
            live = None
            if applied.revision is not None:
                live = serving_from(reports, bot.ref.bot_id, applied.revision)
                bot.pending = not live.errors and live.served < live.replicas
            new = status_patch(bot.ref, applied, live, bot.status)
            if differs(new, bot.status):
                changed.append((bot, new))
        return changed

    async def _patch_all(self, changed: list[tuple[Tracked, dict[str, Any]]]) -> None:
        gate = asyncio.Semaphore(self._timing.concurrency)

        async def one(bot: Tracked, status: dict[str, Any]) -> None:
            key = (bot.ref.namespace, bot.ref.name)
            async with gate:
                if self.bots.get(key) is not bot or bot.applied is None or bot.unresolved:
                    return  # a handler took it over meanwhile (a newer generation)
                done = self._in_flight[key] = asyncio.Event()
                try:
                    exists = await self._patcher.patch(bot.ref.namespace, bot.ref.name, status)
                except Exception as exc:  # noqa: BLE001 - retried next tick, never fatal
                    log.warning(f"status patch of {bot.ref.bot_id} failed, will retry: {exc}")
                    self._dirty.add(key)
                    return
                finally:
                    del self._in_flight[key]
                    done.set()
            self.beat = self._clock()  # progress inside a long step (10,000 patches)
            if not exists:
                self.forget(*key)
            elif self.bots.get(key) is bot:
                bot.status = status

        await asyncio.gather(*(one(bot, status) for bot, status in changed))

    # -- adopted Bots and failed writes --------------------------------------------------------

    async def resolve(self) -> list[str]:
        """Check the unresolved Bots against one store listing: an entry of their uid and
        generation is taken as it is (no write); the others are written. Returns the bot ids
        written. With the store down, everything waits ``retry`` seconds."""
        self._next_resolve = self._clock() + self._timing.retry
        try:
            entries, _ = await self.store.list()
        except StoreError as exc:
            log.warning(f"store check postponed: config store unavailable ({exc.message})")
            return []
        stored = {e.bot_id: e for e in entries}
        to_write = []
        for key, bot in list(self.bots.items()):
            if not bot.unresolved:
                continue
            entry = stored.get(bot.ref.bot_id)
            if (
                entry is not None
                and entry.uid == bot.ref.uid
                and entry.generation >= bot.ref.generation
                and secret_of(bot.ref.spec) is None  # else re-read: it may have rotated
            ):
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
        """One store listing against the index: rewrite what is missing or stale, retry Bots
        waiting for their Secret. Returns the bot ids rewritten."""
        try:
            entries, _ = await self.store.list()
        except StoreError as exc:
            log.warning(f"drift repair skipped: config store unavailable ({exc.message})")
            return []
        stored = {e.bot_id: e for e in entries}
        stale = [
            key
            for key, bot in self.bots.items()
            if bot.applied is not None
            and not bot.unresolved
            and bot.applied.invalid is None
            and not (
                bot.applied.revision is not None
                and is_current(stored.get(bot.ref.bot_id), bot.ref, bot.applied.annotations)
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
                new = await apply(self.store, bot.ref, self._secrets)
            except Exception as exc:  # noqa: BLE001 - store down, Secret read failed: retried
                reason = exc.message if isinstance(exc, StoreError) else str(exc)
                log.warning(f"writing {bot.ref.bot_id} failed, will retry: {reason}")
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
                log.info(f"{bot.ref.bot_id}: written to the config store")
                fixed.append(bot.ref.bot_id)
            bot.applied, bot.pending, bot.unresolved = new, new.revision is not None, False
            self._dirty.add(key)
        self._wake.set()
        return fixed

    def _jittered(self) -> float:
        return self._timing.drift * self._rng.uniform(0.8, 1.2)
