"""What the operator does for one Bot, as plain async functions (the kopf handlers call these).

Nothing here talks to Kubernetes: the handlers pass in what they read (spec, metadata, the
Secret's resourceVersion) and patch what these functions return.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeGuard

from pydantic import ValidationError

from kubebots.runtime.configstore import ConfigStore, StoreEntry
from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.schema import (
    BotConfig,
    LLMConfig,
    SecretKeyRef,
    bot_id_for,
    parse_bot_config,
)

SECRET_VERSION = "secretVersion"


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

    @property
    def bot_id(self) -> str:
        return bot_id_for(self.namespace, self.name)

    @cached_property
    def secret(self) -> SecretKeyRef | None:
        """The Secret key the spec names for its API key (read once: every Secret event of the
        cluster asks each tracked Bot)."""
        return secret_of(self.spec)


@dataclass(frozen=True)
class Applied:
    """The outcome of writing a Bot to the store."""

    revision: int | None = None  # the store revision of this generation, when written
    invalid: str | None = None  # why the spec was refused (field paths, never values)
    secret_missing: str | None = None
    unavailable: str | None = None  # why nothing could be written yet (retried)
    annotations: Mapping[str, str] = field(default_factory=dict)


def validate(ref: BotRef) -> BotConfig | str:
    """The parsed spec, or why it is invalid (what the CRD schema cannot express)."""
    try:
        return parse_bot_config(dict(ref.spec), bot_id=ref.bot_id)
    except ConfigurationError as exc:
        return "; ".join(f"spec.{f}: {r}" for f, r in exc.errors) or exc.message


async def annotations_for(
    config: BotConfig, ref: BotRef, secrets: SecretVersions
) -> dict[str, str]:
    secret = config.llm.api_key_secret_ref
    if secret is None:
        return {}
    version = await secrets.version(ref.namespace, secret.name, secret.key)
    return {SECRET_VERSION: version}


async def apply(store: ConfigStore, ref: BotRef, secrets: SecretVersions) -> Applied:
    """Validate ``ref`` and write it to the store (idempotent). An invalid spec or a missing
    Secret writes nothing: the store keeps the last good config."""
    parsed = validate(ref)
    if isinstance(parsed, str):
        return Applied(invalid=parsed)
    try:
        annotations = await annotations_for(parsed, ref, secrets)
    except SecretMissingError as exc:
        return Applied(secret_missing=str(exc))
    revision = await store.put(
        ref.bot_id, dict(ref.spec), generation=ref.generation, uid=ref.uid, annotations=annotations
    )
    return Applied(revision=revision, annotations=annotations)


def secret_of(spec: Mapping[str, Any]) -> SecretKeyRef | None:
    """The Secret key a Bot's spec names for its API key, read through the schema.

    A spec invalid elsewhere still names its Secret when its ``llm`` section is valid: the store
    may hold the Bot's last good config, which a rotation of that Secret must reach.
    """
    try:
        return parse_bot_config(dict(spec)).llm.api_key_secret_ref
    except ConfigurationError:
        llm = spec.get("llm")
    try:
        return LLMConfig.model_validate(llm if llm is not None else {}).api_key_secret_ref
    except ValidationError:
        return None


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
    """Re-write every Bot of ``namespace`` whose key is in ``secret`` (which now holds ``keys``)
    with the Secret's new ``version``, so runtimes reload and re-read the key. A Bot whose key
    the Secret lacks is not re-written (its replicas would fail to read it): as a write would
    (:func:`apply`), the store keeps its last good config."""
    entries, _ = await store.list()
    rewritten, lacking = [], []
    for entry in entries:
        if not entry.bot_id.startswith(f"{namespace}:"):
            continue
        named = secret_of(entry.config)
        if named is None or named.name != secret:
            continue
        if named.key not in keys:
            lacking.append(entry.bot_id)
            continue
        if entry.annotations.get(SECRET_VERSION) == version:
            continue
        annotations = {**entry.annotations, SECRET_VERSION: version}
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
    """Tombstone store entries whose Bot no longer exists (in the namespaces we watch)."""
    entries, _ = await store.list()
    gone = [
        e.bot_id
        for e in entries
        if e.bot_id not in live and (namespaces is None or e.bot_id.partition(":")[0] in namespaces)
    ]
    for bot_id in gone:
        await store.delete(bot_id)
    return gone
