"""``kubebots serve``: the chat API. With no settings it runs the embedded local default.

Embedded default: SQLite config store and conversations under ``--data-dir``, the Bots of
``examples/bots/*.yaml`` applied to the store (with the offline ``echo`` LLM when their API key
is not set), authentication off (with a warning), listening on 127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import KubebotsError
from ..schema import BotDocument, load_bot_documents
from ..store import open_config_store
from .chat import effective_config
from .store import apply_documents

log = logging.getLogger("kubebots.serve")
EXAMPLES = Path("examples/bots")


def add_serve_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="run the chat API")
    p.add_argument("--host", help="listen address (default 127.0.0.1; KUBEBOTS_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; KUBEBOTS_PORT)")
    p.add_argument("--data-dir", help="local data directory (default .kubebots; KUBEBOTS_DATA_DIR)")
    p.add_argument("--store", help="config store URL (default sqlite in the data dir)")
    p.add_argument(
        "--examples",
        default=str(EXAMPLES),
        help="Bot files applied to an embedded store at start (default examples/bots)",
    )
    p.set_defaults(handler=run_serve)


def embedded_documents(directory: Path, env: Mapping[str, str]) -> list[BotDocument]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_bot_documents(path):
            spec, note = effective_config(doc.spec, "auto", env)
            if note:
                log.warning("bot %s: %s", doc.bot_id, note)
            docs.append(dataclasses.replace(doc, spec=spec))
    return docs


async def seed_store(url: str, docs: list[BotDocument]) -> list[str]:
    store = await open_config_store(url)
    try:
        return await apply_documents(store, docs)
    finally:
        await store.close()


def run_serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import uvicorn

    from ..api.app import create_app
    from ..api.settings import RuntimeSettings
    from .logs import configure_logging

    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "store": args.store,
        }.items()
        if v is not None
    }
    embedded = args.store is None and not env.get("KUBEBOTS_STORE")
    keys_given = any(env.get(f"KUBEBOTS_{n}") for n in ("AUTH", "API_KEYS", "API_KEYS_FILE"))
    if embedded and not keys_given:
        overrides["auth"] = False  # the embedded local default; create_app warns about it
    settings = RuntimeSettings(**overrides)
    configure_logging(settings.log_level)
    try:
        if embedded and Path(args.examples).is_dir():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            docs = embedded_documents(Path(args.examples), env)
            for line in asyncio.run(seed_store(settings.store_url(), docs)):
                log.info(line)
        app = create_app(settings, env=env)
    except KubebotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    base = f"http://{settings.host}:{settings.port}"
    print(f"kubebots is serving on {base}  (OpenAI-compatible: {base}/v1)", file=sys.stderr)
    print(
        f"try:  curl -s {base}/bots/default:support/chat -H 'content-type: application/json' "
        """-d '{"message": "Hello!", "conversation_id": "c1"}'""",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    try:
        uvicorn.Server(config).run()  # graceful shutdown on SIGINT/SIGTERM, then re-raised
    except KeyboardInterrupt:
        return 130
    return 0
