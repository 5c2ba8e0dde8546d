"""The status controller's index of the Bots: what it knows of each, fed by the handlers.

The Bot event handler announces a generation it works on (``begin``), hands the Bot over when
done (``track``), or reports a write that failed (``failed``); Bots found handled at a restart
are ``adopt``-ed. Events show the status that landed (``saw``). Pure state, no I/O: the store
work is in :mod:`.status_writes`, the loop in :mod:`.status_feed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kubebots.runtime.configstore.rollout import candidate_id

from .reconcile import Applied, BotRef
from .status import differs

Key = tuple[str, str]  # (namespace, name)


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
    #: the status the Bot's events were last read off (:mod:`.events`): ``status`` when made;
    #: unlike ``status``, a watch event's older status never replaces it (no event twice)
    announced: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.announced is None:
            self.announced = self.status


class BotIndex:
    def __init__(self, timing: Timing, *, clock: Callable[[], float]) -> None:
        self._timing = timing
        self._clock = clock
        self.bots: dict[Key, Tracked] = {}
        self._dirty: set[Key] = set()
        self._in_flight: dict[Key, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._next_resolve = clock()
        self.beat = clock()  # when the loop last made progress (a step, a patch, a write)

    def _superseded(self, ref: BotRef) -> bool:
        """Whether a newer generation of ``ref``'s object is tracked (a handler's late call)."""
        bot = self.bots.get((ref.namespace, ref.name))
        return bot is not None and bot.ref.uid == ref.uid and bot.ref.generation > ref.generation

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
        if self._superseded(ref):
            return
        self.bots[(ref.namespace, ref.name)] = Tracked(
            ref, applied, status, pending=False, unresolved=True
        )
        self._next_resolve = min(self._next_resolve, self._clock() + self._timing.retry)
        self._wake.set()

    def references_secret(self, namespace: str, secret: str) -> bool:
        """Whether a Bot of ``namespace`` names ``secret`` anywhere in its spec (its LLM key, a
        fallback's, a tool header's; in memory, no I/O)."""
        return any(k[0] == namespace and secret in b.ref.secret_names for k, b in self.bots.items())

    def begin(self, ref: BotRef) -> None:
        """A handler works on ``ref``'s generation: the feed keeps off it until ``track``."""
        if self._superseded(ref):
            return
        old = self.bots.get((ref.namespace, ref.name))
        self.bots[(ref.namespace, ref.name)] = Tracked(
            ref, None, old.status if old else None, since=self._clock()
        )

    def track(self, ref: BotRef, applied: Applied, status: Mapping[str, Any]) -> None:
        """The handler is done: ``status`` is what it patches; the feed takes over."""
        if self._superseded(ref):
            return  # a newer generation is already being handled
        key = (ref.namespace, ref.name)
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
        """``rotate_secret`` re-wrote these entry ids at these revisions: Ready follows them."""
        for bot in self.bots.values():
            rolling_out = bot.applied is not None and bot.applied.rolling_out
            # a Bot under rollout follows its candidate entry (the generation it shows)
            entry_id = candidate_id(bot.ref.bot_id) if rolling_out else bot.ref.bot_id
            revision = revisions.get(entry_id)
            if revision is not None and bot.applied is not None:
                bot.applied = replace(bot.applied, revision=revision)
                bot.pending = True
                self._dirty.add((bot.ref.namespace, bot.ref.name))
        self._wake.set()
