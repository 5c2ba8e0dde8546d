"""Events on a Bot: one per transition of its status, posted by the handlers and the status
controller, queued on kopf's poster."""

from __future__ import annotations

import asyncio
import contextvars
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._core.engines import posting  # kopf sets these context variables for its handlers

from kubebots.operator.events import BotEvent, KopfEvents, transitions
from kubebots.operator.kopf_settings import tune
from kubebots.operator.reconcile import BotRef
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.configstore import BotReport, MemoryConfigStore, ReplicaReport

from .support import SPEC, FakeSecretVersions, operator, secret_spec
from .test_handlers import event, meta, run_reconcile


def status(
    ready: str,
    reason: str,
    *,
    generation: int = 1,
    revision: int | None = 1,
    served: str = "1/1",
    message: str = "m",
) -> dict[str, Any]:
    synced = "True" if revision is not None else "False"
    conditions = [
        {"type": "Synced", "status": synced, "reason": "Stored"},
        {"type": "Ready", "status": ready, "reason": reason, "message": message},
    ]
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "served": served,
    }
    if revision is not None:
        out["revision"] = revision
    return out


def reasons(events: list[BotEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in events]


def test_a_new_generation_whose_spec_is_valid_posts_accepted_once() -> None:
    valid = status("False", "RollingOut", served="0/1")
    valid["conditions"].insert(0, {"type": "Accepted", "status": "True", "reason": "Valid"})
    events = transitions(None, valid)
    assert reasons(events) == [("Normal", "Accepted"), ("Normal", "Synced")]
    assert events[0].message == "generation 1: the spec is valid"
    assert reasons(transitions(valid, {**valid, "served": "1/1"})) == []
    assert reasons(transitions(valid, {**valid, "observedGeneration": 2}))[0] == (
        "Normal",
        "Accepted",
    )


def test_a_new_bot_posts_synced_then_ready_once() -> None:
    rolling = status("False", "RollingOut", served="0/2")
    assert reasons(transitions(None, rolling)) == [("Normal", "Synced")]
    first = transitions(None, rolling)[0]
    assert first.message == "generation 1 accepted: in the config store at revision 1"
    ready = status("True", "Serving", served="2/2")
    events = transitions(rolling, ready)
    assert reasons(events) == [("Normal", "Ready")]
    assert events[0].message == "served by 2/2 replicas at revision 1"
    # the controller patches again (a third replica): no event
    assert transitions(ready, status("True", "Serving", served="3/3")) == []
    assert transitions(ready, ready) == []


def test_an_edit_served_at_once_posts_synced_and_ready() -> None:
    before = status("True", "Serving")
    after = status("True", "Serving", generation=2, revision=5)
    assert reasons(transitions(before, after)) == [("Normal", "Synced"), ("Normal", "Ready")]


def test_warnings_when_a_problem_starts_not_while_it_lasts() -> None:
    ready = status("True", "Serving")
    broken = status("False", "RuntimeError", message="replica r1: boom")
    events = transitions(ready, broken)
    assert events == [BotEvent("Warning", "RuntimeError", "replica r1: boom")]
    # a second replica fails too: the message changes, the problem does not
    assert transitions(broken, status("False", "RuntimeError", message="r1; r2")) == []
    # another reason starts
    tools = status("False", "ToolUnavailable")
    assert reasons(transitions(broken, tools)) == [("Warning", "ToolUnavailable")]
    # not a problem for the user: no warning
    assert transitions(ready, status("False", "RollingOut")) == []
    assert transitions(ready, status("False", "StoreUnavailable")) == []


def test_a_new_generation_still_invalid_warns_again() -> None:
    invalid = status("False", "InvalidSpec", message="llm: field required")
    invalid["conditions"][0] = {"type": "Synced", "status": "False", "reason": "InvalidSpec"}
    assert reasons(transitions(None, invalid)) == [("Warning", "InvalidSpec")]
    again = {**invalid, "observedGeneration": 2}
    assert reasons(transitions(invalid, again)) == [("Warning", "InvalidSpec")]
    assert transitions(again, again) == []


def test_a_missing_secret_keeps_the_revision_of_the_merge_patch() -> None:
    ready = status("True", "Serving", revision=3)
    missing = status("False", "SecretMissing", generation=2, revision=None)
    assert reasons(transitions(ready, missing)) == [("Warning", "SecretMissing")]
    # the Secret appears: written at a new revision, then served
    written = status("False", "RollingOut", generation=2, revision=4, served="0/1")
    assert reasons(transitions({**ready, **missing}, written)) == [("Normal", "Synced")]


async def report(store: MemoryConfigStore, replica: str, revision: int, *bots: BotReport) -> None:
    await store.report(ReplicaReport(replica, revision, datetime.now(UTC), bots))


async def test_the_handler_and_the_controller_post_each_transition_once() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    first = await run_reconcile(m, meta(), SPEC)
    assert m.events.reasons("support") == ["Accepted", "Synced"]
    assert m.events.binds == 1
    feed = m.services.status_feed
    await report(store, "r1", first["revision"])
    await feed.tick()
    await feed.tick()
    # a watch event with the handler's (older) status: the controller patches again, no event
    await event(m, meta(), SPEC, first)
    await feed.tick()
    assert m.events.reasons("support") == ["Accepted", "Synced", "Ready"]
    ready = [e for _, e in m.events.posted][-1]
    assert ready.message == f"served by 1/1 replicas at revision {first['revision']}"
    # the replica fails the bot: one warning, however many ticks
    rev = first["revision"]
    broken = BotReport("default:support", 1, rev, error="boom", error_revision=rev)
    await report(store, "r1", first["revision"], broken)
    for _ in range(3):
        await feed.tick()
    assert m.events.reasons("support") == ["Accepted", "Synced", "Ready", "RuntimeError"]


async def test_a_missing_secret_warns_and_a_deleted_bot_posts_deleted() -> None:
    store = MemoryConfigStore()
    secrets = FakeSecretVersions()
    m = operator(store, secrets)
    spec = secret_spec("llm-keys", "api-key")
    await run_reconcile(m, meta(), spec)
    assert m.events.reasons("support") == ["Accepted", "SecretMissing"]  # valid, not written
    (_, warning) = m.events.posted[-1]
    assert "llm-keys" in warning.message and warning.type == "Warning"
    writer = asyncio.create_task(m.services.tombstones.run())
    deleting = meta(deletionTimestamp="2026-01-01T00:00:00Z")
    await asyncio.wait_for(event(m, deleting, spec), 10)
    writer.cancel()
    assert m.events.reasons("support") == ["Accepted", "SecretMissing", "Deleted"]
    assert m.finalizers.held["support"] == []


async def test_kopf_events_post_from_outside_a_handler_into_kopfs_queue() -> None:
    """The status controller's task is not a kopf handler: the poster posts in the context
    of the first Bot handler it was bound in (kopf's queue and settings)."""
    settings = kopf.OperatorSettings()
    tune(settings, OperatorSettings())
    queue: posting.K8sEventQueue = asyncio.Queue()
    events = KopfEvents()
    ref = BotRef("default", "support", "uid-1", 1, SPEC)
    events.post(ref, [BotEvent("Normal", "Synced", "x")])  # before any handler: dropped
    assert queue.empty()

    def handler() -> None:  # what kopf sets before calling a resource handler
        posting.settings_var.set(settings)
        posting.event_queue_var.set(queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        events.bind()

    contextvars.copy_context().run(handler)
    events.post(ref, [BotEvent("Normal", "Ready", "served"), BotEvent("Warning", "Bad", "w")])
    posted = [queue.get_nowait(), queue.get_nowait()]
    assert [(e.type, e.reason, e.message) for e in posted] == [
        ("Normal", "Ready", "served"),
        ("Warning", "Bad", "w"),
    ]
    assert dict(posted[0].ref) == {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "name": "support",
        "uid": "uid-1",
        "namespace": "default",
    }
