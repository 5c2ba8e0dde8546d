"""The servers :mod:`bench.http` puts under load, one per process.

``python -m bench._http_apps KIND PORT DATA_DIR`` serves on 127.0.0.1:PORT with uvicorn (one
worker, no access log, log level warning) until terminated. KIND is

* ``ours``: ``create_app`` on the SQLite config store ``DATA_DIR/store.db`` (seeded by the
  caller), authentication off;
* ``ours-auth``: the same with API keys (:data:`API_KEY` authenticates client ``bench``);
* ``bare``: a FastAPI app with one ``POST /bots/{bot_id}/chat`` that parses the same body as
  ours (a pydantic model: message + conversation_id) and returns a constant JSON object, plus
  ``GET /readyz``. The reference for what uvicorn + FastAPI cost by themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

KINDS = ("ours", "ours-auth", "bare")
API_KEY = "bench-key-0123456789abcdef"
KEYS = {"clients": [{"clientId": "bench", "keys": [API_KEY]}]}
BARE_REPLY = {"response": "ok", "conversation_id": "c", "bot_id": "b"}


class BareChatRequest(BaseModel):
    message: str
    conversation_id: str


def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/bots/{bot_id}/chat")
    async def chat(bot_id: str, body: BareChatRequest) -> dict[str, Any]:
        return BARE_REPLY

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def ours_app(data_dir: Path, *, auth: bool) -> FastAPI:
    from kubebots.runtime.api.app import create_app
    from kubebots.runtime.api.settings import RuntimeSettings

    settings = RuntimeSettings(
        data_dir=data_dir,
        store=f"sqlite:{data_dir / 'store.db'}",
        auth=auth,
        api_keys=json.dumps(KEYS) if auth else None,
        replica_id="bench-http",
        log_level="WARNING",
    )
    return create_app(settings, env={})


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in KINDS or not argv[1].isdigit():
        print(f"usage: python -m bench._http_apps {{{','.join(KINDS)}}} PORT DATA_DIR")
        return 2
    kind, port, data_dir = argv[0], int(argv[1]), Path(argv[2])
    app = bare_app() if kind == "bare" else ours_app(data_dir, auth=kind == "ours-auth")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
