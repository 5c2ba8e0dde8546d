"""The runtime app on real uvicorn (loopback), with its store from settings."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubebots.runtime.api.app import RuntimeSettings, create_app
from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.factory import ProviderFactory
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from ...sync.conftest import drop_prefix

KEYS = {
    "clients": [
        {"clientId": "tenant-a", "keys": ["key-a-0123456789"]},
        {"clientId": "tenant-b", "keys": ["key-b-0123456789"]},
        {"clientId": "limited", "keys": ["key-l-0123456789"], "requestsPerMinute": 60},
        {"clientId": "narrow", "keys": ["key-n-0123456789"], "bots": ["default:echo"]},
        {"clientId": "ops", "keys": ["key-ops-0123456789"], "admin": True},
    ]
}
HEADERS_A = {"Authorization": "Bearer key-a-0123456789"}
HEADERS_B = {"Authorization": "Bearer key-b-0123456789"}


def put_bots(url: str, prefix: str, bots: dict[str, dict[str, Any]]) -> None:
    async def write() -> None:
        store = await open_config_store(url, prefix=prefix)
        try:
            for bot_id, spec in bots.items():
                live = await store.get(bot_id)
                generation = live.generation + 1 if live else 1
                await store.put(bot_id, spec, generation=generation, uid="test")
        finally:
            await store.close()

    asyncio.run(write())


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def default_bots(fake: FakeOpenAIServer) -> dict[str, dict[str, Any]]:
    return {
        "default:echo": {"llm": {"provider": "echo"}, "systemPrompt": "echo bot"},
        "default:gpt": {
            "llm": {"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url},
            "systemPrompt": "be brief",
            "limits": {"maxMessageChars": 2000},
        },
    }


@contextmanager
def running_app(
    store_url: str,
    *,
    prefix: str = "kubebots_",
    auth: bool = True,
    keys: dict[str, Any] | None = None,
    providers: ProviderFactory | None = None,
    **settings: Any,
) -> Iterator[ThreadedServer]:
    """The app on real uvicorn: ``keys`` replace :data:`KEYS`, ``providers`` build the LLMs."""
    config = RuntimeSettings(
        store=store_url,
        table_prefix=prefix,
        auth=auth,
        api_keys=json.dumps(keys or KEYS) if auth else None,
        replica_id=f"test-{uuid.uuid4().hex[:8]}",
        heartbeat_interval=0.5,
        **settings,
    )
    with ThreadedServer(create_app(config, env={}, providers=providers)) as server:
        wait_ready(server.url)
        yield server


def wait_ready(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the runtime never became ready")


@pytest.fixture
def sqlite_app(tmp_path: Path, fake_llm: FakeOpenAIServer) -> Callable[..., Any]:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))

    def start(**kwargs: Any) -> Any:
        return running_app(url, **kwargs)

    return start


@pytest.fixture
def pg_prefix(postgres_url: str) -> Iterator[str]:
    prefix = f"a{uuid.uuid4().hex[:10]}_"
    yield prefix
    drop_prefix(postgres_url, prefix)
