"""The config store: where the operator writes Bot specs and every runtime replica reads them.

Modelled on etcd: every write (``put``, ``delete``) bumps one global, monotonically increasing
``revision``; revisions commit in order (writers are serialized on a counter), so a watcher that
resumes from revision ``r`` receives every later event exactly once, in order. Deletes keep a
tombstone; ``compact`` forgets history older than a retention window, and a watch resuming from
before the compacted revision raises :class:`ResyncRequired` instead of skipping events.

Replica reports (:class:`ReplicaReports`, kept in the same database) let the operator see which
runtime replica serves which generation of a bot.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    Any,
    ClassVar,
    Literal,
    NotRequired,
    Protocol,
    Required,
    TypedDict,
    Unpack,
    runtime_checkable,
)

from ..errors import StorageError
from .counters import GenerationCounters

EventType = Literal["PUT", "DELETE"]
#: A Bot spec as written: a JSON object (camelCase keys).
Spec = Mapping[str, Any]
#: A write's annotations (facts beside the spec that must also trigger a reload), or None.
Notes = Mapping[str, str] | None


class PutOptions(TypedDict):
    """The keywords of :meth:`ConfigStore.put` after the bot id and its config."""

    generation: Required[int]
    uid: Required[str]
    annotations: NotRequired[Notes]
    #: compare-and-swap: write only if the bot's live revision is still this (0: no live entry)
    if_revision: NotRequired[int | None]


class StoreError(StorageError):
    """The config store failed (connection, schema, constraint)."""

    component: ClassVar[str] = "the config store"


class WriteConflict(StoreError):
    """A ``put`` lost a race: the same generation of the Bot was stored with another spec."""


class ResyncRequired(StoreError):
    """A watch asked for history that was compacted: list again, then watch from that revision."""

    def __init__(self, from_revision: int, compacted_revision: int) -> None:
        super().__init__(
            f"revision {from_revision} is older than the compacted revision "
            f"{compacted_revision}: a full resync (list, then watch) is required",
            detail={"from_revision": from_revision, "compacted_revision": compacted_revision},
        )
        self.from_revision = from_revision
        self.compacted_revision = compacted_revision


@dataclass(frozen=True, slots=True)
class StoreEntry:
    """A live bot config. ``config`` is the spec as written (a JSON object, camelCase)."""

    bot_id: str
    config: Mapping[str, Any]
    generation: int  # the Bot's metadata.generation (or a counter for CLI writes)
    uid: str  # the Bot's metadata.uid (a new uid means the Bot was deleted and re-created)
    revision: int  # the store revision of the write that produced this entry
    updated_at: datetime
    #: Facts beside the spec that must also trigger a reload, e.g. the resourceVersion of the
    #: referenced Secret (``{"secretVersion": "1234"}``); never a secret value.
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One write, as a watcher sees it. ``entry`` is set for PUT, ``None`` for DELETE."""

    type: EventType
    bot_id: str
    revision: int
    entry: StoreEntry | None = None


@dataclass(frozen=True, slots=True)
class BotReport:
    """What one replica serves for one bot: the version it runs, the last error, if any, the
    fallback LLM endpoint answering for it, if one does, and the tools its MCP servers offer."""

    bot_id: str
    generation: int | None  # generation being served (None: none loaded successfully)
    revision: int | None  # store revision of that config
    error: str | None = None  # why the newest config is not served (no secrets in it)
    error_revision: int | None = None  # the store revision that failed
    #: the ``model@host`` label of the ``llm.fallbacks`` endpoint that answered the bot's last
    #: LLM call on this replica (None: the primary answered, or nothing was asked yet)
    served_by: str | None = None
    #: why ``error``, machine-readable (e.g. ``"ToolUnavailable"``; None: a plain error)
    reason: str | None = None
    #: ``(MCP server name, tools discovered there)`` of the bot this replica serves, sorted
    tools: tuple[tuple[str, int], ...] = ()
    #: per-generation turn counts of a bot under rollout (:mod:`.counters`), one per
    #: (generation, window, shadow); empty for a bot not under rollout
    rollout: tuple[GenerationCounters, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """A replica's heartbeat: the store revision it has fully applied, and per-bot reports.

    Bots a replica has not loaded (lazy) are served from the store on first use, so a replica
    whose ``synced_revision`` is at least an entry's revision serves that entry's generation
    unless a :class:`BotReport` for the bot says otherwise.
    """

    replica_id: str
    synced_revision: int
    heartbeat_at: datetime
    bots: tuple[BotReport, ...] = ()


@runtime_checkable
class ConfigStore(Protocol):
    """Bot configs: what the operator writes and runtime replicas read. Errors are
    :class:`StoreError`."""

    async def put(self, bot_id: str, config: Spec, **how: Unpack[PutOptions]) -> int:
        """Write ``config`` (``generation``, ``uid``, ``annotations``); return the revision.

        Idempotent: when the live entry has the same ``uid`` and either a newer ``generation``
        (a stale write) or the same generation, config and annotations (a repeat), nothing is
        written and the live entry's revision is returned. With ``if_revision`` the write is a
        compare-and-swap: if the bot's live revision is no longer that (0: no live entry),
        nothing is written and :class:`WriteConflict` says what to do (a CLI that read, then
        wrote, raced another writer).
        """
        ...

    async def delete(self, bot_id: str) -> int:
        """Tombstone the bot; return the tombstone's revision (the current one if absent)."""
        ...

    async def delete_many(self, bot_ids: Sequence[str]) -> int:
        """Tombstone every live one of ``bot_ids`` in one transaction (one commit: a namespace
        of 1,000 Bots is one write, not 1,000); return the revision after it."""
        ...

    async def get(self, bot_id: str) -> StoreEntry | None: ...

    async def list(self) -> tuple[builtins.list[StoreEntry], int]:
        """Every live entry (sorted by bot id) and the revision the listing reflects."""
        ...

    def watch(self, from_revision: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``from_revision``, in order, forever (until cancelled).

        Raises :class:`ResyncRequired` when ``from_revision`` is older than the compacted
        revision. Backends reconnect and catch up by revision on their own.
        """
        ...

    async def current_revision(self) -> int: ...

    async def compact(self, retention_seconds: float) -> int:
        """Forget history (events, tombstones) older than the window; return the compacted
        revision (watches from before it raise :class:`ResyncRequired`)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ReplicaReports(Protocol):
    """Replica heartbeats: runtime replicas report, the operator reads. Errors are
    :class:`StoreError`."""

    async def report(self, report: ReplicaReport) -> None:
        """Record a replica's heartbeat, replacing its previous bot reports."""
        ...

    async def replica_reports(self, *, max_age_seconds: float) -> list[ReplicaReport]:
        """Reports of replicas whose heartbeat is younger than ``max_age_seconds``."""
        ...

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        """Delete replicas (and their reports) with an older heartbeat; return how many."""
        ...


@runtime_checkable
class ReportingConfigStore(ConfigStore, ReplicaReports, Protocol):
    """Both sides in one database: what every backend is and :func:`open_config_store` returns.

    A caller that needs one side only (the CLI, the operator's writers: configs; the operator's
    status: reports) is typed with that side.
    """


__all__ = [
    "BotReport",
    "ConfigStore",
    "EventType",
    "Notes",
    "ReplicaReport",
    "ReplicaReports",
    "ReportingConfigStore",
    "ResyncRequired",
    "Spec",
    "StoreEntry",
    "StoreError",
    "WatchEvent",
]
