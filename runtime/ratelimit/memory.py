"""An in-process :class:`~kubebots.runtime.ratelimit.base.RateLimiter` (one replica only)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..errors import RateLimitStorageError
from .base import Charge, Decision, Limit, RateLimiter, decide

# (scope, client_id) -> (time, cost) entries, oldest first
_Logs = dict[tuple[str, str], deque[tuple[float, int]]]


class MemoryRateLimiter(RateLimiter):
    """Sliding logs in deques, keyed by ``(scope, client_id)``.

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

    def _live(self, scope: str, client_id: str, window_seconds: float, now: float) -> _Logs:
        """The logs, the key's entries out of the window dropped (an empty log forgotten)."""
        if self._logs is None:
            raise RateLimitStorageError("the rate limiter is closed")
        entries = self._logs.get((scope, client_id))
        if entries is not None:
            while entries and entries[0][0] <= now - window_seconds:
                entries.popleft()
            if not entries:
                del self._logs[(scope, client_id)]
        return self._logs

    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        now = self._clock()
        decision: Decision | None = None
        for limit in limits:
            logs = self._live(limit.scope, client_id, limit.window_seconds, now)
            entries = logs.get((limit.scope, client_id), ())
            decision = decide(((now - at, cost) for at, cost in entries), limit)
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
        if self._logs is None:
            raise RateLimitStorageError("the rate limiter is closed")
        self._logs.setdefault((scope, client_id), deque()).append((now, cost))

    async def close(self) -> None:
        """Forget every log. Idempotent."""
        self._logs = None
