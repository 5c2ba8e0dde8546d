"""A rate limiter that connects on first use, so a replica may start before its database.

Until the real limiter opens, calls raise its :class:`StorageError` (503 for the request).
"""

from __future__ import annotations

from ..persistence.deferred import Deferred
from .base import Charge, Decision, Limit, RateLimiter


class DeferredRateLimiter(Deferred[RateLimiter], RateLimiter):
    """A :class:`RateLimiter` around ``open()``, which is awaited on the first call."""

    what = "rate limiter"

    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        return await (await self.opened())._admit(client_id, limits)

    async def _record_many(self, charges: tuple[Charge, ...]) -> None:
        await (await self.opened())._record_many(charges)
