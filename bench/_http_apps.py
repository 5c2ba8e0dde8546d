"""The servers :mod:`bench.http` puts under load, one per process.

``python -m bench._http_apps KIND PORT DATA_DIR`` serves on 127.0.0.1:PORT until terminated.
KIND is

* ``ours``: ``create_app`` on the SQLite config store ``DATA_DIR/store.db`` (seeded by the
  caller), authentication off; uvicorn, one worker, no access log, log level warning;
* ``ours-auth``: the same with API keys (:data:`API_KEY` authenticates client ``bench``);
* ``configured``: ``create_app`` with the :class:`RuntimeSettings` fields in
  ``DATA_DIR/settings.json`` (:data:`SETTINGS_FILE`; what ``KUBEBOTS_*`` variables would set,
  e.g. a PostgreSQL store, API keys with limits, a rate-limit backend): the configurations of
  :mod:`bench.production`;
* ``bare``: a FastAPI app (same uvicorn settings) with ``POST /bots/{bot_id}/chat`` and
  ``POST /v1/chat/completions``, each parsing the same body as ours with a pydantic model
  (message + conversation_id; model + messages of role + content) and returning a constant
  JSON object, plus ``GET /readyz``. The reference for what uvicorn + FastAPI cost by themselves;
* ``ceiling``: no framework and no HTTP parser, a bare :class:`asyncio.Protocol` that finds the
  end of each request (blank line + ``Content-Length`` bytes) and answers it with one fixed
  keep-alive ``200`` (:data:`CEILING_RESPONSE`). What ``wrk`` measures against it bounds
  ``wrk``'s own ceiling from below: nothing we measure can be faster than this.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

KINDS = ("ours", "ours-auth", "configured", "bare", "ceiling")
SETTINGS_FILE = "settings.json"
API_KEY = "bench-key-0123456789abcdef"
KEYS = {"clients": [{"clientId": "bench", "keys": [API_KEY]}]}
BARE_REPLY = {"response": "ok", "conversation_id": "c", "bot_id": "b"}
BARE_COMPLETION = {
    "id": "chatcmpl-bare",
    "object": "chat.completion",
    "created": 0,
    "model": "bare",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
_CEILING_BODY = json.dumps(BARE_REPLY).encode()
CEILING_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_CEILING_BODY), _CEILING_BODY)
)
_CONTENT_LENGTH = b"\ncontent-length:"


class BareChatRequest(BaseModel):
    message: str
    conversation_id: str


class BareMessage(BaseModel):
    role: str
    content: str


class BareCompletionRequest(BaseModel):
    model: str
    messages: list[BareMessage]


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bots/{bot_id}/chat")
    async def chat(bot_id: str, body: BareChatRequest) -> dict[str, Any]:
        return BARE_REPLY

    @app.post("/v1/chat/completions")
    async def completions(body: BareCompletionRequest) -> dict[str, Any]:
        return BARE_COMPLETION

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def ours_app(data_dir: Path, *, auth: bool) -> FastAPI:
    from kubebots.runtime.api.app import RuntimeSettings, create_app

    settings = RuntimeSettings(
        data_dir=data_dir,
        store=f"sqlite:{data_dir / 'store.db'}",
        auth=auth,
        api_keys=json.dumps(KEYS) if auth else None,
        replica_id="bench-http",
        log_level="WARNING",
    )
    return create_app(settings, env={})


def configured_app(data_dir: Path) -> FastAPI:
    """``create_app`` with the settings of ``data_dir/settings.json`` (fields by name)."""
    from kubebots.runtime.api.app import RuntimeSettings, create_app

    fields = json.loads((data_dir / SETTINGS_FILE).read_text())
    return create_app(RuntimeSettings(**fields), env={})


def request_end(buffer: bytearray) -> int:
    """The length of the first complete request in ``buffer``, or 0 if it is not all there."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    head = bytes(buffer[:head_end]).lower()
    start = head.find(_CONTENT_LENGTH)
    body = 0
    if start >= 0:
        stop = head.find(b"\r", start + 1)
        body = int(head[start + len(_CONTENT_LENGTH) : stop if stop >= 0 else len(head)])
    total = head_end + 4 + body
    return total if len(buffer) >= total else 0


class CeilingProtocol(asyncio.Protocol):
    """Answers every complete request with :data:`CEILING_RESPONSE`, pipelined or not."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answered = 0
        while end := request_end(self.buffer):
            del self.buffer[:end]
            answered += 1
        if answered and self.transport is not None:
            self.transport.write(CEILING_RESPONSE * answered)


async def serve_ceiling(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(CeilingProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in KINDS or not argv[1].isdigit():
        print(f"usage: python -m bench._http_apps {{{','.join(KINDS)}}} PORT DATA_DIR")
        return 2
    kind, port, data_dir = argv[0], int(argv[1]), Path(argv[2])
    if kind == "ceiling":
        asyncio.run(serve_ceiling(port))
        return 0
    if kind == "bare":
        app = bare_app()
    elif kind == "configured":
        app = configured_app(data_dir)
    else:
        app = ours_app(data_dir, auth=kind == "ours-auth")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
