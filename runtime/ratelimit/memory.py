"""An in-process :class:`~kubebots.runtime.ratelimit.base.RateLimiter` (one replica only)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..errors import StorageError
from .base import Decision, check_args, decide

# (scope, client_id) -> (time, cost) entries, oldest first
_Logs = dict[tuple[str, str], deque[tuple[float, int]]]


class MemoryRateLimiter:
    """Sliding logs in deques, keyed by ``(scope, client_id)``.

    Limits hold within this process only: N replicas would admit N times the limit (use
    :class:`~kubebots.runtime.ratelimit.postgres.PostgresRateLimiter` there). Every method runs
    without awaiting, so each call is atomic on the event loop. ``clock`` returns seconds
    (monotonic by default; tests inject their own). After :meth:`close` calls raise
    :class:`StorageError`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: _Logs | None = {}

    @classmethod
    async def open(cls, *, clock: Callable[[], float] = time.monotonic) -> MemoryRateLimiter:
        """A new, empty limiter (async for symmetry with the PostgreSQL limiter)."""
        return cls(clock=clock)

    def _live(
        self, scope: str, client_id: str, window_seconds: float
    ) -> tuple[float, deque[tuple[float, int]]]:
        """The current time and the key's log with entries out of the window dropped."""
        if self._logs is None:
            raise StorageError("the rate limiter is closed")
        now = self._clock()
        log = self._logs.setdefault((scope, client_id), deque())
        while log and log[0][0] <= now - window_seconds:
            log.popleft()
        return now, log

    def _forget_if_empty(self, scope: str, client_id: str) -> None:
        if self._logs is not None and not self._logs.get((scope, client_id)):
            self._logs.pop((scope, client_id), None)

    async def acquire(
        self,
        client_id: str,
        *,
        limit: int,
        cost: int = 1,
        window_seconds: float = 60.0,
        scope: str = "requests",
    ) -> Decision:
        """Admit and record ``cost`` iff ``used + max(cost, 1) <= limit`` (see ``base``)."""
        check_args(client_id, scope, window_seconds, cost=cost, limit=limit)
        now, log = self._live(scope, client_id, window_seconds)
        decision = decide(
            ((now - at, c) for at, c in log),
            limit=limit,
            cost=cost,
            window_seconds=window_seconds,
        )
        if decision.allowed and cost > 0:
            log.append((now, cost))
        self._forget_if_empty(scope, client_id)
        return decision

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        """Record ``cost`` now without checking any limit."""
        check_args(client_id, scope, window_seconds, cost=cost)
        now, log = self._live(scope, client_id, window_seconds)
        if cost > 0:
            log.append((now, cost))
        self._forget_if_empty(scope, client_id)

    async def close(self) -> None:
        """Forget every log. Idempotent."""
        self._logs = None
