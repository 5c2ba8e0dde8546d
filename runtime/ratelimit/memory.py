"""An in-process :class:`~kubebots.runtime.ratelimit.base.RateLimiter` (one replica only)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RateLimitStorageError
from .base import Charge, Decision, Limit, RateLimiter, verdict


@dataclass(slots=True)
class _Log:
    """One key's live entries ``(time, cost)``, oldest first, and the sum of their costs."""

    entries: deque[tuple[float, int]] = field(default_factory=deque)
    used: int = 0


# (scope, client_id) -> its log
_Logs = dict[tuple[str, str], _Log]


class MemoryRateLimiter(RateLimiter):
    """Sliding logs in deques with a running sum, keyed by ``(scope, client_id)``.

    A call costs O(1) plus the entries it expires (each is subtracted from the sum once, when it
    leaves the window); only a denial walks the oldest entries, for ``retry_after``.

    Limits hold within this process only: N replicas would admit N times the limit (use the
    PostgreSQL or Redis limiter there). A call never awaits anything that suspends, so each is
    atomic on the event loop. ``clock`` returns seconds (monotonic by default; tests inject
    their own). After :meth:`close` calls raise :class:`RateLimitStorageError`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: _Logs | None = {}

    @classmethod
    async def open(cls, *, clock: Callable[[], float] = time.monotonic) -> MemoryRateLimiter:
        """A new, empty limiter (async for symmetry with the shared limiters)."""
        return cls(clock=clock)

    def _open_logs(self) -> _Logs:
        if self._logs is None:
            raise RateLimitStorageError("the rate limiter is closed")
        return self._logs

    def _live(self, scope: str, client_id: str, window_seconds: float, now: float) -> _Log | None:
        """The key's log without its entries out of the window (an emptied log is forgotten)."""
        logs = self._open_logs()
        log = logs.get((scope, client_id))
        if log is None:
            return None
        entries, cutoff = log.entries, now - window_seconds
        while entries and entries[0][0] <= cutoff:
            log.used -= entries.popleft()[1]
        if not entries:
            del logs[(scope, client_id)]
            return None
        return log

    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        now = self._clock()
        decision: Decision | None = None
        for limit in limits:
            log = self._live(limit.scope, client_id, limit.window_seconds, now)
            if log is None:
                decision = verdict(0, (), limit)
            else:
                oldest = ((now - at, cost) for at, cost in log.entries)
                decision = verdict(log.used, oldest, limit)
            if not decision.allowed:
                return decision
        for limit in limits:
            if limit.cost > 0:
                self._add(limit.scope, client_id, now, limit.cost)
        assert decision is not None  # at least one limit (checked by the base)
        return decision

    async def _record_many(self, charges: tuple[Charge, ...]) -> None:
        now = self._clock()
        for charge in charges:
            self._live(charge.scope, charge.client_id, charge.window_seconds, now)
        for charge in charges:
            self._add(charge.scope, charge.client_id, now, charge.cost)

    def _add(self, scope: str, client_id: str, now: float, cost: int) -> None:
        log = self._open_logs().setdefault((scope, client_id), _Log())
        log.entries.append((now, cost))
        log.used += cost

    async def close(self) -> None:
        """Forget every log. Idempotent."""
        self._logs = None
