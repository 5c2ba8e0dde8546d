"""What the operator does for one Bot, as plain async functions (the kopf handlers call these).

Nothing here talks to Kubernetes: the handlers pass in what they read (spec, metadata, the
Secrets' resourceVersions) and patch what these functions return. Every Secret key a Bot names
(its LLM key, each fallback's, its tools' header ``secretRef``s) is tracked alike: the versions
are recorded as described in :mod:`.secret_stamp`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeGuard

from kubebots.runtime.configstore import ConfigStore, StoreEntry
from kubebots.runtime.configstore.rollout import RolloutState, stable_id
from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.schema import BotConfig, bot_id_for, parse_bot_config
from kubebots.runtime.schema.rollout import RolloutConfig
from kubebots.runtime.schema.secret_refs import SecretRefAt, secret_refs, spec_secret_refs

from .rollout_writes import write
from .secret_stamp import recorded, stamp


class SecretMissingError(Exception):
    """The Secret (or its key) a Bot references does not exist."""


class SecretVersions(Protocol):
    """The resourceVersion of a Secret holding ``key`` (raises :class:`SecretMissingError`)."""

    async def version(self, namespace: str, name: str, key: str) -> str: ...


@dataclass(frozen=True)
class BotRef:
    """The parts of a ``Bot`` object the operator acts on."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    #: the Bot's ``kubebots.io/rollout-action`` annotation ("" without one)
    action: str = field(default="", compare=False)

    @property
    def bot_id(self) -> str:
        return bot_id_for(self.namespace, self.name)

    @cached_property
    def secret_refs(self) -> tuple[SecretRefAt, ...]:
        """The Secret keys the spec names, with their field paths (read once through the
        schema, even from a spec invalid elsewhere: see ``spec_secret_refs``)."""
        return tuple(spec_secret_refs(self.spec))

    @cached_property
    def secret_names(self) -> frozenset[str]:
        """The Secrets the spec names (every Secret event of the cluster asks each tracked Bot:
        a set lookup, no parse)."""
        return frozenset(ref.name for _, ref in self.secret_refs)


@dataclass(frozen=True)
class Applied:
    """The outcome of writing a Bot to the store."""

    revision: int | None = None  # the store revision of this generation, when written
    invalid: str | None = None  # why the spec was refused (field paths, never values)
    secret_missing: str | None = None
    unavailable: str | None = None  # why nothing could be written yet (retried)
    annotations: Mapping[str, str] = field(default_factory=dict)  # the Secret stamps
    #: the candidate's state while this generation rolls out (``revision`` is the candidate
    #: entry's); after a promotion, the state it was promoted from
    rollout: RolloutState | None = None
    plan: RolloutConfig | None = None  # this generation's spec.rollout
    stable_revision: int | None = None  # the Bot's own entry (the stable generation's)
    promoted: bool = False  # this generation's rollout ended in promotion
    skipped: str | None = None  # why spec.rollout did not apply (a storage move)

    @property
    def rolling_out(self) -> bool:
        """Whether a candidate entry holds this generation (any phase)."""
        return self.rollout is not None and not self.promoted

    @property
    def progressing(self) -> bool:
        """Whether the rollout controller moves this generation on."""
        return self.rolling_out and self.rollout is not None and self.rollout.phase == "Progressing"


def validate(ref: BotRef) -> BotConfig | str:
    """The parsed spec, or why it is invalid (what the CRD schema cannot express)."""
    try:
        return parse_bot_config(dict(ref.spec), bot_id=ref.bot_id)
    except ConfigurationError as exc:
        return "; ".join(f"spec.{f}: {r}" for f, r in exc.errors) or exc.message


async def annotations_for(
    config: BotConfig, ref: BotRef, secrets: SecretVersions
) -> dict[str, str]:
    """The versions of every Secret ``config`` names (one read per Secret key). Raises
    :class:`SecretMissingError` naming the field path of each key that cannot be had."""
    refs = secret_refs(config)
    versions: dict[str, str] = {}
    outcomes: dict[tuple[str, str], str | SecretMissingError] = {}  # per (name, key)
    missing = []
    for path, key_ref in refs:
        at = (key_ref.name, key_ref.key)
        if at not in outcomes:
            try:
                outcomes[at] = await secrets.version(ref.namespace, key_ref.name, key_ref.key)
            except SecretMissingError as exc:
                outcomes[at] = exc
        outcome = outcomes[at]
        if isinstance(outcome, SecretMissingError):
            missing.append(f"spec.{path}: {outcome}")
        else:
            versions[key_ref.name] = outcome
    if missing:
        raise SecretMissingError("; ".join(missing))
    return stamp(refs, versions)


async def apply(
    store: ConfigStore,
    ref: BotRef,
    secrets: SecretVersions,
    *,
    wall: Callable[[], float] = time.time,
) -> Applied:
    """Validate ``ref`` and write it to the store (idempotent). An invalid spec or a missing
    Secret writes nothing: the store keeps the last good config. With ``spec.rollout`` a
    changed spec becomes a candidate (:mod:`.rollout_writes`; ``wall``: when its first step
    begins)."""
    parsed = validate(ref)
    if isinstance(parsed, str):
        return Applied(invalid=parsed)
    try:
        annotations = await annotations_for(parsed, ref, secrets)
    except SecretMissingError as exc:
        return Applied(secret_missing=str(exc))
    written = await write(store, ref, parsed, annotations, wall=wall)
    return Applied(
        revision=written.revision,
        annotations=annotations,
        rollout=written.rollout,
        plan=parsed.rollout,
        stable_revision=written.stable_revision,
        skipped=written.skipped,
    )


def holds(entry: StoreEntry | None, ref: BotRef) -> TypeGuard[StoreEntry]:
    """Whether ``entry`` was written for this object (its uid) at this generation or a newer one."""
    return entry is not None and entry.uid == ref.uid and entry.generation >= ref.generation


def is_current(entry: StoreEntry | None, ref: BotRef, annotations: Mapping[str, str]) -> bool:
    """Whether the store already holds this generation (with these annotations)."""
    return holds(entry, ref) and dict(entry.annotations) == dict(annotations)


@dataclass(frozen=True)
class Rotation:
    """What a Secret's change did to the store entries of its namespace."""

    rewritten: list[str]  # bot ids re-written with the Secret's new version
    lacking: list[str]  # bot ids naming a key the Secret no longer holds: left as they are


async def rotate_secret(
    store: ConfigStore, namespace: str, secret: str, version: str, keys: Collection[str]
) -> Rotation:
    """Re-write every Bot of ``namespace`` that names ``secret`` (which now holds ``keys``) in
    any of its Secret references with the Secret's new ``version``, so runtimes reload and
    re-read the values. A Bot naming a key the Secret lacks is not re-written (its replicas
    would fail to read it): as a write would (:func:`apply`), the store keeps its last good
    config. An entry that records this version already is left as it is. A candidate entry
    (a rollout) is re-written alike, keeping its ``rollout`` annotation (its progress);
    ``lacking`` names the Bot's own id for it."""
    entries, _ = await store.list()
    rewritten, lacking = [], []
    for entry in entries:
        if not entry.bot_id.startswith(f"{namespace}:"):
            continue
        refs = spec_secret_refs(entry.config)
        named = [key_ref.key for _, key_ref in refs if key_ref.name == secret]
        if not named:
            continue
        if any(key not in keys for key in named):
            if stable_id(entry.bot_id) not in lacking:
                lacking.append(stable_id(entry.bot_id))
            continue
        versions = {**recorded(entry.annotations, refs), secret: version}
        annotations = {**entry.annotations, **stamp(refs, versions)}
        if annotations == dict(entry.annotations):
            continue
        await store.put(
            entry.bot_id,
            entry.config,
            generation=entry.generation,
            uid=entry.uid,
            annotations=annotations,
        )
        rewritten.append(entry.bot_id)
    return Rotation(rewritten, lacking)


async def forget_orphans(
    store: ConfigStore, live: set[str], namespaces: set[str] | None
) -> list[str]:
    """Tombstone store entries whose Bot no longer exists (in the namespaces we watch); a
    candidate entry goes with its Bot."""
    entries, _ = await store.list()
    gone = [
        e.bot_id
        for e in entries
        if stable_id(e.bot_id) not in live
        and (namespaces is None or e.bot_id.partition(":")[0] in namespaces)
    ]
    for bot_id in gone:
        await store.delete(bot_id)
    return gone
