"""The operator-wide status controller: one task keeps every Bot's ``Ready`` current.

The Bot event handler writes a new generation to the store, waits briefly and patches its status
itself; then it hands the Bot to :class:`StatusFeed` (``track``). Bots the operator finds already
handled when it starts (status of their generation present) are ``adopt``-ed: the feed checks
them against one store listing and writes only the missing or stale ones; a write that failed
(store down) is retried the same way every ``retry`` seconds. The feed keeps an index of the
Bots in memory and follows the replica reports: one ``replica_reports()`` read per tick, every
``fast`` seconds while a Bot is rolling out or the replicas are moving, else every ``idle``
seconds. It recomputes (pure, in memory) the Bots an event concerns: the pending ones, or all of
them when the set of live replicas or a replica's bot reports (errors, fallback LLM endpoints
serving, MCP tool counts) changed, and patches only the statuses that changed, with bounded
concurrency. Drift repair (a wiped or stale store entry rewritten) is one store listing every
``drift_interval`` seconds, jittered by +-20%. A patch that changes a Bot's state (synced, Ready,
a problem starting) posts its events (:mod:`.events`), once per transition.

The rollout controller (:mod:`.rollouts`) never patches a status: it hands each move of a
Bot's rollout over (``rollout_changed``, ``rollout_noted``), so the feed stays the one writer of
every status. The index is :mod:`.status_index`, the store work :mod:`.status_writes`.
Nothing here talks to Kubernetes or kopf: the patcher, the store, the Secret reader, the event
poster and the clocks are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from kubebots.runtime.configstore import ReplicaReport, ReportingConfigStore, StoreError
from kubebots.runtime.configstore.serving import serving_from

from .events import EventPoster, NoEvents, transitions
from .reconcile import Applied, BotRef, SecretVersions
from .rollout_status import RolloutNote
from .status import differs, status_patch
from .status_index import Key, Timing, Tracked
from .status_writes import BotWrites

log = logging.getLogger("kubebots.operator.status")

__all__ = ["Key", "StatusFeed", "StatusPatcher", "Timing", "Tracked"]


class StatusPatcher(Protocol):
    """Merge-patches a Bot's status; returns False when the Bot is gone (404)."""

    async def patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool: ...


def _signature(reports: Sequence[ReplicaReport]) -> dict[str, tuple[Any, ...]]:
    """What makes every Bot's status change: which replicas are live and their bot reports
    (errors, fallback LLM endpoints serving, MCP tool counts; not a rollout's turn counts,
    which move with every turn: the rollout controller reads those)."""
    return {
        r.replica_id: tuple(replace(b, rollout=()) if b.rollout else b for b in r.bots)
        for r in reports
    }


class StatusFeed(BotWrites):
    store: ReportingConfigStore  # the writes need configs, the follow-up replica reports

    def __init__(
        self,
        store: ReportingConfigStore,
        patcher: StatusPatcher,
        secrets: SecretVersions,
        timing: Timing,
        *,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        events: EventPoster | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store, secrets, timing, clock=clock, wall=wall)
        self._patcher = patcher
        self.events: EventPoster = events or NoEvents()
        self._rng = rng or random.Random()
        self._signature: dict[str, tuple[Any, ...]] | None = None
        self._synced: dict[str, int] = {}
        self._next_repair = clock() + self._jittered()
        self._store_down = False
        #: the rollout controller's last judgement of each Bot's step (:meth:`rollout_noted`)
        self.notes: dict[Key, RolloutNote] = {}

    def rollout_changed(self, ref: BotRef, was: Applied, now: Applied) -> bool:
        """The rollout controller wrote ``ref``'s rollout on (advanced, promoted, rolled back):
        the feed patches the status. Nothing when a handler took the Bot over meanwhile (its
        ``applied`` is no longer ``was``); whether it was taken."""
        key = (ref.namespace, ref.name)
        bot = self.bots.get(key)
        if bot is None or bot.ref != ref or bot.applied is not was or bot.unresolved:
            return False
        bot.applied, bot.pending = now, now.revision is not None
        self._dirty.add(key)
        self._wake.set()
        return True

    def forget(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Stop tracking a Bot (and drop its rollout note); whether it was tracked."""
        forgotten = super().forget(namespace, name, uid)
        if forgotten:
            self.notes.pop((namespace, name), None)
        return forgotten

    def rollout_noted(self, ref: BotRef, note: RolloutNote) -> None:
        """The rollout controller judged ``ref``'s step: its figures go in the status."""
        key = (ref.namespace, ref.name)
        bot = self.bots.get(key)
        if bot is None or bot.ref != ref or self.notes.get(key) == note:
            return
        self.notes[key] = note
        self._dirty.add(key)
        self._wake.set()

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
            new = status_patch(bot.ref, applied, live, bot.status, self.notes.get(key))
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
                self.events.post(bot.ref, transitions(bot.announced, status))
                bot.announced = status

        await asyncio.gather(*(one(bot, status) for bot, status in changed))

    def _jittered(self) -> float:
        return self._timing.drift * self._rng.uniform(0.8, 1.2)
