"""The in-process limiter against a brute-force model of the sliding log, on a fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubebots.runtime.ratelimit import MIN_RETRY_AFTER, Charge, MemoryRateLimiter

WINDOW = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fits(log: list[tuple[float, int]], at: float, cost: int, limit: int) -> bool:
    used = sum(c for t, c in log if t > at - WINDOW)
    return used + max(cost, 1) <= limit


ops = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "acquire", "record"]),
        st.floats(min_value=0.0, max_value=4.0, allow_nan=False),
        st.integers(min_value=0, max_value=6),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(min_value=0, max_value=12), steps=ops)
async def test_matches_the_sliding_log_model(
    limit: int, steps: list[tuple[str, float, int]]
) -> None:
    clock = FakeClock()
    limiter = await MemoryRateLimiter.open(clock=clock)
    log: list[tuple[float, int]] = []  # every recorded (time, cost), never pruned
    admitted: list[tuple[float, int]] = []
    for op, dt, cost in steps:
        clock.now += dt
        now = clock.now
        if op == "record":
            await limiter.record("c", cost=cost, window_seconds=WINDOW, scope="s")
            log.append((now, cost))
            continue
        decision = await limiter.acquire(
            "c", limit=limit, cost=cost, window_seconds=WINDOW, scope="s"
        )
        assert decision.allowed == fits(log, now, cost, limit)
        if decision.allowed:
            log.append((now, cost))
            admitted.append((now, cost))
            continue
        if max(cost, 1) > limit:
            assert decision.retry_after is None
            continue
        retry = decision.retry_after
        assert retry is not None and MIN_RETRY_AFTER <= retry <= WINDOW
        assert fits(log, now + retry + 1e-6, cost, limit)  # 1e-6: float rounding
        if retry > MIN_RETRY_AFTER:
            assert not fits(log, now + retry - 1e-6, cost, limit)
    # Exactness: no window of WINDOW seconds ever admitted more than the limit (acquires only).
    for start, _ in admitted:
        assert sum(c for t, c in admitted if start <= t < start + WINDOW) <= limit
    await limiter.close()


async def test_empty_logs_are_forgotten() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.acquire("a", limit=1, window_seconds=1.0)
    clock.now += 2
    await limiter.acquire("a", limit=1, cost=0, window_seconds=1.0)
    assert limiter._logs == {}


async def test_running_sums_stay_exact_over_many_entries() -> None:
    """20,000 entries over several windows: the sum kept per key is its entries' sum."""
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for step in range(20):
        charge = Charge("c", "s", 1 + step % 3, window_seconds=WINDOW)
        await limiter.record_many([charge] * 1000)
        clock.now += 1.0
        live = {n: 1 + n % 3 for n in range(step + 1) if n > step + 1 - WINDOW}  # batch -> cost
        used = 1000 * sum(live.values())
        check = await limiter.acquire("c", limit=used + 1, cost=0, window_seconds=WINDOW, scope="s")
        assert (check.allowed, check.remaining) == (True, 1)
        assert not (
            await limiter.acquire("c", limit=used, window_seconds=WINDOW, scope="s")
        ).allowed
        log = limiter._logs[("s", "c")] if limiter._logs else None
        assert log is not None and log.used == sum(cost for _, cost in log.entries) == used
    await limiter.close()
