"""The guide's "Complete FastAPI Example" served by real uvicorn against the fake OpenAI server.

The example's module is loaded from ``examples/guide/fastapi_app.py`` as written; it reads no
environment at import, and the manager reads ``OPENAI_*`` when it builds a bot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from kubebots.runtime import DynaBot
from kubebots.runtime.api import get_bot_manager
from kubebots.runtime.testing import FakeOpenAIServer

from .support import assert_error_body

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guide" / "fastapi_app.py"
KEY = "sk-guide-fastapi"
REPLY = "[gpt-4o] You are a customer support assistant. | "


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guide_fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the guide uses @app.on_event
        spec.loader.exec_module(module)
    return module


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a thread with its own loop."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none")
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        assert not self.thread.is_alive()

    def call(self, coro: Any) -> Any:
        """Run ``coro`` on the server's loop (where the bots live)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def served(fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    server = ServerThread(load_example().app)
    server.start()
    try:
        yield server
    finally:
        if server.thread.is_alive():
            server.stop()


def chat(client: httpx.Client, bot_id: str, message: str) -> httpx.Response:
    body = {"message": message, "conversation_id": "conv-1", "client_id": "client-A"}
    return client.post(f"/bots/{bot_id}/chat", json=body)


def test_the_guide_example_end_to_end(served: ServerThread, fake: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=10) as client:
        response = chat(client, "support", "Hello, I need help")
        assert response.status_code == 200, response.text
        assert response.json() == {
            "response": REPLY + "Hello, I need help",
            "conversation_id": "conv-1",
        }
        assert fake.requests[-1]["authorization"] == f"Bearer {KEY}"
        assert client.get("/bots").json() == {"bots": ["support"], "count": 1}

        # The guide's loader raises ValueError for unknown ids: a configuration failure (500).
        body = assert_error_body(chat(client, "unknown", "hi"), 500, "ConfigurationError")
        assert "Unknown bot: unknown" in body["message"]
        assert body["detail"] == {"bot_id": "unknown"}

        invalid = client.post("/bots/support/chat", json={"message": "hi"})
        body = assert_error_body(invalid, 422, "ValidationError")
        assert {e["field"] for e in body["detail"]["errors"]} == {
            "body.conversation_id",
            "body.client_id",
        }

        bot: DynaBot = served.call(get_bot_manager().get("support"))
        removed = client.delete("/bots/support")
        assert removed.json() == {"removed": True, "bot_id": "support"}
        served.call(bot.wait_closed())
        again = client.delete("/bots/support")
        body = assert_error_body(again, 404, "BotNotFoundError")
        assert body["message"] == "Bot with ID 'support' not found"
        assert body["detail"] == {"bot_id": "support"}

        assert client.get("/nowhere").json()["error"] == "NotFound"
        assert chat(client, "support", "back").json()["response"] == REPLY + "back"
        rebuilt: DynaBot = served.call(get_bot_manager().get("support"))
        assert rebuilt is not bot

    served.stop()  # the guide's shutdown hook calls reset_bot_manager() without await
    with pytest.raises(RuntimeError, match="not initialised"):
        get_bot_manager()
    # Whether ``rebuilt`` got closed depends on how soon uvicorn stops its loop after the hook:
    # see test_manager_registry.test_reset_without_await_closes_the_bots_even_when_the_loop_stops.


def test_upstream_failures_in_the_guide_example(
    served: ServerThread, fake: FakeOpenAIServer
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30) as client:
        fake.inject(429, times=10, retry_after=0.01)
        limited = chat(client, "support", "hi")
        assert_error_body(limited, 429, "RateLimitError")
        assert limited.headers["retry-after"] == "1"
        fake.reset()
        fake.inject(400, message=f"bad request from key {KEY}")
        refused = chat(client, "support", "hi")
        body = assert_error_body(refused, 400, "UpstreamBadRequestError")
        assert body["detail"] == {"code": "invalid_request"}
        assert KEY not in refused.text
        fake.reset()
        assert chat(client, "support", "hi").status_code == 200
