"""Token charges leave after the reply, each exactly once (``api/app/charges.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from kubebots.runtime.api.app.charges import Charges
from kubebots.runtime.api.app.metrics import Metrics
from kubebots.runtime.errors import RateLimitStorageError
from kubebots.runtime.ratelimit import Charge, Limit, MemoryRateLimiter

HUGE = 10**9


class CountingLimiter(MemoryRateLimiter):
    """A real in-memory limiter that remembers each record_many call, and fails on demand
    (after applying the batch when ``fail_after_apply``: the ambiguous failure)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[Charge]] = []
        self.fail = False
        self.fail_after_apply = False
        self.gate: asyncio.Event | None = None

    async def record_many(self, charges: Sequence[Charge]) -> None:
        self.calls.append(list(charges))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RateLimitStorageError("Redis rate limiter failed: connection refused")
        await super().record_many(charges)
        if self.fail_after_apply:
            raise RateLimitStorageError("Redis rate limiter failed: timeout")


async def spent(limiter: MemoryRateLimiter, client_id: str) -> int:
    decision = await limiter.admit(client_id, [Limit("tokens", HUGE, cost=0)])
    return HUGE - decision.remaining


async def test_charges_share_calls_under_load_and_each_lands_once() -> None:
    limiter, local = CountingLimiter(), MemoryRateLimiter()
    charges = Charges(limiter, Metrics(), fallback=local)
    limiter.gate = asyncio.Event()
    charges.add("a", "tokens", 5)  # the sender takes this one and waits at the gate
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    for cost in (1, 2, 3):
        charges.add("b", "tokens", cost)  # queued behind it: one call for the three
    limiter.gate.set()
    await charges.close()
    assert [[c.cost for c in call] for call in limiter.calls] == [[5], [1, 2, 3]]
    assert (await spent(limiter, "a"), await spent(limiter, "b")) == (5, 6)
    assert charges.pending == 0


async def test_a_failed_call_is_never_retried_and_is_kept_locally() -> None:
    limiter, local = CountingLimiter(), MemoryRateLimiter()
    metrics = Metrics()
    charges = Charges(limiter, metrics, fallback=local)
    limiter.fail_after_apply = True  # applied, yet reported as failed: a retry would double it
    charges.add("a", "tokens", 7)
    await charges.close()
    assert len(limiter.calls) == 1
    assert await spent(limiter, "a") == 7  # once, not twice
    assert await spent(local, "a") == 7  # and the local limits know it
    assert metrics.uncharged_turns._value.get() == 1


async def test_a_client_is_settled_once_its_own_charges_are_sent() -> None:
    limiter = CountingLimiter()
    charges = Charges(limiter, Metrics(), fallback=MemoryRateLimiter())
    limiter.gate = asyncio.Event()
    charges.add("a", "tokens", 3)
    await charges.settled("b")  # nothing of b's is pending: returns at once
    waiter = asyncio.ensure_future(charges.settled("a"))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # a's charge is still on its way
    limiter.gate.set()
    await asyncio.wait_for(waiter, 5)
    assert await spent(limiter, "a") == 3
    await charges.close()
