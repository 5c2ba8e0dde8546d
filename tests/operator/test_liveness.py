"""The decision behind the operator's ``/healthz``: alive while the API answered lately.

The API check and the clock are injected (a real implementation of each: a check that answers
or fails as told, a clock that moves when told); the kopf handler is called as kopf calls it.
"""

from __future__ import annotations

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from kubebots.operator.liveness import ApiLiveness, ApiUnreachableError, api_probe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """Answers, or fails with ``error``, and counts the calls."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def liveness(timeout: float = 60.0) -> tuple[ApiLiveness, Api, Clock]:
    api, clock = Api(), Clock()
    return ApiLiveness(api, timeout=timeout, clock=clock), api, clock


async def test_alive_while_the_api_answers() -> None:
    live, api, clock = liveness()
    assert await live.probe() == {"api": "ok"}
    clock.now += 3600
    assert await live.probe() == {"api": "ok"}
    assert api.calls == 2


async def test_a_short_outage_still_answers_200_and_says_what_failed() -> None:
    live, api, clock = liveness(timeout=60)
    await live.probe()
    api.error = ConnectionRefusedError(111, "Connection refused")
    clock.now += 59
    result = await live.probe()
    assert result["api"] == "unreachable"
    assert result["silent_seconds"] == 59
    assert "ConnectionRefusedError" in result["error"]


async def test_fails_once_the_api_has_been_silent_longer_than_the_timeout() -> None:
    live, api, clock = liveness(timeout=60)
    await live.probe()
    api.error = TimeoutError()
    clock.now += 61
    with pytest.raises(ApiUnreachableError, match=r"has not answered for 61s \(limit 60s\)"):
        await live.probe()
    # and keeps failing while the API stays silent
    clock.now += 20
    with pytest.raises(ApiUnreachableError, match="81s"):
        await live.probe()


async def test_recovers_as_soon_as_the_api_answers_again() -> None:
    live, api, clock = liveness(timeout=60)
    api.error = TimeoutError()
    clock.now += 120
    with pytest.raises(ApiUnreachableError):
        await live.probe()
    api.error = None
    assert await live.probe() == {"api": "ok"}
    assert live.last_answer == clock.now


async def test_the_start_counts_as_an_answer_then_a_never_reached_api_fails() -> None:
    """The DNS case of issue 11: the API never answered; /healthz must not say 200 forever."""
    live, api, clock = liveness(timeout=30)
    api.error = OSError("Name or service not known")
    clock.now += 10
    assert (await live.probe())["api"] == "unreachable"
    clock.now += 21
    with pytest.raises(ApiUnreachableError, match="Name or service not known"):
        await live.probe()


async def test_an_answer_that_is_an_error_is_no_answer_and_is_named_by_status() -> None:
    """A 401 (an expired token) means the operator cannot use the API either."""
    live, api, clock = liveness(timeout=5)
    api.error = ApiException(status=401, reason="Unauthorized")
    clock.now += 6
    with pytest.raises(ApiUnreachableError, match="HTTP 401 Unauthorized"):
        await live.probe()


async def test_the_kopf_probe_raises_a_permanent_error_so_kopf_answers_500_at_once() -> None:
    live, api, clock = liveness(timeout=5)
    memo = kopf.Memo(liveness=live)
    assert await api_probe(memo=memo, logger=None) == {"api": "ok"}
    api.error = TimeoutError()
    clock.now += 6
    with pytest.raises(kopf.PermanentError, match="has not answered for 6s"):
        await api_probe(memo=memo, logger=None)
