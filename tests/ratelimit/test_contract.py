"""The :class:`RateLimiter` contract, run against every backend (real sleeps, generous margins)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.ratelimit import MIN_RETRY_AFTER, Charge, Decision, Limit, RateLimiter


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
    assert decision == Decision(False, 0, None, 0, "requests")


async def test_token_budget_record_then_check(limiter: RateLimiter, client_id: str) -> None:
    async def check() -> Decision:
        return await limiter.acquire(
            client_id, limit=100, cost=0, window_seconds=1.0, scope="tokens"
        )

    assert (await check()) == Decision(True, 100, None, 100, "tokens")
    await limiter.record(client_id, cost=90, window_seconds=1.0)
    for _ in range(3):  # a check records nothing
        assert (await check()) == Decision(True, 10, None, 100, "tokens")
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
    with pytest.raises(StorageError):
        await limiter.admit(client_id, [Limit("requests", 1)])
    with pytest.raises(StorageError):
        await limiter.record_many([Charge(client_id, "tokens", 1)])


async def used(limiter: RateLimiter, client_id: str, scope: str, window: float = 60.0) -> int:
    """The cost recorded in ``scope``'s window, read with a pure check (records nothing)."""
    big = 10**12
    decision = await limiter.acquire(
        client_id, limit=big, cost=0, window_seconds=window, scope=scope
    )
    return big - decision.remaining


async def test_admit_is_all_or_nothing(limiter: RateLimiter, client_id: str) -> None:
    limits = [Limit("a", 3, cost=1), Limit("b", 2, cost=2)]
    first = await limiter.admit(client_id, limits)
    assert first == Decision(True, 0, None, 2, "b")  # the last limit speaks when all allow
    assert (await used(limiter, client_id, "a"), await used(limiter, client_id, "b")) == (1, 2)
    denied = await limiter.admit(client_id, limits)
    assert not denied.allowed and denied.scope == "b" and denied.limit == 2
    assert denied.retry_after is not None and 55.0 < denied.retry_after <= 60.0
    # Nothing was recorded: "a" still holds one, and alone it admits two more.
    assert await used(limiter, client_id, "a") == 1
    assert (await limiter.admit(client_id, [Limit("a", 3, cost=2)])).remaining == 0


async def test_admit_returns_the_first_denial(limiter: RateLimiter, client_id: str) -> None:
    await limiter.record_many([Charge(client_id, "x", 5), Charge(client_id, "y", 5)])
    decision = await limiter.admit(client_id, [Limit("x", 5), Limit("y", 5)])
    assert (decision.allowed, decision.scope, decision.remaining) == (False, "x", 0)
    decision = await limiter.admit(client_id, [Limit("y", 6, cost=2), Limit("x", 5)])
    assert (decision.allowed, decision.scope, decision.remaining) == (False, "y", 1)
    never = await limiter.admit(client_id, [Limit("z", 1, cost=2), Limit("x", 5)])
    assert (never.allowed, never.scope, never.retry_after) == (False, "z", None)
    assert await used(limiter, client_id, "z") == 0


async def test_admit_with_a_token_budget(limiter: RateLimiter, client_id: str) -> None:
    """A budget (cost 0) is checked with the request slot; a refusal takes no slot."""
    limits = [Limit("tokens", 100, cost=0, window_seconds=1.0), Limit("requests", 10)]
    assert await limiter.admit(client_id, limits) == Decision(True, 9, None, 10, "requests")
    await limiter.record_many([Charge(client_id, "tokens", 100, window_seconds=1.0)])
    refused = await limiter.admit(client_id, limits)
    assert (refused.allowed, refused.scope, refused.remaining, refused.limit) == (
        False,
        "tokens",
        0,
        100,
    )
    assert refused.retry_after is not None and 0 < refused.retry_after <= 1.0
    assert await used(limiter, client_id, "requests") == 1
    assert await used(limiter, client_id, "tokens", window=1.0) == 100
    await asyncio.sleep(refused.retry_after + 0.1)
    assert await limiter.admit(client_id, limits) == Decision(True, 8, None, 10, "requests")


async def test_record_many(limiter: RateLimiter, client_id: str) -> None:
    other = client_id + "-other"
    await limiter.record_many(
        [
            Charge(client_id, "tokens", 30),
            Charge(other, "tokens", 7),
            Charge(client_id, "tokens", 12),  # the same key twice: both count
            Charge(client_id, "images", 2),
            Charge(client_id, "zero", 0),  # nothing to record
        ]
    )
    assert await used(limiter, client_id, "tokens") == 42
    assert await used(limiter, other, "tokens") == 7
    assert await used(limiter, client_id, "images") == 2
    assert await used(limiter, client_id, "zero") == 0
    await limiter.record_many([])
    await limiter.record_many([Charge(client_id, "tokens", 0)])
    assert await used(limiter, client_id, "tokens") == 42


async def test_record_many_checks_every_charge_first(limiter: RateLimiter, client_id: str) -> None:
    with pytest.raises(ValueError):
        await limiter.record_many([Charge(client_id, "tokens", 5), Charge("", "tokens", 1)])
    with pytest.raises(ValueError):
        await limiter.record_many([Charge(client_id, "tokens", 5), Charge(client_id, "t", -1)])
    with pytest.raises(TypeError):
        await limiter.record_many([Charge(client_id, "tokens", 5), ("c", "tokens", 1)])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await limiter.record_many([Charge(client_id, "tokens", 5, window_seconds=0)])
    assert await used(limiter, client_id, "tokens") == 0


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ([], ValueError),
        ([Limit("a", 1), Limit("a", 2)], ValueError),
        ([Limit("a", 1), ("b", 1)], TypeError),
        ([Limit("a", -1)], ValueError),
        ([Limit("a", 1, cost=-1)], ValueError),
        ([Limit("", 1)], ValueError),
        ([Limit("a", 1), Limit("b", 1, window_seconds=float("nan"))], ValueError),
    ],
)
async def test_admit_bad_arguments(
    limiter: RateLimiter, client_id: str, limits: list[Limit], error: type
) -> None:
    with pytest.raises(error):
        await limiter.admit(client_id, limits)
    with pytest.raises(ValueError):
        await limiter.admit("", [Limit("a", 1)])
    assert await used(limiter, client_id, "a") == 0


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def test_many_live_entries_are_counted_exactly(limiter: RateLimiter, client_id: str) -> None:
    """20,000 entries charged in batches: the live cost stays exact as old batches expire (the
    backends keep running sums, so this checks what they subtract on a prune)."""
    window = 3.0
    batch = [Charge(client_id, "requests", 1, window_seconds=window)] * 2000

    def take(limit: int) -> Limit:
        return Limit("requests", limit, window_seconds=window)

    first_start = time.monotonic()
    for _ in range(5):  # 10,000 entries of cost 1
        await limiter.record_many(batch)
    first_end = time.monotonic()
    await _sleep_until(first_end + 0.8)
    second_start = time.monotonic()
    for _ in range(5):  # 10,000 entries of cost 2
        await limiter.record_many([Charge(client_id, "requests", 2, window_seconds=window)] * 2000)
    assert time.monotonic() < first_start + window - 0.5  # the first batches are still live
    assert await used(limiter, client_id, "requests", window) == 30_000
    assert (await limiter.admit(client_id, [take(30_001)])) == Decision(
        True, 0, None, 30_001, "requests"
    )
    denied = await limiter.admit(client_id, [take(30_001)])
    assert not denied.allowed and denied.remaining == 0
    assert denied.retry_after is not None and 0 < denied.retry_after <= window

    await _sleep_until(first_end + window + 0.2)  # the first 10,000 left, the rest are live
    assert time.monotonic() < second_start + window - 0.3
    assert await used(limiter, client_id, "requests", window) == 20_001
    assert (await limiter.admit(client_id, [take(20_002)])).allowed
    assert not (await limiter.admit(client_id, [take(20_002)])).allowed
    assert (await limiter.admit(client_id, [take(20_002), Limit("other", 1)])).scope == "requests"

    await _sleep_until(time.monotonic() + window + 0.2)  # every entry left
    assert await used(limiter, client_id, "requests", window) == 0
    assert (await limiter.admit(client_id, [take(1)])) == Decision(True, 0, None, 1, "requests")
