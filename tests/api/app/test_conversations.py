"""Reading, listing and deleting conversations never builds the bot or its LLM client."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx

from kubebots.runtime.llm import LLMProvider, build_provider
from kubebots.runtime.schema import LLMConfig

from .conftest import HEADERS_A, put_bots, running_app
from .helpers import assert_error

BOT = "default:notes"
ADMIN = {"Authorization": "Bearer key-ops-0123456789"}
NARROW = {"Authorization": "Bearer key-n-0123456789"}  # may use default:echo only


class CountingProviders:
    """The app's provider factory: builds the real provider and counts every LLM client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # called on the server's thread
        self._built: list[str] = []

    def __call__(self, config: LLMConfig, api_key: str | None) -> LLMProvider:
        with self._lock:
            self._built.append(config.provider)
        return build_provider(config, api_key=api_key)

    @property
    def built(self) -> list[str]:
        with self._lock:
            return list(self._built)


def sqlite_bot(directory: Path, llm: dict[str, Any]) -> dict[str, Any]:
    """A Bot whose conversations outlive it (SQLite), unlike the default memory storage."""
    storage = {"backend": "sqlite", "path": str(directory / "conversations.db")}
    return {"llm": llm, "conversationStorage": storage}


def test_conversation_routes_build_no_llm_client(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {BOT: sqlite_bot(tmp_path, {"provider": "echo"})})
    providers = CountingProviders()
    conversation = f"/bots/{BOT}/conversations/c1"
    with (
        running_app(url, providers=providers) as server,
        httpx.Client(base_url=server.url, headers=HEADERS_A) as c,
    ):
        assert c.get(f"/bots/{BOT}/conversations").json()["conversations"] == []
        assert_error(c.get(conversation), 404, "ConversationNotFoundError")
        assert providers.built == []

        turn = c.post(f"/bots/{BOT}/chat", json={"message": "hi", "conversation_id": "c1"})
        assert turn.status_code == 200, turn.text
        assert providers.built == ["echo"]
        # Unloaded (as after an eviction, or on another replica): its conversations stay.
        assert c.delete(f"/bots/{BOT}", headers=ADMIN).json()["removed"] is True

        messages = c.get(conversation).json()["messages"]
        assert [m["content"] for m in messages] == ["hi", "echo: hi"]
        assert c.get(conversation, params={"offset": 1}).json()["messages"][0]["seq"] == 2
        assert c.get(f"/bots/{BOT}/conversations").json()["conversations"] == ["c1"]
        assert c.delete(conversation).json()["deleted"] is True
        assert_error(c.get(conversation), 404, "ConversationNotFoundError")
        assert_error(c.delete(conversation), 404, "ConversationNotFoundError")

        # An unknown bot, and one outside the caller's allow-list, are still 404s.
        assert_error(c.get("/bots/default:nope/conversations"), 404, "BotNotFoundError")
        assert_error(c.get(f"/bots/{BOT}/conversations", headers=NARROW), 404, "BotNotFoundError")
        assert_error(c.get("/bots/bad id!/conversations"), 422, "ValidationError")

        assert providers.built == ["echo"]
        assert c.get(f"/bots/{BOT}").json()["status"] == "available"  # still not loaded


def test_a_bot_whose_llm_cannot_be_built_still_shows_its_conversations(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    no_key = {"provider": "openai", "model": "gpt-4o-mini", "apiKeyEnv": "UNSET_KEY_VARIABLE"}
    put_bots(url, "kubebots_", {BOT: sqlite_bot(tmp_path, no_key)})
    with (
        running_app(url) as server,  # the app's env is empty: the key is missing
        httpx.Client(base_url=server.url, headers=HEADERS_A) as c,
    ):
        turn = c.post(f"/bots/{BOT}/chat", json={"message": "hi", "conversation_id": "c1"})
        assert_error(turn, 500, "ConfigurationError")
        assert c.get(f"/bots/{BOT}/conversations").json()["conversations"] == []
        assert_error(c.get(f"/bots/{BOT}/conversations/c1"), 404, "ConversationNotFoundError")
