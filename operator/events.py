"""Kubernetes events on a Bot, one per transition of its status (never one per status tick).

The events are read off two statuses, the one last announced and the one patched now (pure:
:func:`transitions`), so a status the controller patches again with new replica counts posts
nothing. Normal events:

- ``Accepted``: a new generation's spec is valid (once per generation);
- ``Synced``: a generation accepted and written to the config store (or written again: a
  Secret it names rotated, drift repaired), with its revision;
- ``Ready``: the Bot's revision served by every live runtime replica (``Ready`` turned True, or
  a new revision became Ready);
- ``Deleted``: the Bot's tombstone written (the runtime replicas drop it).

Warning events when ``Ready`` turns False for a problem a user must look at (the reasons of
:data:`WARNINGS`), once per reason and revision.

A rollout's events are read off ``status.rollout`` alike (:func:`rollout_transitions`): Normal
``RolloutStarted`` (a candidate generation, or a retry, begins its first step),
``StepAdvanced``, ``Promoted``; Warning ``RolledBack`` and ``Aborted``. ``RolloutSkipped``
(Normal: a change that cannot be canaried was written at once) is posted by the handler that
wrote it (:func:`rollout_skipped`). Messages are the status conditions' messages:
no Secret value is ever in them.

kopf posts the events in the background (:func:`kopf.info` and :func:`kopf.warn`, under
``settings.posting.level``); it finds its event queue in context variables set for the handlers
of a resource only, so :class:`KopfEvents` copies a Bot handler's context the first time one
runs and posts from the status controller's task in that copy.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import kopf

from kubebots.runtime.schema import API_GROUP, API_VERSION, KIND

from .reconcile import BotRef

log = logging.getLogger("kubebots.operator.events")

#: The ``Ready`` reasons posted as Warning events when they start.
WARNINGS = frozenset({"InvalidSpec", "SecretMissing", "ToolUnavailable", "RuntimeError"})


@dataclass(frozen=True)
class BotEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class EventPoster(Protocol):
    """Posts events on a Bot (queued: never waits for the API)."""

    def bind(self) -> None:
        """Called in every Bot handler (before it posts)."""

    def post(self, ref: BotRef, events: Sequence[BotEvent]) -> None: ...


class NoEvents:
    """Posts nothing (a status controller built without Kubernetes, in tests)."""

    def bind(self) -> None:
        return None

    def post(self, ref: BotRef, events: Sequence[BotEvent]) -> None:
        return None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return {}


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return _condition(status, "Ready")


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[BotEvent]:
    """The events of patching ``new`` (a merge patch) over ``old`` (None: no status yet)."""
    before = dict(old or {})
    after = {**before, **new}  # what the object holds once the merge patch landed
    generation, revision = after.get("observedGeneration"), after.get("revision")
    was, now = _ready(before), _ready(after)
    events = []
    accepted = _condition(after, "Accepted")
    if accepted.get("status") == "True" and generation != before.get("observedGeneration"):
        events.append(BotEvent("Normal", "Accepted", f"generation {generation}: the spec is valid"))
    synced: Mapping[str, Any] = next(
        (c for c in after.get("conditions") or [] if c.get("type") == "Synced"), {}
    )
    moved = _rollout_moved(before.get("rollout"), after.get("rollout"))
    if synced.get("status") == "True" and revision != before.get("revision") and not moved:
        message = f"generation {generation} accepted: in the config store at revision {revision}"
        events.append(BotEvent("Normal", "Synced", message))
    if now.get("status") == "True" and (
        was.get("status") != "True" or revision != before.get("revision")
    ):
        served = after.get("served", "?")
        message = f"served by {served} replicas at revision {revision}"
        events.append(BotEvent("Normal", "Ready", message))
    reason = now.get("reason")
    started = (reason, generation, revision) != (
        was.get("reason"),
        before.get("observedGeneration"),
        before.get("revision"),
    )
    if now.get("status") == "False" and reason in WARNINGS and started:
        events.append(BotEvent("Warning", str(reason), str(now.get("message") or reason)))
    return events + rollout_transitions(before.get("rollout"), after.get("rollout"))


def _rollout_moved(old: Any, new: Any) -> bool:
    """Whether a rollout of the same candidate moved (its own events say so: the store
    revision it took is no ``Synced`` of its own)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return False
    fields = ("phase", "step", "attempt")
    same = old.get("candidateGeneration") == new.get("candidateGeneration")
    return same and any(old.get(f) != new.get(f) for f in fields)


def rollout_transitions(old: Any, new: Any) -> list[BotEvent]:
    """The events of ``status.rollout`` going from ``old`` to ``new`` (either may be None)."""
    if not isinstance(new, Mapping):
        return []
    was: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
    phase, same = (
        new.get("phase"),
        (
            was.get("candidateGeneration"),
            was.get("attempt"),
        )
        == (new.get("candidateGeneration"), new.get("attempt")),
    )
    generation, stable = new.get("candidateGeneration"), new.get("stableGeneration")
    if phase == "Progressing" and not same:
        attempt = new.get("attempt")
        retry = f"retry (attempt {attempt}) of " if attempt != 1 else ""
        message = f"{retry}generation {generation} (stable {stable}): {new.get('message')}"
        return [BotEvent("Normal", "RolloutStarted", message)]
    if phase == "Progressing" and was.get("phase") == "Progressing":
        if (new.get("step") or 0) > (was.get("step") or 0):
            return [BotEvent("Normal", "StepAdvanced", str(new.get("message")))]
        return []
    if phase == was.get("phase") and same:
        return []
    if phase == "Promoted":
        return [BotEvent("Normal", "Promoted", str(new.get("message")))]
    if phase in ("RolledBack", "Aborted"):
        message = f"generation {generation}: {new.get('message')}; generation {stable} serves"
        return [BotEvent("Warning", str(phase), message)]
    return []


def rollout_skipped(why: str) -> BotEvent:
    return BotEvent("Normal", "RolloutSkipped", why)


def deleted() -> BotEvent:
    return BotEvent("Normal", "Deleted", "tombstoned in the config store: runtimes drop the Bot")


def involved(ref: BotRef) -> dict[str, Any]:
    """The body kopf builds an event's ``involvedObject`` from."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
    }


class KopfEvents:
    """Events posted by kopf's poster (it retries, and posts one object's events in order)."""

    def __init__(self) -> None:
        self._context: contextvars.Context | None = None

    def bind(self) -> None:
        """Called in a Bot handler: keep a copy of its context (kopf's event queue in it)."""
        if self._context is None:
            self._context = contextvars.copy_context()

    def post(self, ref: BotRef, events: Sequence[BotEvent]) -> None:
        if not events:
            return
        if self._context is None:  # no Bot handler has run: no Bot to post about either
            log.debug(f"events of {ref.bot_id} not posted: no kopf context yet")
            return
        self._context.run(self._post, ref, events)

    @staticmethod
    def _post(ref: BotRef, events: Sequence[BotEvent]) -> None:
        body = kopf.Body(cast(kopf.RawBody, involved(ref)))
        for event in events:
            if event.type == "Warning":
                kopf.warn(body, reason=event.reason, message=event.message)
            else:
                kopf.info(body, reason=event.reason, message=event.message)
