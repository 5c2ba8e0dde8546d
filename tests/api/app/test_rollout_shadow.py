"""Shadow mode: clients only ever get the stable generation's replies, the weight's share of
turns is mirrored to the candidate in the background (stateless, never stored), and the
mirrors are counted as the candidate's shadow turns, bounded per replica.

Real parts: a SQLite config store with the Bot's entry and its candidate entry, the runtime on
real uvicorn, the fake OpenAI upstream answering ``[MODEL] SYSTEM | USER``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime.routing import bucket
from kubebots.runtime.testing import FakeOpenAIServer

from .rollout_support import (
    BOT,
    CANDIDATE_MODEL,
    STABLE_MODEL,
    TIMEOUT,
    chat,
    client,
    metric,
    progressing,
    rollout_app,
    rollout_turns,
    spec,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _mirrored(conversation: str, weight: int = 50) -> bool:
    return bucket(BOT, "tenant-a", conversation) < weight * 100


def _candidate_calls(fake: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [r["body"] for r in fake.requests if r["body"]["model"] == CANDIDATE_MODEL]


def _wait_shadow_turns(url: str, outcome: str, count: int) -> dict[tuple[str, str, str], float]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        totals = rollout_turns(url)
        if totals.get(("2", "shadow", outcome)) == count:
            return totals
        assert time.monotonic() < deadline, totals
        time.sleep(0.05)


def test_clients_get_stable_replies_and_the_candidate_answers_the_mirrored_share(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.reset()
    stable, candidate = spec(fake, STABLE_MODEL), spec(fake, CANDIDATE_MODEL, shadow=True)
    state = progressing(50, shadow=True)
    conversations = [f"s-{i}" for i in range(60)]
    mirrored = [c for c in conversations if _mirrored(c)]
    assert 15 <= len(mirrored) <= 45
    with rollout_app(tmp_path, stable, candidate, state) as (_, server), client(server) as http:
        for conversation in conversations:
            for message in ("first question", "second question"):
                status, generation, text = chat(http, conversation, message)
                assert (status, generation) == (200, "1"), text
                assert f"[{STABLE_MODEL}]" in text and CANDIDATE_MODEL not in text
        totals = _wait_shadow_turns(server.url, "ok", 2 * len(mirrored))
        assert totals[("1", "stable", "ok")] == 2 * len(conversations)
        assert ("2", "candidate", "ok") not in totals

        calls = _candidate_calls(fake)
        assert len(calls) == 2 * len(mirrored)
        # stateless: the candidate's system prompt, the stable prompt's history, the message
        second = [c["messages"] for c in calls if c["messages"][-1]["content"] == "second question"]
        assert len(second) == len(mirrored)
        for messages in second:
            assert messages[0] == {"role": "system", "content": f"you are {CANDIDATE_MODEL}"}
            assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
            assert messages[1]["content"] == "first question"
            assert messages[2]["content"].startswith(f"[{STABLE_MODEL}]")
        # never stored: the conversation holds the stable turns only
        history = http.get(f"/bots/{BOT}/conversations/{mirrored[0]}").json()["messages"]
        assert [m["generation"] for m in history] == [1, 1, 1, 1]
        assert all(CANDIDATE_MODEL not in m["content"] for m in history)


def test_a_failing_candidate_is_counted_and_never_seen(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.reset()
    fake.fail_share(model=CANDIDATE_MODEL, share=1.0, status=503)
    stable, candidate = spec(fake, STABLE_MODEL), spec(fake, CANDIDATE_MODEL, shadow=True)
    state = progressing(50, shadow=True)
    conversations = [f"f-{i}" for i in range(40)]
    mirrored = [c for c in conversations if _mirrored(c)]
    with rollout_app(tmp_path, stable, candidate, state) as (_, server), client(server) as http:
        for i, conversation in enumerate(conversations):
            status, generation, text = chat(http, conversation, stream=i % 2 == 0)
            assert (status, generation) == (200, "1"), text
            assert "event: error" not in text
        totals = _wait_shadow_turns(server.url, "error", len(mirrored))
        assert ("2", "shadow", "ok") not in totals
        assert ("1", "stable", "error") not in totals
    fake.reset()


def test_stateless_requests_are_mirrored_with_their_messages(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.reset()
    stable, candidate = spec(fake, STABLE_MODEL), spec(fake, CANDIDATE_MODEL, shadow=True)
    with (
        rollout_app(tmp_path, stable, candidate, progressing(100, shadow=True)) as (_, server),
        client(server) as http,
    ):
        messages = [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ]
        response = http.post("/v1/chat/completions", json={"model": BOT, "messages": messages})
        assert response.status_code == 200, response.text
        assert response.headers["x-kubebots-generation"] == "1"
        assert response.json()["choices"][0]["message"]["content"].startswith(f"[{STABLE_MODEL}]")
        _wait_shadow_turns(server.url, "ok", 1)
        (call,) = _candidate_calls(fake)
        assert call["messages"][1:] == messages


def test_mirrors_beyond_the_bound_are_dropped_and_counted(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.reset()
    stable, candidate = spec(fake, STABLE_MODEL), spec(fake, CANDIDATE_MODEL, shadow=True)
    state = progressing(50, shadow=True)
    conversations = [f"d-{i}" for i in range(30)]
    mirrored = [c for c in conversations if _mirrored(c)]
    with (
        rollout_app(tmp_path, stable, candidate, state, shadow_max_in_flight=0) as (_, server),
        client(server) as http,
    ):
        for conversation in conversations:
            assert chat(http, conversation)[:2] == (200, "1")
        dropped = metric(server.url, "kubebots_rollout_mirrors_dropped_total")
        assert dropped == len(mirrored)
        assert _candidate_calls(fake) == []
        assert metric(server.url, "kubebots_rollout_weight_percent", bot=BOT) == 50
