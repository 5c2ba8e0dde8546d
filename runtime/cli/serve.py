"""``kubebots serve``: the chat API. With no settings it runs the embedded local default.

Embedded default: SQLite config store and conversations under ``--data-dir``, the example Bots
shipped in the package (``runtime/cli/bots/``, linked as ``examples/bots/``) applied to the store
(with the offline ``echo`` LLM when their API key is not set), authentication off (with a
warning), the web console at ``/ui`` (unless ``KUBEBOTS_UI`` says otherwise), Bot tools allowed
to reach this machine's loopback, listening on 127.0.0.1:8000. The address is bound before
anything is printed, so a port in use is an error, not a "serving on" line followed by a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import socket
import sys
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..configstore import open_config_store
from ..errors import KubebotsError
from ..schema import BotDocument, load_bot_documents
from .chat import effective_config
from .store import apply_documents

log = logging.getLogger("kubebots.serve")
#: What tools may reach in the embedded default (a laptop): this machine's loopback.
LOCAL_EGRESS = "127.0.0.1,::1,localhost"
#: The example Bots shipped as package data, so the embedded default works outside a checkout.
EXAMPLES = Path(str(files("kubebots.runtime.cli") / "bots"))


def add_serve_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="run the chat API")
    p.add_argument("--host", help="listen address (default 127.0.0.1; KUBEBOTS_HOST)")
    p.add_argument("--port", type=int, help="port (default 8000; KUBEBOTS_PORT)")
    p.add_argument("--data-dir", help="local data directory (default .kubebots; KUBEBOTS_DATA_DIR)")
    p.add_argument("--store", help="config store URL (default sqlite in the data dir)")
    p.add_argument(
        "--examples",
        default=str(EXAMPLES),
        help="directory of Bot files applied to an embedded store at start (default: the "
        "example Bots shipped with kubebots, examples/bots in a checkout)",
    )
    p.add_argument(
        "--llm",
        choices=["auto", "config", "echo"],
        default="auto",
        help="for the Bots applied at start: auto uses each Bot's provider, or echo if the API "
        "key it names is not set; config always uses the provider; echo always answers offline",
    )
    p.set_defaults(handler=run_serve)


def embedded_documents(
    directory: Path, env: Mapping[str, str], llm: str = "auto"
) -> list[BotDocument]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_bot_documents(path):
            spec, note = effective_config(doc.spec, llm, env)
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

    from ..api.app import RuntimeSettings, create_app
    from ..tracing import configure_tracing
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
    if embedded and not env.get("KUBEBOTS_TOOL_EGRESS"):
        overrides["tool_egress"] = LOCAL_EGRESS  # the example Bot's tools call this runtime
    if embedded and not env.get("KUBEBOTS_UI"):
        overrides["ui"] = True  # the console, for trying the Bots in a browser
    settings = RuntimeSettings(**overrides)
    configure_logging(settings.log_level)
    try:
        listener = listen(settings.host, settings.port)
    except OSError as exc:
        print(f"error: {cannot_listen(settings.host, settings.port, exc)}", file=sys.stderr)
        return 1
    with listener:
        bots: list[str] = []
        try:
            if embedded and Path(args.examples).is_dir():
                settings.data_dir.mkdir(parents=True, exist_ok=True)
                docs = embedded_documents(Path(args.examples), env, args.llm)
                for line in asyncio.run(seed_store(settings.store_url(), docs)):
                    log.info(line)
                bots = [doc.bot_id for doc in docs]
            app = create_app(settings, env=env)
        except KubebotsError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        base = f"http://{settings.host}:{settings.port}"
        print(f"kubebots is serving on {base}  (OpenAI-compatible: {base}/v1)", file=sys.stderr)
        if settings.ui:
            print(f"console: {base}/ui", file=sys.stderr)
        print(try_line(base, bots[0] if bots else None, settings.auth), file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_config=None, access_log=False)
        # spans exported over OTLP when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set
        stop_tracing = configure_tracing(env, service_name="kubebots-runtime")
        try:
            # graceful shutdown on SIGINT/SIGTERM, then re-raised
            uvicorn.Server(config).run(sockets=[listener])
        except KeyboardInterrupt:
            return 130
        finally:
            stop_tracing()  # what is queued is sent
    return 0


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (uvicorn serves on it)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the address is already in use (another server?); choose --port"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); choose --port"
    return f"{where}: {exc.strerror or type(exc).__name__}"


def try_line(base: str, bot_id: str | None, auth: bool) -> str:
    """A curl to paste: a chat with the first Bot applied, else the list of Bots."""
    header = ' -H "Authorization: Bearer $KUBEBOTS_API_KEY"' if auth else ""
    if bot_id is None:
        return f"try:  curl -s {base}/bots{header}"
    return (
        f"try:  curl -s {base}/bots/{bot_id}/chat{header} -H 'content-type: application/json' "
        """-d '{"message": "Hello!", "conversation_id": "c1"}'"""
    )
