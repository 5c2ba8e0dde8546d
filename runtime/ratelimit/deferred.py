"""A rate limiter that connects on first use, so a replica may start before its database.

Until the real limiter opens, calls raise its :class:`StorageError` (503 for the request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..persistence.deferred import Deferred
from .base import RateLimiter, Window


class DeferredRateLimiter(Deferred[RateLimiter], RateLimiter):
    """A :class:`RateLimiter` around ``open()``, which is awaited on the first call."""

    what = "rate limiter"

    @asynccontextmanager
    async def _window(
        self, scope: str, client_id: str, window_seconds: float
    ) -> AsyncIterator[Window]:
        limiter = await self.opened()
        async with limiter._window(scope, client_id, window_seconds) as log:
            yield log
