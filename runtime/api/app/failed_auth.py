"""Failed authentications per source address: past a few a minute, that address is refused.

A wrong key costs a client nothing but a 401, so without a limit a script can try keys as fast
as the server answers. Each replica counts the failed attempts of an address over a sliding
minute (in memory: throttling is per replica, and a successful request counts nothing); once
``auth_failures_per_minute`` have failed, further requests from that address get 429 with
``Retry-After`` before their key is looked at, until the window frees up. The address is the
connection's peer (``X-Forwarded-For`` is not trusted: anyone can send it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...ratelimit import MemoryRateLimiter, RateLimiter
from ..http_errors import RateLimitError

SCOPE = "auth-failures"
WINDOW = 60.0  # seconds: the limiter's default window
PRUNE_AT = 4096  # addresses remembered before the ones outside the window are dropped


class FailedAuthentications:
    """Counts failed authentications by address and refuses an address over ``per_minute``."""

    def __init__(
        self,
        per_minute: int,
        limiter: RateLimiter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._limiter = limiter or MemoryRateLimiter()
        self._clock = clock
        # address -> when it last failed: an address that has not failed in the window (every
        # well-behaved client) is let through without a limiter call
        self._failed_at: dict[str, float] = {}

    async def check(self, address: str) -> None:
        """Raise a 429 :class:`RateLimitError` if ``address`` used up its failures."""
        failed_at = self._failed_at.get(address)
        if failed_at is None:
            return
        if self._clock() - failed_at > WINDOW:
            del self._failed_at[address]
            return
        decision = await self._limiter.acquire(address, limit=self.per_minute, cost=0, scope=SCOPE)
        if not decision.allowed:
            raise RateLimitError(
                "too many failed authentications from this address; try again later",
                retry_after=decision.retry_after,
            )

    async def failed(self, address: str) -> None:
        now = self._clock()
        if len(self._failed_at) >= PRUNE_AT:  # many addresses failed once: forget the old ones
            self._failed_at = {a: t for a, t in self._failed_at.items() if now - t <= WINDOW}
        self._failed_at[address] = now
        await self._limiter.record(address, cost=1, scope=SCOPE)

    async def close(self) -> None:
        await self._limiter.close()
