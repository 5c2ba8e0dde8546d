"""The :class:`RateLimiter` contract, run against every backend (real sleeps, generous margins)."""

from __future__ import annotations

import asyncio

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.ratelimit import MIN_RETRY_AFTER, Decision, RateLimiter


async def test_is_a_rate_limiter(limiter: RateLimiter) -> None:
    assert isinstance(limiter, RateLimiter)


async def test_allows_up_to_the_limit_then_denies(limiter: RateLimiter, client_id: str) -> None:
    decisions = [await limiter.acquire(client_id, limit=5) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.retry_after is None and d.limit == 5 for d in decisions)
    denied = await limiter.acquire(client_id, limit=5)
    assert not denied.allowed and denied.remaining == 0 and denied.limit == 5
    assert denied.retry_after is not None
    assert MIN_RETRY_AFTER <= denied.retry_after <= 60.0
    assert denied.retry_after > 55.0  # the oldest entry is only just recorded


async def test_window_slides(limiter: RateLimiter, client_id: str) -> None:
    for _ in range(3):
        assert (await limiter.acquire(client_id, limit=3, window_seconds=1.0)).allowed
    denied = await limiter.acquire(client_id, limit=3, window_seconds=1.0)
    assert not denied.allowed and denied.retry_after is not None
    assert 0 < denied.retry_after <= 1.0
    await asyncio.sleep(denied.retry_after + 0.1)
    assert (await limiter.acquire(client_id, limit=3, window_seconds=1.0)).allowed


async def test_the_window_is_sliding_not_fixed(limiter: RateLimiter, client_id: str) -> None:
    async def take() -> Decision:
        return await limiter.acquire(client_id, limit=3, window_seconds=2.0)

    assert (await take()).allowed and (await take()).allowed  # t = 0
    await asyncio.sleep(1.0)
    assert (await take()).allowed  # t = 1
    assert not (await take()).allowed
    await asyncio.sleep(1.2)  # t = 2.2: the two first left the window, the third has not
    assert (await take()).allowed and (await take()).allowed
    last = await take()
    assert not last.allowed and last.retry_after is not None and last.retry_after < 1.0


async def test_costs_above_one(limiter: RateLimiter, client_id: str) -> None:
    first = await limiter.acquire(client_id, limit=10, cost=4)
    second = await limiter.acquire(client_id, limit=10, cost=4)
    assert (first.allowed, first.remaining, second.allowed, second.remaining) == (True, 6, True, 2)
    too_big = await limiter.acquire(client_id, limit=10, cost=4)
    assert not too_big.allowed and too_big.remaining == 2 and too_big.retry_after is not None
    assert (await limiter.acquire(client_id, limit=10, cost=2)).remaining == 0
    never = await limiter.acquire(client_id, limit=10, cost=11)
    assert not never.allowed and never.retry_after is None


async def test_denied_cost_is_not_recorded(limiter: RateLimiter, client_id: str) -> None:
    assert (await limiter.acquire(client_id, limit=3, cost=2)).allowed
    assert not (await limiter.acquire(client_id, limit=3, cost=2)).allowed
    assert (await limiter.acquire(client_id, limit=3, cost=1)).allowed


async def test_scopes_and_clients_are_independent(limiter: RateLimiter, client_id: str) -> None:
    assert (await limiter.acquire(client_id, limit=1)).allowed
    assert not (await limiter.acquire(client_id, limit=1)).allowed
    assert (await limiter.acquire(client_id, limit=1, scope="other")).allowed
    assert (await limiter.acquire(client_id + "-b", limit=1)).allowed
    assert not (await limiter.acquire(client_id, limit=1, scope="other")).allowed


async def test_zero_limit_denies_for_good(limiter: RateLimiter, client_id: str) -> None:
    decision = await limiter.acquire(client_id, limit=0)
    assert decision == Decision(allowed=False, remaining=0, retry_after=None, limit=0)


async def test_token_budget_record_then_check(limiter: RateLimiter, client_id: str) -> None:
    async def check() -> Decision:
        return await limiter.acquire(
            client_id, limit=100, cost=0, window_seconds=1.0, scope="tokens"
        )

    assert (await check()) == Decision(True, 100, None, 100)
    await limiter.record(client_id, cost=90, window_seconds=1.0)
    for _ in range(3):  # a check records nothing
        assert (await check()) == Decision(True, 10, None, 100)
    await limiter.record(client_id, cost=10, window_seconds=1.0)  # exactly at the budget
    at_budget = await check()
    assert not at_budget.allowed and at_budget.remaining == 0
    await limiter.record(client_id, cost=500, window_seconds=1.0)  # record never checks
    over = await check()
    assert not over.allowed and over.retry_after is not None and 0 < over.retry_after <= 1.0
    assert not (await limiter.acquire(client_id, limit=100, scope="tokens")).allowed
    # Requests are another scope: the token overrun does not touch them.
    assert (await limiter.acquire(client_id, limit=1, window_seconds=1.0)).allowed
    await asyncio.sleep(1.1)
    assert (await check()).allowed


async def test_record_zero_is_a_no_op(limiter: RateLimiter, client_id: str) -> None:
    await limiter.record(client_id, cost=0)
    assert (await limiter.acquire(client_id, limit=1, scope="tokens")).allowed


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": -1}, ValueError),
        ({"limit": True}, TypeError),
        ({"limit": 1.5}, TypeError),
        ({"limit": 1, "cost": -1}, ValueError),
        ({"limit": 1, "window_seconds": 0}, ValueError),
        ({"limit": 1, "window_seconds": float("inf")}, ValueError),
        ({"limit": 1, "window_seconds": "60"}, TypeError),
        ({"limit": 1, "scope": ""}, ValueError),
        ({"limit": 1, "scope": "a\x00b"}, ValueError),
    ],
)
async def test_bad_arguments(limiter: RateLimiter, kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        await limiter.acquire("client", **kwargs)  # type: ignore[arg-type]


async def test_bad_client_ids(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        await limiter.acquire("", limit=1)
    with pytest.raises(TypeError):
        await limiter.record(None, cost=1)  # type: ignore[arg-type]


async def test_closed_limiter_raises_storage_error(limiter: RateLimiter, client_id: str) -> None:
    await limiter.close()
    await limiter.close()  # idempotent
    with pytest.raises(StorageError):
        await limiter.acquire(client_id, limit=1)
    with pytest.raises(StorageError):
        await limiter.record(client_id, cost=1)
