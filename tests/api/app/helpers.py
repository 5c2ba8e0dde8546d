"""Helpers shared by the acceptance modules of the chat API (plain functions, no fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import default_bots, put_bots, running_app

#: Generous, for a loaded 2-core machine.
TIMEOUT = 60.0
ERROR_KEYS = {"error", "message", "detail", "timestamp"}


@contextmanager
def default_bots_server(
    directory: Path, fake: FakeOpenAIServer, **settings: Any
) -> Iterator[ThreadedServer]:
    """The runtime on real uvicorn, its SQLite config store in ``directory`` holding
    ``default:echo`` and ``default:gpt`` (whose upstream is ``fake``)."""
    url = f"sqlite:{directory / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake))
    with running_app(url, **settings) as server:
        yield server


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    """``response`` (httpx's, or the ``openai`` SDK's ``httpx2`` one) is a ``status`` in the
    API's error format naming ``error``; returns its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
    return dict(body)


def segment(value: str) -> str:
    """``value`` as one URL path segment: everything escaped, dots too (so ``.``/``..`` are
    never collapsed as dot segments by the client)."""
    return quote(value, safe="").replace(".", "%2E")


def conversation_path(bot_id: str, conversation_id: str) -> str:
    return f"/bots/{bot_id}/conversations/{segment(conversation_id)}"
