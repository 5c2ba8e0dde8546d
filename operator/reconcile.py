"""What the operator does for one Bot, as plain async functions (the kopf handlers call these).

Nothing here talks to Kubernetes: the handlers pass in what they read (spec, metadata, the
Secret's resourceVersion) and patch what these functions return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.schema import BotConfig, bot_id_for, parse_bot_config
from kubebots.runtime.store import ConfigStore, StoreEntry

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


def secret_of(spec: Mapping[str, Any]) -> str | None:
    """The name of the Secret a Bot's spec references, if any (unvalidated: a plain read)."""
    llm = spec.get("llm")
    ref = llm.get("apiKeySecretRef") if isinstance(llm, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) else None


def is_current(entry: StoreEntry | None, ref: BotRef, annotations: Mapping[str, str]) -> bool:
    """Whether the store already holds this generation (with these annotations)."""
    return (
        entry is not None
        and entry.uid == ref.uid
        and entry.generation >= ref.generation
        and dict(entry.annotations) == dict(annotations)
    )


async def rotate_secret(store: ConfigStore, namespace: str, secret: str, version: str) -> list[str]:
    """Re-write every Bot of ``namespace`` that references ``secret`` with its new version, so
    runtimes reload and re-read the key. Returns the bot ids touched."""
    entries, _ = await store.list()
    touched = []
    for entry in entries:
        if not entry.bot_id.startswith(f"{namespace}:"):
            continue
        if secret_of(entry.config) != secret:
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
        touched.append(entry.bot_id)
    return touched


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
