"""A rate limiter that connects on first use (a replica may start before its database)."""

from __future__ import annotations

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.ratelimit import DeferredRateLimiter, MemoryRateLimiter, RateLimiter
from tests.persistence.opener import Opener


async def test_the_deferred_rate_limiter_opens_on_first_use() -> None:
    real = MemoryRateLimiter()
    opener = Opener[RateLimiter](real, failures=1)
    limiter = DeferredRateLimiter(opener, retry_interval=0)
    with pytest.raises(StorageError, match="refused"):
        await limiter.acquire("c", limit=1)
    assert (await limiter.acquire("c", limit=1)).allowed
    assert not (await limiter.acquire("c", limit=1)).allowed
    await limiter.record("c", cost=5)
    assert not (await real.acquire("c", limit=5, cost=0, scope="tokens")).allowed
    assert opener.attempts == 2
    await limiter.close()
    with pytest.raises(StorageError, match="the rate limiter is closed"):
        await limiter.acquire("c", limit=1)
    with pytest.raises(StorageError, match="the rate limiter is closed"):
        await real.acquire("c", limit=1)  # closing the deferred limiter closed the real one
