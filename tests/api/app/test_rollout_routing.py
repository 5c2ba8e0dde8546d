"""A Bot under rollout: the runtime routes its turns between the stable and the candidate
generation, says which answered, counts them, and keeps the candidate entry to itself.

Real parts throughout: a SQLite config store holding the Bot's entry (generation 1) and its
candidate entry (generation 2, the rollout state in its annotation, as the operator writes it),
the runtime on real uvicorn syncing from it, and the fake OpenAI upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.routing import bucket
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import put_bots
from .rollout_support import (
    BOT,
    CANDIDATE,
    CANDIDATE_MODEL,
    STABLE_MODEL,
    TIMEOUT,
    chat,
    client,
    progressing,
    put_candidate,
    rollout_app,
    rollout_turns,
    spec,
    wait_rollout,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _generations(http: httpx.Client, conversations: list[str]) -> dict[str, str | None]:
    answered = {}
    for conversation in conversations:
        status, generation, text = chat(http, conversation)
        assert status == 200, text
        answered[conversation] = generation
    return answered


def test_new_conversations_take_the_weight_and_started_ones_keep_their_generation(
    tmp_path: Path,
) -> None:
    stable, candidate = spec(None, "echo-stable"), spec(None, "echo-candidate")
    with (
        rollout_app(tmp_path, stable, candidate, progressing(30)) as (url, server),
        client(server) as http,
    ):
        first = [f"first-{i}" for i in range(1000)]
        at_30 = _generations(http, first)
        assert set(at_30.values()) == {"1", "2"}
        share = sum(g == "2" for g in at_30.values())
        assert 270 <= share <= 330, share

        put_candidate(url, candidate, progressing(60, step=1))
        wait_rollout(server.url, progressing(60))
        # a started conversation is answered by the generation it started with, both ways
        assert _generations(http, first) == at_30
        later = _generations(http, [f"later-{i}" for i in range(1000)])
        share = sum(g == "2" for g in later.values())
        assert 570 <= share <= 630, share

        history = http.get(f"/bots/{BOT}/conversations/first-0").json()["messages"]
        assert {m["generation"] for m in history} == {int(at_30["first-0"] or 0)}


def test_a_rolled_back_candidate_answers_nothing_not_even_its_own_conversations(
    tmp_path: Path,
) -> None:
    stable, candidate = spec(None, "echo-stable"), spec(None, "echo-candidate")
    with (
        rollout_app(tmp_path, stable, candidate, progressing(50)) as (url, server),
        client(server) as http,
    ):
        started = _generations(http, [f"c-{i}" for i in range(40)])
        on_candidate = [c for c, g in started.items() if g == "2"]
        assert on_candidate

        rolled_back = progressing(0, phase="RolledBack")
        put_candidate(url, candidate, rolled_back)
        rollout = wait_rollout(server.url, rolled_back)
        assert rollout["candidateGeneration"] == 2 and rollout["stableGeneration"] == 1

        assert set(_generations(http, on_candidate).values()) == {"1"}
        assert set(_generations(http, [f"new-{i}" for i in range(40)]).values()) == {"1"}
        status, generation, _ = chat(http, on_candidate[0], stream=True)
        assert (status, generation) == (200, "1")


def test_the_candidate_entry_is_invisible_to_clients(tmp_path: Path) -> None:
    stable, candidate = spec(None, "echo-stable"), spec(None, "echo-candidate")
    with (
        rollout_app(tmp_path, stable, candidate, progressing(100)) as (_, server),
        client(server) as http,
    ):
        assert chat(http, "warm")[1] == "2"  # the candidate is loaded on this replica

        listed = http.get("/bots").json()
        assert BOT in listed["bots"] and CANDIDATE not in listed["bots"]
        assert CANDIDATE not in listed["active"]
        models = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert BOT in models and CANDIDATE not in models

        body = {"message": "hi", "conversation_id": "x"}
        for response in (
            http.get(f"/bots/{CANDIDATE}"),
            http.post(f"/bots/{CANDIDATE}/chat", json=body),
            http.post(f"/bots/{CANDIDATE}/chat/stream", json=body),
            http.get(f"/bots/{CANDIDATE}/conversations"),
            http.get(f"/bots/{CANDIDATE}/conversations/warm"),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "BotNotFoundError"
        messages = [{"role": "user", "content": "hi"}]
        response = http.post(
            "/v1/chat/completions", json={"model": CANDIDATE, "messages": messages}
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
        assert http.get(f"/v1/models/{CANDIDATE}").status_code == 404

        shown = http.get(f"/bots/{BOT}").json()
        assert shown["rollout"] == {
            "phase": "Progressing",
            "step": 1,
            "weight": 100,
            "shadow": False,
            "stableGeneration": 1,
            "candidateGeneration": 2,
            "attempt": 1,
        }
        assert http.get("/bots/default:echo").status_code == 404  # not in this store


def test_v1_routes_stateless_requests_by_request_id_and_says_who_answered(
    tmp_path: Path,
) -> None:
    stable, candidate = spec(None, "echo-stable"), spec(None, "echo-candidate")
    with (
        rollout_app(tmp_path, stable, candidate, progressing(50)) as (_, server),
        client(server) as http,
    ):

        def complete(request_id: str, *, stream: bool = False, **headers: str) -> str:
            body = {
                "model": BOT,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            }
            response = http.post(
                "/v1/chat/completions",
                json=body,
                headers={"X-Request-Id": request_id, **headers},
            )
            assert response.status_code == 200, response.text
            return str(response.headers["x-kubebots-generation"])

        drawn = [complete(f"req-{i}") for i in range(200)]
        assert 70 <= drawn.count("2") <= 130, drawn.count("2")
        assert [complete(f"req-{i}", stream=True) for i in range(20)] == drawn[:20]
        # with a stored conversation, its generation holds whatever the request id
        first = complete("a", **{"X-Conversation-Id": "v1-conv"})
        assert {complete(f"b-{i}", **{"X-Conversation-Id": "v1-conv"}) for i in range(10)} == {
            first
        }


def test_errors_and_flags_are_counted_per_generation_and_reach_the_replica_report(
    tmp_path: Path, fake: FakeOpenAIServer
) -> None:
    fake.reset()
    fake.fail_share(model=CANDIDATE_MODEL, share=0.3, status=500)
    stable = spec(fake, STABLE_MODEL, flag=r"\[candidate-model\]")
    candidate = spec(fake, CANDIDATE_MODEL, flag=r"\[candidate-model\]")
    with (
        rollout_app(tmp_path, stable, candidate, progressing(50)) as (url, server),
        client(server) as http,
    ):
        outcomes: dict[str, list[int]] = {"1": [], "2": []}
        for i in range(100):
            conversation = f"e-{i}"
            drawn = "2" if bucket(BOT, "tenant-a", conversation) < 5000 else "1"
            status, generation, text = chat(http, conversation, stream=i % 4 == 0)
            # an error answer names its generation too (the middleware sends it)
            assert generation == drawn, (status, text)
            failed = status != 200 or "event: error" in text
            outcomes[drawn].append(int(failed))
        assert sum(outcomes["1"]) == 0  # stable clients never see the candidate's errors
        candidate_turns, candidate_errors = len(outcomes["2"]), sum(outcomes["2"])
        assert candidate_turns >= 30 and candidate_errors >= 0.2 * candidate_turns
        calls = sum(1 for r in fake.requests if r["body"]["model"] == CANDIDATE_MODEL)
        assert calls == candidate_turns

        # once the report counts every turn, so do the metrics (one record feeds both)
        report = _wait_report(url, candidate_turns, len(outcomes["1"]))
        totals = rollout_turns(server.url)
        assert totals.get(("2", "candidate", "error")) == candidate_errors
        # every answered candidate reply matches the flag; no stable one does
        answered = candidate_turns - candidate_errors
        assert totals.get(("2", "candidate", "flagged")) == answered
        assert totals.get(("1", "stable", "ok")) == len(outcomes["1"])
        assert ("1", "stable", "error") not in totals
        assert ("1", "stable", "flagged") not in totals

        by_generation = {c.generation: c for c in report if c.window == "1.0"}
        assert by_generation[2].errors == candidate_errors
        assert by_generation[2].flagged == answered
        assert by_generation[1].turns == len(outcomes["1"])
        assert by_generation[1].errors == 0 and by_generation[1].tokens > 0
    fake.reset()


def _wait_report(url: str, candidate_turns: int, stable_turns: int) -> list[object]:
    """The rollout counters of ``BOT`` in the stored replica report, once they count every
    turn of both generations (a streamed turn is counted when its stream ends, just after the
    client read the last event)."""

    async def read() -> list[object]:
        store = await open_config_store(url, prefix="kubebots_")
        try:
            reports = await store.replica_reports(max_age_seconds=60)
        finally:
            await store.close()
        return [c for r in reports for b in r.bots if b.bot_id == BOT for c in b.rollout]

    deadline = time.monotonic() + TIMEOUT
    while True:
        counters = asyncio.run(read())
        turns = {
            generation: sum(c.turns for c in counters if c.generation == generation)  # type: ignore[attr-defined]
            for generation in (1, 2)
        }
        if turns == {1: stable_turns, 2: candidate_turns}:
            return counters
        assert time.monotonic() < deadline, counters
        time.sleep(0.1)


def test_a_bot_without_rollout_answers_with_its_generation(tmp_path: Path) -> None:
    stable, candidate = spec(None, "echo-stable"), spec(None, "echo-candidate")
    with rollout_app(tmp_path, stable, candidate, progressing(10)) as (url, server):
        put_bots(url, "kubebots_", {"default:plain": {"llm": {"provider": "echo"}}})
        put_bots(url, "kubebots_", {"default:plain": {"llm": {"provider": "echo"}}})
        body = {"message": "hi", "conversation_id": "p"}
        deadline = time.monotonic() + TIMEOUT
        with client(server) as http:
            while (response := http.post("/bots/default:plain/chat", json=body)).headers.get(
                "x-kubebots-generation"
            ) != "2":
                assert time.monotonic() < deadline, response.text
                time.sleep(0.05)
            assert http.get("/bots/default:plain").json()["rollout"] is None
