"""Failed authentications per source address: past a few a minute, that address is refused.

A wrong key costs a client nothing but a 401, so without a limit a script can try keys as fast
as the server answers. Each replica counts the failed attempts of an address over a sliding
minute (in memory: throttling is per replica, and a successful request counts nothing); once
``auth_failures_per_minute`` have failed, further requests from that address get 429 with
``Retry-After`` before their key is looked at, until the window frees up. The address is the
connection's peer (``X-Forwarded-For`` is not trusted: anyone can send it).
"""

from __future__ import annotations

from ...ratelimit import MemoryRateLimiter, RateLimiter
from ..http_errors import RateLimitError

SCOPE = "auth-failures"


class FailedAuthentications:
    """Counts failed authentications by address and refuses an address over ``per_minute``."""

    def __init__(self, per_minute: int, limiter: RateLimiter | None = None) -> None:
        self.per_minute = per_minute
        self._limiter = limiter or MemoryRateLimiter()

    async def check(self, address: str) -> None:
        """Raise a 429 :class:`RateLimitError` if ``address`` used up its failures."""
        decision = await self._limiter.acquire(address, limit=self.per_minute, cost=0, scope=SCOPE)
        if not decision.allowed:
            raise RateLimitError(
                "too many failed authentications from this address; try again later",
                retry_after=decision.retry_after,
            )

    async def failed(self, address: str) -> None:
        await self._limiter.record(address, cost=1, scope=SCOPE)

    async def close(self) -> None:
        await self._limiter.close()
