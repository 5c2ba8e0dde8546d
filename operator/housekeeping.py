"""The config store's housekeeping: one task keeps its history and replica reports bounded.

Every ``compact_interval`` seconds (jittered by +-20%, so operators sharing a database do not
act in step) the task forgets the store's history older than ``history_retention``
(``ConfigStore.compact``: events and tombstones; a runtime watching from before that gets
``ResyncRequired`` and lists again) and deletes the reports of replicas silent for longer than
``replica_expiry`` (``ReplicaReports.expire_replicas``). The operator is the store's one writer,
so it is the one owner of both; runtimes never compact. A store that refuses (down) is logged
once and tried again the next period: housekeeping never stops the operator.

Nothing here talks to Kubernetes or kopf: the store, the sleep and the random source are passed
in.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kubebots.runtime.configstore import ReportingConfigStore, StoreError

log = logging.getLogger("kubebots.operator.housekeeping")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class HousekeepingTiming:
    compact_interval: float = 600.0  # seconds between passes (jittered by +-20%)
    history_retention: float = 3600.0  # history younger than this is kept (seconds)
    replica_expiry: float = 3600.0  # replicas silent this long are forgotten (seconds)


class Housekeeping:
    def __init__(
        self,
        store: ReportingConfigStore,
        timing: HousekeepingTiming,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self._timing = timing
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._failing = False
        self.passes = 0  # passes run (failed or not), for the logs and tests
        self.failures = 0  # passes in which the store refused a call
        self.compacted_revision = 0  # as of the last successful compaction
        self.expired = 0  # replicas expired since the start

    def delay(self) -> float:
        """Seconds until the next pass: ``compact_interval`` jittered by +-20%."""
        return self._timing.compact_interval * self._rng.uniform(0.8, 1.2)

    async def run(self) -> None:
        """Forever (cancelled at cleanup); the first pass comes one period after the start."""
        while True:
            await self._sleep(self.delay())
            await self.step()

    async def step(self) -> bool:
        """One pass: compact, then expire replicas. False when the store refused a call (the
        other one is still tried)."""
        self.passes += 1
        failed: list[str] = []
        timing = self._timing
        try:
            self.compacted_revision = await self.store.compact(timing.history_retention)
        except StoreError as exc:
            failed.append(f"compaction ({exc.message})")
        try:
            expired = await self.store.expire_replicas(max_age_seconds=timing.replica_expiry)
        except StoreError as exc:
            failed.append(f"replica expiry ({exc.message})")
        else:
            self.expired += expired
            if expired:
                log.info(f"expired {expired} replica(s) silent for over {timing.replica_expiry:g}s")
        if failed:
            self.failures += 1
            if not self._failing:
                log.warning(
                    f"config store housekeeping failed: {'; '.join(failed)}; "
                    f"retrying every {timing.compact_interval:g}s (+-20%)"
                )
            self._failing = True
            return False
        if self._failing:
            log.info("config store housekeeping works again")
        self._failing = False
        log.debug(f"config store compacted up to revision {self.compacted_revision}")
        return True
