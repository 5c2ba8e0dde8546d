"""The rollout controller with the handlers and the status controller, on a real memory store:
turn counters arrive in replica reports written through the store's ``report``; the wall clock
steps are timed by is the test's. Steps advance, wait for turns, roll back, promote; a restarted
operator resumes the same step; the ``rollout-action`` annotation is acted on once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from kubebots.operator.handlers import bot_event, secret_changed
from kubebots.operator.kube import FINALIZER
from kubebots.operator.rollout_status import rfc3339
from kubebots.runtime.configstore import BotReport, MemoryConfigStore, ReplicaReport
from kubebots.runtime.configstore.counters import GenerationCounters
from kubebots.runtime.configstore.rollout import RolloutState, candidate_id, decode_state

from .support import SPEC, FlakyStore, Operator, operator, secret_spec
from .test_handlers import LOG, secret_event

BOT = "default:canary"
KEY = ("default", "canary")
WALL = 1_800_000_000.0
ACTION = "kubebots.io/rollout-action"
ROLLOUT: dict[str, Any] = {
    "steps": [{"weight": 10, "durationSeconds": 60}, {"weight": 50, "durationSeconds": 60}],
    "analysis": {"intervalSeconds": 10, "minTurns": 5, "maxErrorRatePercent": 20},
}


class Wall:
    """Unix seconds the test moves."""

    def __init__(self) -> None:
        self.now = WALL

    def __call__(self) -> float:
        return self.now


def spec(prompt: str, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**SPEC, "systemPrompt": prompt, "rollout": rollout or ROLLOUT}


def meta(generation: int, action: str | None = None) -> dict[str, Any]:
    return {
        "namespace": "default",
        "name": "canary",
        "uid": "uid-1",
        "generation": generation,
        "resourceVersion": "1",
        "finalizers": [FINALIZER],
        "annotations": {ACTION: action} if action else {},
    }


class Rig:
    """An operator on ``store``: Bot events in, the controllers stepped by hand."""

    def __init__(self, store: MemoryConfigStore, wall: Wall) -> None:
        self.store, self.wall = store, wall
        self.m: Operator = operator(store, wall=wall)
        self.status: dict[str, Any] = {}  # the Bot's status as the API holds it

    async def event(
        self,
        generation: int,
        body: dict[str, Any],
        *,
        action: str | None = None,
        type: str | None = "MODIFIED",
    ) -> None:
        patch = kopf.Patch()
        await bot_event(
            type=type,
            meta=meta(generation, action),
            spec=body,
            status=self.status,
            patch=patch,
            memo=self.m.memo,
            logger=LOG,
        )
        self.status = {**self.status, **dict(patch.get("status") or {})}

    async def step(self) -> None:
        """A rollout tick, then a status tick (what the two tasks do)."""
        await self.m.services.rollouts.step()
        await self.m.services.status_feed.tick()
        for sent in self.m.patcher.sent:
            self.status = {**self.status, **sent.status}
        self.m.patcher.sent.clear()

    def condition(self, kind: str) -> tuple[str, str, str]:
        found = next(c for c in self.status["conditions"] if c["type"] == kind)
        return found["status"], found["reason"], found["message"]

    @property
    def rollout(self) -> dict[str, Any]:
        return dict(self.status["rollout"])

    def events(self) -> list[str]:
        return self.m.events.reasons("canary")

    async def state(self) -> RolloutState | None:
        entry = await self.store.get(candidate_id(BOT))
        return None if entry is None else decode_state(entry.annotations)

    async def serve(self, *counters: GenerationCounters, revision: int | None = None) -> None:
        """Replica r1's report: synced up to ``revision`` (the current one), with counts."""
        synced = revision if revision is not None else await self.store.current_revision()
        bots = (BotReport(BOT, None, None, rollout=counters),) if counters else ()
        await self.store.report(ReplicaReport("r1", synced, datetime.now(UTC), bots))


def turns(
    generation: int, window: str, n: int, errors: int = 0, *, shadow: bool = False
) -> GenerationCounters:
    return GenerationCounters(generation, window, shadow, turns=n, errors=errors)


async def started(store: MemoryConfigStore | None = None) -> Rig:
    """Generation 1 stable, generation 2 the candidate at step 1 (since WALL)."""
    rig = Rig(store or MemoryConfigStore(), Wall())
    await rig.serve()
    await rig.event(1, spec("v1"))
    await rig.event(2, spec("v2"))
    return rig


async def test_a_change_starts_a_rollout_shown_in_the_status() -> None:
    rig = await started()
    assert rig.condition("Ready")[:2] == ("False", "RolloutInProgress")
    assert (
        "step 1/2: 10% of new conversations to generation 2 (stable 1)" in rig.condition("Ready")[2]
    )
    assert rig.condition("Reconciling")[0] == "True" and rig.condition("Stalled")[0] == "False"
    assert rig.condition("Progressing")[:2] == ("True", "StepPaused")
    assert rig.condition("Degraded")[:2] == ("False", "Healthy")
    assert rig.rollout == {
        "phase": "Progressing",
        "step": 1,
        "steps": 2,
        "weight": 10,
        "shadow": False,
        "stableGeneration": 1,
        "candidateGeneration": 2,
        "attempt": 1,
        "stepStartedAt": rfc3339(WALL),
        "message": "step 1/2: 10% of new conversations",
        "analysis": None,
    }
    assert rig.events().count("RolloutStarted") == 1


async def test_steps_advance_after_their_duration_then_the_candidate_is_promoted() -> None:
    rig = await started()
    await rig.serve(turns(2, "1.0", 5), turns(1, "1.0", 20))
    rig.wall.now = WALL + 30  # judged (every 10 s), the step lasts on
    await rig.step()
    assert rig.rollout["step"] == 1
    assert rig.rollout["analysis"]["candidate"]["turns"] == 5
    assert rig.rollout["analysis"]["stable"]["turns"] == 20
    rig.wall.now = WALL + 61
    await rig.step()
    state = await rig.state()
    assert state is not None and (state.step, state.weight) == (1, 50)
    assert state.step_started_at == WALL + 61
    assert rig.rollout["step"] == 2 and rig.rollout["weight"] == 50
    assert rig.rollout["message"] == "step 2/2: 50% of new conversations"
    assert "analysis" not in rig.rollout or rig.rollout["analysis"] is None  # a new window
    assert rig.events().count("StepAdvanced") == 1
    # the last step: promoted
    await rig.serve(turns(2, "1.1", 6), turns(1, "1.1", 10))
    rig.wall.now = WALL + 122
    await rig.step()
    own = await rig.store.get(BOT)
    assert own is not None and own.generation == 2 and own.config["systemPrompt"] == "v2"
    assert await rig.store.get(candidate_id(BOT)) is None
    assert rig.rollout["phase"] == "Promoted" and rig.rollout["weight"] == 100
    assert rig.condition("Progressing")[:2] == ("False", "Promoted")
    assert rig.condition("Ready")[:2] == ("False", "RollingOut")  # replicas catch up
    assert rig.status["revision"] == own.revision
    await rig.serve()
    await rig.step()
    assert rig.condition("Ready")[:2] == ("True", "Serving")
    events = rig.events()
    assert events.count("Promoted") == 1 and events[-1] == "Ready"
    assert events.count("Synced") == 2  # generations 1 and 2 (the steps say so themselves)
    revision = await rig.store.current_revision()  # the candidate's tombstone
    await rig.step()  # nothing more happens
    assert rig.events() == events and await rig.store.current_revision() == revision


async def test_a_step_over_without_enough_turns_waits_for_them() -> None:
    rig = await started()
    await rig.serve(turns(2, "1.0", 3), turns(1, "1.0", 20))
    rig.wall.now = WALL + 61
    await rig.step()
    assert (await rig.state()) is not None and rig.rollout["step"] == 1
    assert rig.condition("Progressing") == ("True", "Analyzing", "waiting for turns: 3 of 5")
    assert rig.rollout["message"] == "waiting for turns: 3 of 5"
    await rig.serve(turns(2, "1.0", 5), turns(1, "1.0", 20))
    await rig.step()
    assert rig.rollout["step"] == 2 and rig.condition("Progressing")[1] == "StepPaused"


async def test_a_failing_candidate_is_rolled_back_at_the_next_judgement() -> None:
    rig = await started()
    await rig.serve(turns(2, "1.0", 5, errors=3), turns(1, "1.0", 20))
    rig.wall.now = WALL + 5  # no judgement due yet
    await rig.step()
    assert rig.rollout["phase"] == "Progressing"
    rig.wall.now = WALL + 11
    await rig.step()
    state = await rig.state()
    assert state is not None and state.phase == "RolledBack" and state.weight == 0
    assert state.reason.startswith("AnalysisFailed: error rate 60%")
    assert rig.condition("Ready")[:2] == ("False", "RolledBack")
    assert rig.condition("Stalled")[0] == "True" and rig.condition("Reconciling")[0] == "False"
    degraded = rig.condition("Degraded")
    assert degraded[:2] == ("True", "AnalysisFailed") and degraded[2].startswith("error rate")
    assert rig.condition("Progressing")[:2] == ("False", "RolledBack")
    assert rig.rollout["phase"] == "RolledBack" and rig.rollout["weight"] == 0
    assert rig.events().count("RolledBack") == 1
    rolled_back = next(e for n, e in rig.m.events.posted if e.reason == "RolledBack")
    assert rolled_back.type == "Warning" and "generation 1 serves" in rolled_back.message
    revision = await rig.store.current_revision()
    rig.wall.now = WALL + 500
    await rig.step()  # a rolled back candidate stays as it is
    assert await rig.store.current_revision() == revision and rig.events().count("RolledBack") == 1


async def test_a_restarted_operator_resumes_the_same_step() -> None:
    rig = await started()
    await rig.serve(turns(2, "1.0", 5), turns(1, "1.0", 20))
    revision = await rig.store.current_revision()
    again = Rig(rig.store, rig.wall)  # a new operator: kopf lists the Bot (type None)
    again.status = rig.status
    rig.wall.now = WALL + 40
    await again.event(2, spec("v2"), type=None)
    await again.m.services.status_feed.resolve()
    assert await rig.store.current_revision() == revision  # the rollout is not restarted
    await again.step()
    assert again.rollout["step"] == 1  # 20 s of the step left
    rig.wall.now = WALL + 61
    await again.step()
    state = await again.state()
    assert state is not None and state.step == 1 and again.rollout["step"] == 2
    assert again.events() == ["StepAdvanced"]  # nothing announced twice


async def test_actions_are_acted_on_once_each() -> None:
    rig = await started()
    await rig.event(2, spec("v2"), action="abort t1")
    await rig.step()
    state = await rig.state()
    assert state is not None and state.phase == "Aborted" and state.handled_action == "abort t1"
    assert rig.condition("Ready")[:2] == ("False", "Aborted")
    assert rig.condition("Stalled")[0] == "True"
    assert rig.events().count("Aborted") == 1
    revision = await rig.store.current_revision()
    await rig.event(2, spec("v2"), action="abort t1")  # the same value: done already
    await rig.step()
    assert await rig.store.current_revision() == revision
    await rig.event(2, spec("v2"), action="retry t2")
    await rig.step()
    state = await rig.state()
    assert state is not None and state.phase == "Progressing" and state.attempt == 2
    assert state.step == 0 and state.window == "2.0"
    assert rig.rollout["attempt"] == 2 and rig.condition("Ready")[1] == "RolloutInProgress"
    assert rig.events().count("RolloutStarted") == 2
    await rig.event(2, spec("v2"), action="promote t3")
    await rig.step()
    own = await rig.store.get(BOT)
    assert own is not None and own.generation == 2
    assert await rig.store.get(candidate_id(BOT)) is None
    assert rig.rollout["phase"] == "Promoted" and rig.events().count("Promoted") == 1
    revision = await rig.store.current_revision()
    await rig.event(2, spec("v2"), action="promote t3")
    await rig.step()
    assert await rig.store.current_revision() == revision


async def test_an_action_that_does_not_apply_is_recorded_and_ignored() -> None:
    rig = await started()
    await rig.event(2, spec("v2"), action="retry now")  # retry: only after a rollback
    await rig.step()
    state = await rig.state()
    assert state is not None and state.phase == "Progressing" and state.attempt == 1
    assert state.handled_action == "retry now"


async def test_a_restart_never_acts_on_a_handled_action_again() -> None:
    rig = await started()
    await rig.event(2, spec("v2"), action="abort t1")
    await rig.step()
    revision = await rig.store.current_revision()
    again = Rig(rig.store, rig.wall)
    again.status = rig.status
    await again.event(2, spec("v2"), action="abort t1", type=None)
    await again.m.services.status_feed.resolve()
    await again.step()
    assert await rig.store.current_revision() == revision and again.events() == []


async def test_a_new_rollout_ignores_the_action_annotation_left_from_before() -> None:
    rig = await started()
    await rig.event(2, spec("v2"), action="promote t1")
    await rig.step()
    await rig.event(3, spec("v3"), action="promote t1")  # the annotation stays on the Bot
    await rig.step()
    state = await rig.state()
    assert state is not None and state.phase == "Progressing"
    assert rig.rollout["candidateGeneration"] == 3 and rig.rollout["stableGeneration"] == 2


async def test_shadow_steps_are_judged_on_mirrored_turns() -> None:
    rig = Rig(MemoryConfigStore(), Wall())
    await rig.serve()
    shadow = {**ROLLOUT, "shadow": True}
    await rig.event(1, spec("v1", shadow))
    await rig.event(2, spec("v2", shadow))
    assert rig.rollout["shadow"] is True
    assert rig.rollout["message"] == "step 1/2: 10% of turns mirrored"
    await rig.serve(turns(2, "1.0", 9), turns(1, "1.0", 20))  # not mirrored: not counted
    rig.wall.now = WALL + 61
    await rig.step()
    assert rig.rollout["step"] == 1
    await rig.serve(turns(2, "1.0", 5, shadow=True), turns(1, "1.0", 20))
    await rig.step()
    assert rig.rollout["step"] == 2


async def test_a_store_outage_is_retried_the_next_tick() -> None:
    store = FlakyStore()
    rig = await started(store)
    await rig.serve(turns(2, "1.0", 5), turns(1, "1.0", 20))
    rig.wall.now = WALL + 61
    store.down = True
    await rig.m.services.rollouts.step()  # refused: nothing changes, nothing raised
    store.down = False
    await rig.step()
    state = await rig.state()
    assert state is not None and state.step == 1


async def test_a_storage_move_skips_the_rollout_with_an_event() -> None:
    rig = Rig(MemoryConfigStore(), Wall())
    await rig.serve()
    await rig.event(1, spec("v1"))
    moved = {**spec("v2"), "conversationStorage": {"backend": "sqlite", "path": "/tmp/c.db"}}
    await rig.event(2, moved)
    assert await rig.store.get(candidate_id(BOT)) is None
    assert "RolloutSkipped" in rig.events() and "rollout" not in rig.status


async def test_a_promoted_generation_keeps_its_status_after_a_restart() -> None:
    rig = await started()
    await rig.event(2, spec("v2"), action="promote t1")
    await rig.step()
    await rig.serve()
    await rig.step()
    promoted, ready = rig.rollout, rig.condition("Ready")
    assert promoted["phase"] == "Promoted" and ready[:2] == ("True", "Serving")
    again = Rig(rig.store, rig.wall)
    again.status = rig.status
    await again.event(2, spec("v2"), action="promote t1", type=None)
    await again.m.services.status_feed.resolve()
    await again.step()
    assert again.rollout == promoted and again.condition("Ready") == ready
    assert again.condition("Progressing")[:2] == ("False", "Promoted")
    assert again.events() == []


async def test_a_secret_rotating_during_a_rollout_keeps_its_progress() -> None:
    rig = Rig(MemoryConfigStore(), Wall())
    rig.m.secrets.put("default", "keys", "7", "k")
    await rig.serve()
    body = {**secret_spec("keys"), "rollout": ROLLOUT}
    await rig.event(1, body)
    await rig.event(2, {**body, "systemPrompt": "v2"})
    before = await rig.state()
    rig.m.secrets.put("default", "keys", "8", "k")
    await secret_changed(
        type="MODIFIED", memo=rig.m.memo, logger=LOG, **secret_event("keys", "8", "k")
    )
    candidate = await rig.store.get(candidate_id(BOT))
    assert candidate is not None and candidate.annotations["secretVersion"] == "8"
    assert await rig.state() == before
    await rig.step()
    assert rig.status["revision"] == candidate.revision  # Ready follows the candidate entry
    assert rig.condition("Ready")[1] == "RolloutInProgress"
