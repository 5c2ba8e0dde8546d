"""Helpers of the rollout routing tests: a Bot's stable and candidate entries in a real store,
the runtime on real uvicorn over it, turns, and the rollout metrics it exposes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, running_app

BOT = "default:r"
CANDIDATE = candidate_id(BOT)
STABLE_MODEL, CANDIDATE_MODEL = "stable-model", "candidate-model"
#: Generous, for a loaded 2-core machine.
TIMEOUT = 30.0


def spec(
    fake: FakeOpenAIServer | None,
    model: str,
    *,
    shadow: bool = False,
    flag: str | None = None,
    max_messages: int = 20,
) -> dict[str, Any]:
    """A Bot spec answered by ``fake`` as ``model`` (None: the echo provider) with a rollout."""
    llm: dict[str, Any] = {"provider": "echo", "model": model}
    if fake is not None:
        llm = {"provider": "openai", "model": model, "baseUrl": fake.base_url, "maxRetries": 0}
    analysis: dict[str, Any] = {"minTurns": 5}
    if flag is not None:
        analysis |= {"flagReplyPattern": flag, "maxFlaggedPercent": 50}
    return {
        "llm": llm,
        "systemPrompt": f"you are {model}",
        "memory": {"maxMessages": max_messages},
        "rollout": {
            "steps": [{"weight": 30}, {"weight": 60}],
            "analysis": analysis,
            "shadow": shadow,
        },
    }


def progressing(
    weight: int, *, shadow: bool = False, step: int = 0, phase: str = "Progressing"
) -> RolloutState:
    return RolloutState(phase, 1, step, weight, shadow, 1, time.time())  # type: ignore[arg-type]


async def _put(url: str, bot_id: str, config: dict[str, Any], generation: int, **how: Any) -> None:
    store = await open_config_store(url, prefix="kubebots_")
    try:
        await store.put(bot_id, config, generation=generation, uid="test", **how)
    finally:
        await store.close()


def put_stable(url: str, config: dict[str, Any]) -> None:
    """The Bot's own entry: generation 1 (the stable one)."""
    asyncio.run(_put(url, BOT, config, 1))


def put_candidate(url: str, config: dict[str, Any], state: RolloutState) -> None:
    """The candidate entry: generation 2, ``state`` in its annotation (as the operator writes)."""
    notes = {ROLLOUT_ANNOTATION: state.to_annotation()}
    asyncio.run(_put(url, CANDIDATE, config, 2, annotations=notes))


@contextmanager
def rollout_app(
    tmp_path: Path,
    stable: dict[str, Any],
    candidate: dict[str, Any],
    state: RolloutState,
    **settings: Any,
) -> Iterator[tuple[str, ThreadedServer]]:
    """The runtime over a SQLite store holding ``BOT`` and its candidate; yields the store's
    URL and the server, once the runtime routes by ``state``."""
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_stable(url, stable)
    put_candidate(url, candidate, state)
    with running_app(url, **settings) as server:
        wait_rollout(server.url, state)
        yield url, server


def wait_rollout(url: str, state: RolloutState) -> dict[str, Any]:
    """Wait until ``GET /bots/BOT`` shows the rollout at ``state``'s phase and weight."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        body = httpx.get(f"{url}/bots/{BOT}", headers=HEADERS_A).json()
        rollout = body.get("rollout") or {}
        if (rollout.get("phase"), rollout.get("weight")) == (state.phase, state.weight):
            return dict(rollout)
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def chat(
    client: httpx.Client, conversation: str, message: str = "hello", *, stream: bool = False
) -> tuple[int, str | None, str]:
    """One turn: its status, ``X-Kubebots-Generation`` and body text."""
    path = f"/bots/{BOT}/chat/stream" if stream else f"/bots/{BOT}/chat"
    response = client.post(path, json={"message": message, "conversation_id": conversation})
    return response.status_code, response.headers.get("x-kubebots-generation"), response.text


def client(server: ThreadedServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=HEADERS_A, timeout=TIMEOUT)


def rollout_turns(url: str) -> dict[tuple[str, str, str], float]:
    """``kubebots_rollout_turns_total`` of ``BOT`` by (generation, role, outcome)."""
    text = httpx.get(f"{url}/metrics").text
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "kubebots_rollout_turns_total" and labels["bot"] == BOT:
                found[labels["generation"], labels["role"], labels["outcome"]] = sample.value
    return found


def metric(url: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
