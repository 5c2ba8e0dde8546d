"""KeyedLocks: one holder per key at a time, and no lock kept once nobody holds or waits."""

from __future__ import annotations

import asyncio

import pytest

from kubebots.runtime._locks import KeyedLocks


async def test_holders_of_one_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    order: list[str] = []

    async def hold(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(hold("a", "a1", 0.02), hold("a", "a2", 0), hold("b", "b1", 0))
    assert order.index("a1 out") < order.index("a2 in")
    assert order.index("b1 out") < order.index("a1 out")  # b never waited for a
    assert len(locks) == 0


async def test_a_waiter_cancelled_before_it_got_the_lock_leaves_nothing_behind() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks.hold("k"):
        waiter = asyncio.create_task(locks.hold("k").__aenter__())
        await asyncio.sleep(0)
        assert len(locks) == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(locks) == 0


async def test_an_error_inside_releases_the_lock() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("k"):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("k"):
        pass
