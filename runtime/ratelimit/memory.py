"""An in-process :class:`~kubebots.runtime.ratelimit.base.RateLimiter` (one replica only)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ..errors import StorageError
from .base import RateLimiter

# (scope, client_id) -> (time, cost) entries, oldest first
_Logs = dict[tuple[str, str], deque[tuple[float, int]]]


class _Log:
    """One key's entries at one instant (``now``)."""

    def __init__(self, entries: deque[tuple[float, int]], now: float) -> None:
        self.entries = entries
        self._now = now

    async def ages(self) -> list[tuple[float, int]]:
        return [(self._now - at, cost) for at, cost in self.entries]

    async def add(self, cost: int) -> None:
        self.entries.append((self._now, cost))


class MemoryRateLimiter(RateLimiter):
    """Sliding logs in deques, keyed by ``(scope, client_id)``.

    Limits hold within this process only: N replicas would admit N times the limit (use
    :class:`~kubebots.runtime.ratelimit.postgres.PostgresRateLimiter` there). A call never
    awaits anything that suspends, so each is atomic on the event loop. ``clock`` returns
    seconds (monotonic by default; tests inject their own). After :meth:`close` calls raise
    :class:`StorageError`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: _Logs | None = {}

    @classmethod
    async def open(cls, *, clock: Callable[[], float] = time.monotonic) -> MemoryRateLimiter:
        """A new, empty limiter (async for symmetry with the PostgreSQL limiter)."""
        return cls(clock=clock)

    @asynccontextmanager
    async def _window(
        self, scope: str, client_id: str, window_seconds: float
    ) -> AsyncIterator[_Log]:
        """The key's log with entries out of the window dropped; an empty one is forgotten."""
        if self._logs is None:
            raise StorageError("the rate limiter is closed")
        logs, now = self._logs, self._clock()
        entries = logs.setdefault((scope, client_id), deque())
        while entries and entries[0][0] <= now - window_seconds:
            entries.popleft()
        try:
            yield _Log(entries, now)
        finally:
            if not entries:
                logs.pop((scope, client_id), None)

    async def close(self) -> None:
        """Forget every log. Idempotent."""
        self._logs = None
