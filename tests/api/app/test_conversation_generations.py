"""A conversation read shows which Bot generation produced each message (``generation``)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .conftest import HEADERS_A, put_bots, running_app

BOT = "default:notes"


def spec(directory: Path, prompt: str) -> dict[str, object]:
    storage = {"backend": "sqlite", "path": str(directory / "conversations.db")}
    return {"llm": {"provider": "echo"}, "systemPrompt": prompt, "conversationStorage": storage}


def served_revision(client: httpx.Client) -> tuple[int | None, int]:
    body = client.get(f"/bots/{BOT}").json()
    return body["served_revision"], body["revision"]


def test_each_message_read_names_the_generation_that_produced_it(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {BOT: spec(tmp_path, "first")})  # generation 1
    conversation = f"/bots/{BOT}/conversations/c1"
    with (
        running_app(url) as server,
        httpx.Client(base_url=server.url, headers=HEADERS_A) as c,
    ):
        turn = c.post(f"/bots/{BOT}/chat", json={"message": "one", "conversation_id": "c1"})
        assert turn.status_code == 200, turn.text
        put_bots(url, "kubebots_", {BOT: spec(tmp_path, "second")})  # generation 2
        deadline = time.monotonic() + 15
        while (served := served_revision(c))[0] != served[1]:  # the replica reloads the bot
            assert time.monotonic() < deadline, f"the bot was never reloaded: {served}"
            time.sleep(0.02)
        turn = c.post(f"/bots/{BOT}/chat", json={"message": "two", "conversation_id": "c1"})
        assert turn.status_code == 200, turn.text

        messages = c.get(conversation).json()["messages"]
        assert [(m["content"], m["generation"]) for m in messages] == [
            ("one", 1),
            ("echo: one", 1),
            ("two", 2),
            ("echo: two", 2),
        ]
        assert c.get(conversation, params={"offset": 3}).json()["messages"][0]["generation"] == 2
