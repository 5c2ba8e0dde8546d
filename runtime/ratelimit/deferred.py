"""A rate limiter that connects on first use, so a replica may start before its database.

Until the real limiter opens, calls raise its :class:`StorageError` (503 for the request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..storage._deferred import Deferred
from .base import Decision, RateLimiter


async def _close(limiter: RateLimiter) -> None:
    await limiter.close()


class DeferredRateLimiter:
    """A :class:`RateLimiter` around ``open()``, which is awaited on the first call."""

    def __init__(
        self, open: Callable[[], Awaitable[RateLimiter]], *, retry_interval: float = 1.0
    ) -> None:
        self._limiter = Deferred(open, _close, what="rate limiter", retry_interval=retry_interval)

    async def acquire(
        self,
        client_id: str,
        *,
        limit: int,
        cost: int = 1,
        window_seconds: float = 60.0,
        scope: str = "requests",
    ) -> Decision:
        limiter = await self._limiter.get()
        return await limiter.acquire(
            client_id, limit=limit, cost=cost, window_seconds=window_seconds, scope=scope
        )

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        limiter = await self._limiter.get()
        await limiter.record(client_id, cost=cost, window_seconds=window_seconds, scope=scope)

    async def close(self) -> None:
        await self._limiter.close()
