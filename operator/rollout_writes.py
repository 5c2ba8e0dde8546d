"""How a valid generation of a Bot reaches the config store when ``spec.rollout`` may apply.

Without a rollout the Bot's own entry (``NAMESPACE:NAME``) is written, as always. With
``spec.rollout`` set and a real change of a Bot already in the store, the new generation is
written as the *candidate* (``NAMESPACE:NAME@candidate``, :mod:`kubebots.runtime.configstore.
rollout`) with a fresh :class:`RolloutState` in its ``rollout`` annotation, and the Bot's own
entry keeps the *stable* generation; the rollout controller (:mod:`.rollouts`) then moves the
state on. The rules, decided by :func:`plan` (pure) and carried out by :func:`write`:

* a candidate entry already holding this uid and generation is kept as it is: its state is the
  rollout's progress (a repeated write, an adopt, a drift repair, a Secret rotation never reset
  it; a changed Secret stamp is re-put keeping the ``rollout`` annotation);
* a stable entry of the same uid and an older generation, a spec that differs in more than
  ``rollout``, and the same ``conversationStorage`` -> a new candidate (step 0, attempt 1),
  replacing an older candidate;
* anything else (a new Bot, the spec reverted to the stable one, ``rollout`` removed, a storage
  move: a canary cannot share conversations across two stores) writes the Bot's entry directly
  and deletes a leftover candidate entry: the rollout ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kubebots.runtime.configstore import ConfigStore, StoreEntry
from kubebots.runtime.configstore.rollout import (
    ROLLOUT_ANNOTATION,
    RolloutState,
    candidate_id,
    decode_state,
)
from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.schema import BotConfig, parse_bot_config

if TYPE_CHECKING:
    from .reconcile import BotRef

#: The spec's field a change of which alone never starts a rollout.
ROLLOUT_FIELD = "rollout"
STORAGE_FIELD = "conversationStorage"


@dataclass(frozen=True)
class Plan:
    """What to write for one generation."""

    kind: Literal["keep", "candidate", "direct"]
    state: RolloutState | None = None  # keep/candidate: the candidate's state
    skipped: str | None = None  # direct: why spec.rollout did not apply (said in an event)


@dataclass(frozen=True)
class Written:
    """What :func:`write` did."""

    revision: int  # the entry of this generation: the candidate's, or the Bot's own
    rollout: RolloutState | None = None  # the candidate's state (None: written directly)
    stable_revision: int | None = None  # the Bot's own entry, while a candidate exists
    skipped: str | None = None


def without_rollout(annotations: Mapping[str, str]) -> dict[str, str]:
    """An entry's annotations minus the rollout state (the Secret stamps)."""
    return {k: v for k, v in annotations.items() if k != ROLLOUT_ANNOTATION}


def _body(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != ROLLOUT_FIELD}


def _same_storage(
    new_spec: Mapping[str, Any], new: BotConfig, stable: StoreEntry, bot_id: str
) -> bool:
    """Whether the stable entry keeps its conversations where ``new`` does (an unparsable
    stable entry: not known to, so no canary)."""
    if new_spec.get(STORAGE_FIELD) == stable.config.get(STORAGE_FIELD):
        return True
    try:
        old = parse_bot_config(dict(stable.config), bot_id=bot_id)
    except ConfigurationError:
        return False
    return old.conversation_storage == new.conversation_storage


def plan(
    ref: BotRef,
    parsed: BotConfig,
    stable: StoreEntry | None,
    candidate: StoreEntry | None,
    *,
    now: float,
) -> Plan:
    """What to write for ``ref`` (valid, ``parsed``) given the Bot's two entries."""
    if parsed.rollout is None:
        return Plan("direct")
    if (
        candidate is not None
        and candidate.uid == ref.uid
        and candidate.generation >= ref.generation
    ):
        state = decode_state(candidate.annotations)
        if state is not None:
            return Plan("keep", state)
    if stable is None or stable.uid != ref.uid or stable.generation >= ref.generation:
        return Plan("direct")
    if _body(ref.spec) == _body(stable.config):
        return Plan("direct")  # reverted to the stable spec (or only `rollout` changed)
    if not _same_storage(ref.spec, parsed, stable, ref.bot_id):
        return Plan(
            "direct",
            skipped=f"generation {ref.generation} changes spec.conversationStorage: a storage "
            "move cannot be canaried, written for every conversation at once",
        )
    old = decode_state(candidate.annotations) if candidate is not None else None
    first = parsed.rollout.steps[0]
    state = RolloutState(
        phase="Progressing",
        stable_generation=stable.generation,
        step=0,
        weight=first.weight,
        shadow=parsed.rollout.shadow,
        attempt=1,
        step_started_at=now,
        # the action annotation as it stands predates this rollout: never acted on for it
        handled_action=ref.action or (old.handled_action if old else ""),
    )
    return Plan("candidate", state)


async def write(
    store: ConfigStore,
    ref: BotRef,
    parsed: BotConfig,
    annotations: Mapping[str, str],
    *,
    wall: Callable[[], float],
) -> Written:
    """Write ``ref`` (valid, with these Secret stamps) as :func:`plan` decides."""
    spec = dict(ref.spec)
    if parsed.rollout is None:
        # no rollout: only a leftover candidate entry (the rollout removed) is deleted
        revision = await store.put(
            ref.bot_id, spec, generation=ref.generation, uid=ref.uid, annotations=annotations
        )
        if await store.get(candidate_id(ref.bot_id)) is not None:
            await store.delete(candidate_id(ref.bot_id))
        return Written(revision)
    stable = await store.get(ref.bot_id)
    candidate = await store.get(candidate_id(ref.bot_id))
    decided = plan(ref, parsed, stable, candidate, now=wall())
    if decided.kind == "direct" or decided.state is None:
        revision = await store.put(
            ref.bot_id, spec, generation=ref.generation, uid=ref.uid, annotations=annotations
        )
        if candidate is not None:
            await store.delete(candidate_id(ref.bot_id))
        return Written(revision, skipped=decided.skipped)
    if decided.kind == "keep" and candidate is not None:
        if without_rollout(candidate.annotations) == dict(annotations):
            revision = candidate.revision
        else:  # a Secret rotated: the stamp changes, the progress stays
            revision = await put_candidate(store, ref, annotations, decided.state)
    else:
        revision = await put_candidate(store, ref, annotations, decided.state)
    return Written(
        revision, decided.state, stable_revision=stable.revision if stable is not None else None
    )


async def put_candidate(
    store: ConfigStore, ref: BotRef, annotations: Mapping[str, str], state: RolloutState
) -> int:
    """Put ``ref``'s spec as its candidate entry with ``state``; the entry's revision."""
    return await store.put(
        candidate_id(ref.bot_id),
        dict(ref.spec),
        generation=ref.generation,
        uid=ref.uid,
        annotations={**annotations, ROLLOUT_ANNOTATION: state.to_annotation()},
    )


def in_store(
    stored: Mapping[str, StoreEntry],
    ref: BotRef,
    annotations: Mapping[str, str],
    *,
    rolling_out: bool,
) -> bool:
    """Whether one store listing (by entry id) holds what the last write of ``ref`` left:
    its candidate entry while it rolls out, else its own entry and no candidate."""
    candidate = stored.get(candidate_id(ref.bot_id))
    if rolling_out:
        return (
            candidate is not None
            and candidate.uid == ref.uid
            and candidate.generation >= ref.generation
            and without_rollout(candidate.annotations) == dict(annotations)
        )
    own = stored.get(ref.bot_id)
    return (
        candidate is None
        and own is not None
        and own.uid == ref.uid
        and own.generation >= ref.generation
        and dict(own.annotations) == dict(annotations)
    )
