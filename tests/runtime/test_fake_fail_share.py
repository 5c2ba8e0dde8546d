"""FakeOpenAIServer.fail_share: a share of one model's calls fail, spread and exact."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kubebots.runtime.testing import FakeOpenAIServer


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _statuses(fake: FakeOpenAIServer, model: str, calls: int, *, stream: bool = False) -> list[int]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    with httpx.Client(base_url=fake.base_url, timeout=10.0) as client:
        return [client.post("/chat/completions", json=body).status_code for _ in range(calls)]


def test_exactly_the_share_fails_spread_and_only_for_that_model(fake: FakeOpenAIServer) -> None:
    fake.reset()
    fake.fail_share(model="bad-model", share=0.3, status=503)
    statuses = _statuses(fake, "bad-model", 20)
    failed = [i for i, status in enumerate(statuses, 1) if status != 200]
    assert failed == [4, 7, 10, 14, 17, 20]  # 3 of every 10, never the first ones in a row
    assert {statuses[i - 1] for i in failed} == {503}
    assert set(_statuses(fake, "good-model", 10)) == {200}


def test_streamed_calls_count_and_reset_ends_it(fake: FakeOpenAIServer) -> None:
    fake.reset()
    fake.fail_share(model="bad-model", share=0.5)
    statuses = _statuses(fake, "bad-model", 10, stream=True)
    assert statuses.count(500) == 5
    assert statuses[:2] == [200, 500]
    fake.reset()
    assert set(_statuses(fake, "bad-model", 10)) == {200}


def test_a_whole_or_no_share(fake: FakeOpenAIServer) -> None:
    fake.reset()
    fake.fail_share(model="m", share=1.0, status=429)
    assert set(_statuses(fake, "m", 5)) == {429}
    fake.fail_share(model="m", share=0)
    assert set(_statuses(fake, "m", 5)) == {200}
    fake.reset()


def test_bad_arguments_are_refused() -> None:
    fake = FakeOpenAIServer()
    with pytest.raises(ValueError, match="between 0 and 1"):
        fake.fail_share(model="m", share=1.5)
    with pytest.raises(ValueError, match="HTTP error status"):
        fake.fail_share(model="m", share=0.5, status=200)
