"""``StoreSync``: keeps a replica's BotManager in step with the config store.

On start it lists the store, reconciles the loaded bots (reload changed, remove vanished) and
records the revision; then it watches from there. A PUT for a loaded bot reloads it, a DELETE
removes it; bots not loaded stay lazy (unless ``preload``), except a bot declaring MCP servers:
it is built when its config arrives, so a server that cannot be listed is reported at once (the
build is retried every ``tool_retry_interval`` seconds until it can be). The entry a listing or
the watch delivered is validated once here and handed to the manager as it is: a change costs no
second read of the store and no second parse. After a lost connection or a
"resync required" it lists and reconciles again, so no delete is ever missed. A config that
fails to validate or build never replaces a good bot: the old one keeps serving and the error
goes into the replica's report. So does the ``llm.fallbacks`` endpoint answering for a loaded bot
whose primary endpoint failed, and the tools each loaded bot's MCP servers offer (read at each
report: a change shows by the next heartbeat).

Candidate entries (a Bot under rollout, :mod:`..configstore.rollout`) are entries like the others
(validated, handed to the manager under their own id) that also feed the routing table
(:class:`.rollouts.RolloutSync`); a candidate that takes no traffic (rolled back, aborted) is not
kept loaded. The turn counters routing records go out with the replica report, batched: new
counts at most every ``counters_interval`` seconds, never a report per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from .._supervise import outliving_defects
from ..configstore.base import (
    ReplicaReport,
    ReportingConfigStore,
    ResyncRequired,
    StoreEntry,
    StoreError,
    WatchEvent,
)
from ..configstore.rollout import is_candidate
from ..errors import KubebotsError
from ..manager import BotManager, VersionedConfig
from ..routing import RolloutCounters, RolloutTable
from ..schema import BotConfig, parse_bot_config
from .lastgood import LastGoodConfigs
from .loader import version_of
from .rollouts import RolloutSync
from .status import ServingStatus

log = logging.getLogger("kubebots.runtime.sync")
#: a resync validates this many store entries between yields to the event loop
YIELD_EVERY = 200


@dataclass(frozen=True)
class SyncSettings:
    replica_id: str
    preload: bool = False
    heartbeat_interval: float = 5.0  # seconds between replica reports when nothing changes
    min_report_interval: float = 0.05  # reports after changes are at least this far apart
    max_backoff: float = 5.0  # seconds between attempts while the store is unreachable
    #: seconds between builds of a bot whose MCP server could not be listed (ToolUnavailable)
    tool_retry_interval: float = 15.0
    #: seconds between reports sent because rollout turn counts moved (config changes still
    #: go out after ``min_report_interval``; nothing new: the heartbeat)
    counters_interval: float = 1.0


class StoreSync:
    """Runs the list-then-watch loop and the replica report loop for one BotManager."""

    def __init__(
        self,
        store: ReportingConfigStore,
        manager: BotManager,
        settings: SyncSettings,
        last_good: LastGoodConfigs | None = None,
        *,
        rollouts: RolloutTable | None = None,
        counters: RolloutCounters | None = None,
    ) -> None:
        """``last_good``: recorded here, read by the loader while the store is unreachable.
        ``rollouts``: written here from the candidate entries, read by routing; ``counters``:
        recorded by routing, sent here with the replica reports (new ones when None)."""
        self._store = store
        self._last_good = last_good if last_good is not None else LastGoodConfigs()
        self._manager = manager
        self._settings = settings
        self._status = ServingStatus()
        self._rollouts = RolloutSync(
            rollouts if rollouts is not None else RolloutTable(),
            counters if counters is not None else RolloutCounters(),
        )
        #: the configs whose build failed with ToolUnavailable, built again by the retry loop
        self._retry: dict[str, VersionedConfig] = {}
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.synced_revision = 0
        self.resyncs = 0
        self.last_lag_seconds = 0.0
        #: why the last call to the store failed (None since the last one that succeeded)
        self.store_problem: str | None = None

    @property
    def status(self) -> ServingStatus:
        return self._status

    @property
    def rollouts(self) -> RolloutTable:
        """The Bots under rollout, as the store's candidate entries say."""
        return self._rollouts.table

    @property
    def counters(self) -> RolloutCounters:
        """The turn counts of the Bots under rollout, sent with the replica reports."""
        return self._rollouts.counters

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._run()),
                asyncio.ensure_future(self._report_loop()),
                asyncio.ensure_future(self._retry_loop()),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def __aenter__(self) -> StoreSync:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- the watch loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                revision = await self._resync()
                self.store_problem = None
                self.ready.set()
                backoff = 0.05
                async for event in self._store.watch(revision):
                    await self._apply(event)
            except ResyncRequired as exc:
                log.warning("config store history was compacted: resyncing (%s)", exc.message)
            except StoreError as exc:
                self.store_problem = exc.message
                log.warning("config store unavailable, retrying in %.2fs: %s", backoff, exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.max_backoff)
            except Exception as exc:
                # A bug must not silently stop this replica from following the store: log it,
                # back off, then list and reconcile again (unless we are being stopped).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.exception(
                    "config sync failed (%s); resyncing in %.2fs", type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.max_backoff)

    async def _resync(self) -> int:
        entries, revision = await self._store.list()
        self.resyncs += 1
        live = {entry.bot_id: entry for entry in entries}
        self._status.keep_only(set(live))
        for bot_id in [b for b in self._retry if b not in live]:
            del self._retry[bot_id]
        self._last_good.keep_only(live)
        self._rollouts.keep_only(live)
        loaded = self._manager.loaded_versions()
        updates: list[tuple[str, VersionedConfig]] = []
        idle: list[str] = []  # candidates taking no traffic: not kept loaded
        for i, entry in enumerate(entries, 1):
            config = self._validate(entry)
            if not self._follow_rollout(entry, config):
                idle.append(entry.bot_id)
                continue
            version = loaded.get(entry.bot_id)
            stale = version is not None and version.revision != entry.revision
            if config is not None and (stale or self._settings.preload or config.tools.mcp):
                updates.append((entry.bot_id, VersionedConfig(config, version_of(entry))))
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # validating 10k entries takes a while: keep serving
        for bot_id, version in loaded.items():
            if version is not None and bot_id not in live:
                await self._manager.remove(bot_id)  # (bots given an explicit config stay)
        for bot_id in idle:
            await self._unload(bot_id)
        for bot_id, update in updates:
            await self._refresh(bot_id, update)
        self._advance(revision)
        return revision

    async def _apply(self, event: WatchEvent) -> None:
        if event.type == "DELETE":
            await self._manager.remove(event.bot_id)
            self._status.ok(event.bot_id)
            self._retry.pop(event.bot_id, None)
            self._last_good.discard(event.bot_id)
            self._rollouts.delete(event.bot_id)
        elif event.entry is not None:
            config = self._validate(event.entry)
            if not self._follow_rollout(event.entry, config):
                await self._unload(event.bot_id)
            elif config is not None:
                await self._refresh(event.bot_id, VersionedConfig(config, version_of(event.entry)))
        if event.entry is not None:
            lag = datetime.now(UTC) - event.entry.updated_at
            self.last_lag_seconds = max(0.0, lag.total_seconds())
        self._advance(event.revision)

    def _validate(self, entry: StoreEntry) -> BotConfig | None:
        """The entry's config, parsed once; ``None`` (and the error reported) if invalid."""
        try:
            config = parse_bot_config(entry.config, bot_id=entry.bot_id)
        except KubebotsError as exc:
            self._status.failed(entry.bot_id, exc.message, entry.revision)
            log.warning("bot %s revision %d is invalid: %s", entry.bot_id, entry.revision, exc)
            return None
        self._status.ok(entry.bot_id)
        self._last_good.put(entry)
        return config

    def _follow_rollout(self, entry: StoreEntry, config: BotConfig | None) -> bool:
        """Put a candidate entry's rollout into the table; False when the candidate takes no
        traffic (rolled back, aborted, weight 0, or a state this version cannot read), so it
        need not be loaded. Any other entry: True (nothing to do here)."""
        if not is_candidate(entry.bot_id):
            return True
        rollout = self._rollouts.put(entry, config)
        if rollout is None:
            # no readable state: the Bot is not under rollout as far as this replica knows
            log.warning(
                "candidate entry %s revision %d holds no rollout state this version reads:"
                " its Bot is answered by the stable generation",
                entry.bot_id,
                entry.revision,
            )
            return False
        return rollout.state.active

    async def _unload(self, entry_id: str) -> None:
        """Drop a candidate that takes no traffic (it stays known to the table, so routing
        answers with the stable generation); a build retry pending for it is dropped too."""
        self._retry.pop(entry_id, None)
        await self._manager.remove(entry_id)

    async def _refresh(self, bot_id: str, update: VersionedConfig) -> None:
        """Hand the manager the config already validated here (built at once if preloading or
        if it declares MCP servers). A build that failed because a tool source could not be
        listed is retried by :meth:`_retry_loop`; one that succeeds clears its problem."""
        revision = update.version.revision
        config = update.config
        load = self._settings.preload or (isinstance(config, BotConfig) and bool(config.tools.mcp))
        try:
            await self._manager.refresh(bot_id, update, load=load)
        except KubebotsError as exc:
            reason = getattr(exc, "reason_code", None)
            self._status.failed(bot_id, exc.message, revision, reason=reason)
            if reason == "ToolUnavailable":
                self._retry[bot_id] = update
            log.warning("bot %s: keeping the last good version: %s", bot_id, exc.message)
            return
        pending = self._retry.get(bot_id)
        if pending is not None and pending.version.revision <= revision:
            del self._retry[bot_id]
        problem = self._status.problem(bot_id)
        if problem is not None and problem.revision <= revision:
            self._status.ok(bot_id)  # a retried build (a newer config's problem stays)

    async def _retry_loop(self) -> None:
        """Build again, every ``tool_retry_interval`` seconds, the configs whose MCP servers
        could not be listed: a server that came up clears the bot's problem."""
        await self.ready.wait()
        while True:
            await asyncio.sleep(self._settings.tool_retry_interval)
            for bot_id, update in list(self._retry.items()):
                if self._retry.get(bot_id) is not update:
                    continue  # a newer config arrived (or the bot went) meanwhile
                with outliving_defects(log, "retrying the build of bot %s failed", bot_id):
                    await self._refresh(bot_id, update)  # a bug: the other bots still retry
                self._dirty.set()

    def _advance(self, revision: int) -> None:
        self.synced_revision = revision
        self._dirty.set()

    # -- replica reports --------------------------------------------------------------------
    def report(self) -> ReplicaReport:
        """This replica's report now: its problems, fallbacks, tools and rollout counts."""
        versions = self._manager.loaded_versions()
        served = {b: (v.generation, v.revision) for b, v in versions.items() if v is not None}
        bots = self._status.reports(
            served, self._manager.serving_fallbacks(), self._manager.tool_counts()
        )
        return ReplicaReport(
            replica_id=self._settings.replica_id,
            synced_revision=self.synced_revision,
            heartbeat_at=datetime.now(UTC),
            bots=self._rollouts.reports(bots, served),
        )

    async def _report_loop(self) -> None:
        await self.ready.wait()
        while True:
            sent = self.counters.version  # read first: a turn counted meanwhile goes next time
            try:
                await self._store.report(self.report())
                self.store_problem = None
            except StoreError as exc:
                self.store_problem = exc.message
                log.warning("could not record the replica report: %s", exc.message)
            await asyncio.sleep(self._settings.min_report_interval)
            await self._news(sent)
            self._dirty.clear()

    async def _news(self, sent: int) -> None:
        """Wait until the next report is due: a config change (at once), turn counts that
        moved since version ``sent`` (looked at every ``counters_interval``), or the
        heartbeat."""
        loop = asyncio.get_running_loop()
        heartbeat = loop.time() + self._settings.heartbeat_interval
        while (left := heartbeat - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, self._settings.counters_interval)):
                    await self._dirty.wait()
                    return
            if self.counters.version != sent:
                return
