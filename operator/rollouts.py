"""The rollout controller: one task moves every Bot's canary on, step by step.

A Bot whose generation was written as a candidate (:mod:`.rollout_writes`) is tracked by the
status controller with ``Applied.rollout`` Progressing. Every ``tick`` this task reads the
replica reports once (the shared :class:`~.status.ReportsCache`) if any Bot is progressing, adds
up each such Bot's turn counters over the live replicas (``BotReport.rollout``): the candidate's
(its generation, the state's window, shadow as the state says) and the stable generation's (same
window, never shadow). Every ``analysis.intervalSeconds`` since the step began, and on every
tick once its duration is over, it judges them (:func:`.analysis.judge`):

* a failure -> rolled back at once: the candidate entry re-put with phase ``RolledBack``,
  weight 0, reason ``AnalysisFailed: <failure>``;
* duration over, enough turns, no failure -> the next step (its weight, its start now), or
  after the last one the promotion: the Bot's own entry gets the candidate's spec, generation,
  uid and Secret stamps, then the candidate entry is deleted;
* duration over, too few turns -> it waits (``waiting for turns: 3 of 20`` in the status).

The state lives only in the candidate entry (``step_started_at`` is wall-clock time), so a
restarted operator resumes the same step with its remaining time. A write the store refuses is
tried again the next tick. The status follows through the status controller
(``StatusFeed.rollout_changed``/``rollout_noted``), its one writer; events are read off the
statuses it patches (:mod:`.events`).

Actions: the Bot annotation ``kubebots.io/rollout-action`` (``promote``, ``abort`` or ``retry``,
optionally followed by a space and any token) reaches :meth:`RolloutController.ask` from the
Bot event handler; each value is acted on once (the state's ``handled_action`` records it, in
the store, so a restart does not act again): promote now, abort (phase ``Aborted``, weight 0),
retry a rolled back or aborted candidate (step 0, attempt + 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Final

from kubebots.runtime._supervise import outliving_defects
from kubebots.runtime.configstore import StoreError
from kubebots.runtime.configstore.counters import CounterKey, GenerationCounters, add_up
from kubebots.runtime.configstore.rollout import RolloutState, candidate_id
from kubebots.runtime.schema.rollout import RolloutConfig

from .analysis import judge
from .reconcile import Applied, BotRef
from .rollout_status import ANALYSIS_FAILED, RolloutNote
from .rollout_writes import put_candidate
from .status import ReportsCache
from .status_feed import StatusFeed
from .status_index import Key, Tracked

log = logging.getLogger("kubebots.operator.rollouts")

#: The Bot annotation (after the operator's annotation prefix) asking for an action.
ACTION_ANNOTATION: Final = "rollout-action"
ACTIONS: Final = frozenset({"promote", "abort", "retry"})

Sums = Mapping[CounterKey, GenerationCounters]


def action_verb(value: str) -> str:
    """The action an annotation value asks for (``promote 2026-12-06T02:00:00Z`` ->
    ``promote``; "" for none)."""
    words = value.split(maxsplit=1)
    return words[0].lower() if words else ""


class RolloutController:
    def __init__(
        self,
        feed: StatusFeed,
        reports: ReportsCache,
        *,
        tick: float,
        replica_max_age: float,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        annotation: str = f"kubebots.io/{ACTION_ANNOTATION}",
    ) -> None:
        self._feed = feed
        self._reports = reports
        self._tick = tick
        self._max_age = replica_max_age
        self._wall = wall
        self._annotation = annotation
        self._asked: dict[Key, str] = {}  # action annotation values not acted on yet
        #: when each Bot's step is judged next: (uid, generation, window) -> wall time
        self._due: dict[Key, tuple[tuple[str, int, str], float]] = {}
        self._wake = asyncio.Event()
        self._store_down = False
        self._clock = clock
        self._beat = clock()  # when the last tick ended (a refused store counts)

    # -- the handlers' side --------------------------------------------------------------------

    def ask(self, ref: BotRef, value: str) -> None:
        """The Bot shows this ``rollout-action`` value: acted on in the next tick, unless it
        was (in memory: cheap for every Bot event)."""
        key = (ref.namespace, ref.name)
        bot = self._feed.bots.get(key)
        state = bot.applied.rollout if bot is not None and bot.applied is not None else None
        if not value or self._asked.get(key) == value:
            return
        if state is not None and state.handled_action == value:
            return
        self._asked[key] = value
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    def lag(self) -> tuple[float, str]:
        """Seconds since the last tick ended (``/healthz``'s progress probe): a tick that hangs
        (a store call that never returns) stalls every rollout, and the kubelet restarts us."""
        lag = self._clock() - self._beat
        return max(0.0, lag - self._tick), f"the last rollout tick ended {lag:.0f}s ago"

    async def run(self) -> None:
        """Forever (cancelled at cleanup)."""
        while True:
            with outliving_defects(log, "rollout tick failed; trying again next tick"):
                await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)
            self._wake.clear()

    async def step(self) -> None:
        """One tick: the asked actions, then every progressing Bot's step."""
        try:
            await self._step()
        finally:
            self._beat = self._clock()

    async def _step(self) -> None:
        work = self._work()
        if not work:
            return
        sums: dict[str, Sums] = {}
        if any(bot.applied is not None and bot.applied.progressing for _, bot in work):
            try:
                reports = await self._reports.get(self._max_age)
            except StoreError as exc:
                self._down(exc)
                return
            wanted = {bot.ref.bot_id for _, bot in work}
            counted: dict[str, list[GenerationCounters]] = {}
            for report in reports:
                for bot_report in report.bots:
                    if bot_report.rollout and bot_report.bot_id in wanted:
                        counted.setdefault(bot_report.bot_id, []).extend(bot_report.rollout)
            sums = {bot_id: add_up(counters) for bot_id, counters in counted.items()}
        for key, bot in work:
            try:
                await self._one(key, bot, sums.get(bot.ref.bot_id, {}))
            except StoreError as exc:
                self._down(exc)
                return
        if self._store_down:
            log.info("config store available again: rollouts move on")
        self._store_down = False

    def _down(self, exc: StoreError) -> None:
        if not self._store_down:
            log.warning(f"rollouts paused: config store unavailable ({exc.message})")
        self._store_down = True

    def _work(self) -> list[tuple[Key, Tracked]]:
        """The Bots to look at: progressing ones and those asked an action (an ask for a Bot
        without a candidate is dropped; one for a Bot a handler works on waits)."""
        bots = self._feed.bots
        for key in list(self._asked):
            bot = bots.get(key)
            if bot is None or (bot.applied is not None and not bot.applied.rolling_out):
                del self._asked[key]
        for key in list(self._due):
            if key not in bots:
                del self._due[key]
        return [
            (key, bot)
            for key, bot in bots.items()
            if bot.applied is not None
            and not bot.unresolved
            and (bot.applied.progressing or key in self._asked)
        ]

    async def _one(self, key: Key, bot: Tracked, sums: Sums) -> None:
        applied = bot.applied
        if applied is None or applied.rollout is None or applied.plan is None:
            return
        state, plan, ref = applied.rollout, applied.plan, bot.ref
        value = self._asked.pop(key, None)
        if value is not None and value != state.handled_action and applied.rolling_out:
            await self._act(bot, applied, state, plan, value)
            return
        if not applied.progressing:
            return
        now = self._wall()
        step = plan.steps[min(state.step, len(plan.steps) - 1)]
        over = now - state.step_started_at >= step.duration_seconds
        if not (over or self._judgement_due(key, ref, state, plan, now)):
            return
        candidate = sums.get((ref.generation, state.window, state.shadow))
        stable = sums.get((state.stable_generation, state.window, False))
        verdict = judge(plan.analysis, candidate, stable)
        waiting = over and not verdict.enough and verdict.failure is None
        self._feed.rollout_noted(ref, RolloutNote(ref.generation, state.window, verdict, waiting))
        if verdict.failure is not None:
            reason = f"{ANALYSIS_FAILED}: {verdict.failure}"
            log.warning(f"{ref.bot_id}: generation {ref.generation} rolled back: {reason}")
            await self._write(
                bot, applied, state.evolve(phase="RolledBack", weight=0, reason=reason)
            )
        elif over and verdict.enough:
            await self._advance(bot, applied, state, plan, now)

    def _judgement_due(
        self, key: Key, ref: BotRef, state: RolloutState, plan: RolloutConfig, now: float
    ) -> bool:
        """Whether an ``intervalSeconds`` boundary of the step passed since the last look."""
        interval = plan.analysis.interval_seconds
        ident = (ref.uid, ref.generation, state.window)
        known = self._due.get(key)
        if known is None or known[0] != ident:
            elapsed = max(0.0, now - state.step_started_at)
            known = (
                ident,
                state.step_started_at + interval * max(1, math.ceil(elapsed / interval)),
            )
        if now < known[1]:
            self._due[key] = known
            return False
        elapsed = now - state.step_started_at
        self._due[key] = (ident, state.step_started_at + interval * (elapsed // interval + 1))
        return True

    async def _advance(
        self, bot: Tracked, applied: Applied, state: RolloutState, plan: RolloutConfig, now: float
    ) -> None:
        following = state.step + 1
        if following >= len(plan.steps):
            await self._promote(bot, applied, state)
            return
        weight = plan.steps[following].weight
        log.info(f"{bot.ref.bot_id}: step {following + 1}/{len(plan.steps)}, {weight}%")
        await self._write(
            bot, applied, state.evolve(step=following, weight=weight, step_started_at=now)
        )

    async def _write(self, bot: Tracked, applied: Applied, state: RolloutState) -> None:
        """Re-put the candidate entry with ``state``; the status follows."""
        revision = await put_candidate(self._feed.store, bot.ref, applied.annotations, state)
        self._feed.rollout_changed(
            bot.ref, applied, replace(applied, rollout=state, revision=revision)
        )

    async def _promote(self, bot: Tracked, applied: Applied, state: RolloutState) -> None:
        """The candidate's spec into the Bot's own entry, then the candidate entry deleted
        (only while it still holds this generation: a newer one is a rollout of its own)."""
        store, ref = self._feed.store, bot.ref
        revision = await store.put(
            ref.bot_id,
            dict(ref.spec),
            generation=ref.generation,
            uid=ref.uid,
            annotations=applied.annotations,
        )
        held = await store.get(candidate_id(ref.bot_id))
        if held is not None and held.uid == ref.uid and held.generation == ref.generation:
            await store.delete(candidate_id(ref.bot_id))
        log.info(f"{ref.bot_id}: generation {ref.generation} promoted")
        promoted = replace(
            applied, revision=revision, rollout=state, promoted=True, stable_revision=None
        )
        self._feed.rollout_changed(ref, applied, promoted)

    async def _act(
        self,
        bot: Tracked,
        applied: Applied,
        state: RolloutState,
        plan: RolloutConfig,
        value: str,
    ) -> None:
        """Act on an action annotation's ``value`` (once: recorded as handled)."""
        verb, ref = action_verb(value), bot.ref
        handled = state.evolve(handled_action=value)
        log.info(f"{ref.bot_id}: {self._annotation}={value!r} (phase {state.phase})")
        if verb == "promote":
            await self._promote(bot, applied, handled)
        elif verb == "abort" and state.phase == "Progressing":
            reason = f"Aborted: asked by {self._annotation}"
            await self._write(
                bot, applied, handled.evolve(phase="Aborted", weight=0, reason=reason)
            )
        elif verb == "retry" and state.phase in ("RolledBack", "Aborted"):
            retried = handled.evolve(
                phase="Progressing",
                step=0,
                weight=plan.steps[0].weight,
                attempt=state.attempt + 1,
                step_started_at=self._wall(),
                reason="",
            )
            await self._write(bot, applied, retried)
        else:
            why = "unknown action" if verb not in ACTIONS else f"not in phase {state.phase}"
            log.warning(f"{ref.bot_id}: {self._annotation}={value!r} ignored: {why}")
            await self._write(bot, applied, handled)
