"""``kubebots store apply|get|ls|delete``: the config store without a cluster.

``apply`` takes the same ``kind: Bot`` YAML a user would ``kubectl apply``; every file is
validated before anything is written, so an invalid file changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import yaml

from ..configstore import DEFAULT_STORE_URL, ConfigStore, StoreEntry, open_config_store
from ..errors import ConfigurationError, KubebotsError
from ..schema import FULL_API_VERSION, KIND, BotDocument, load_bot_documents, split_bot_id


def add_store_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("store", help="read and write the config store")
    p.add_argument("--store", help=f"store URL (default: $KUBEBOTS_STORE or {DEFAULT_STORE_URL})")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    apply = verbs.add_parser("apply", help="write the Bots of YAML files (kind: Bot)")
    apply.add_argument("-f", "--filename", action="append", required=True)
    get = verbs.add_parser("get", help="print one Bot as YAML")
    get.add_argument("bot_id", help="NAMESPACE:NAME, or NAME with -n")
    get.add_argument("-n", "--namespace", default="default")
    verbs.add_parser("ls", help="list the Bots in the store")
    delete = verbs.add_parser("delete", help="delete a Bot (leaves a tombstone)")
    delete.add_argument("bot_id", help="NAMESPACE:NAME, or NAME with -n")
    delete.add_argument("-n", "--namespace", default="default")
    p.set_defaults(handler=run_store)


def resolve_id(raw: str, namespace: str) -> str:
    return raw if ":" in raw else f"{namespace}:{raw}"


async def apply_documents(store: ConfigStore, docs: list[BotDocument]) -> list[str]:
    """Write each Bot; a changed spec gets the next generation, an unchanged one is a no-op."""
    lines = []
    for doc in docs:
        spec = doc.spec_dict()
        live = await store.get(doc.bot_id)
        if live is not None and dict(live.config) == spec:
            lines.append(f"bot {doc.bot_id} unchanged (revision {live.revision})")
            continue
        generation = live.generation + 1 if live else 1
        uid = live.uid if live else f"local-{uuid.uuid4()}"
        # Compare-and-swap on what was just read: a concurrent apply of the same Bot makes one
        # of the two fail with WriteConflict instead of both "succeeding" at one generation.
        read = live.revision if live else 0
        revision = await store.put(
            doc.bot_id, spec, generation=generation, uid=uid, if_revision=read
        )
        verb = "configured" if live else "created"
        lines.append(f"bot {doc.bot_id} {verb} (generation {generation}, revision {revision})")
    return lines


def entry_document(entry: StoreEntry) -> dict[str, Any]:
    namespace, name = split_bot_id(entry.bot_id) or ("", entry.bot_id)
    return {
        "apiVersion": FULL_API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": entry.generation,
            "uid": entry.uid,
        },
        "spec": dict(entry.config),
        "store": {"revision": entry.revision, "updatedAt": entry.updated_at.isoformat()},
    }


async def _run(args: argparse.Namespace, store: ConfigStore) -> int:
    if args.verb == "apply":
        docs = [doc for path in args.filename for doc in load_bot_documents(path)]
        for line in await apply_documents(store, docs):
            print(line)
        return 0
    if args.verb == "ls":
        entries, revision = await store.list()
        print(f"{'BOT':<40} {'GENERATION':>10} {'REVISION':>9}  UPDATED")
        for e in entries:
            updated = f"{e.updated_at:%Y-%m-%dT%H:%M:%SZ}"
            print(f"{e.bot_id:<40} {e.generation:>10} {e.revision:>9}  {updated}")
        print(f"({len(entries)} bots, store revision {revision})")
        return 0
    bot_id = resolve_id(args.bot_id, args.namespace)
    if args.verb == "get":
        entry = await store.get(bot_id)
        if entry is None:
            print(f"error: bot {bot_id} not found", file=sys.stderr)
            return 1
        print(yaml.safe_dump(entry_document(entry), sort_keys=False), end="")
        return 0
    if await store.get(bot_id) is None:
        print(f"error: bot {bot_id} not found", file=sys.stderr)
        return 1
    print(f"bot {bot_id} deleted (revision {await store.delete(bot_id)})")
    return 0


async def _with_store(
    url: str, work: Callable[[ConfigStore], Awaitable[int]], *, create: bool
) -> int:
    store = await open_config_store(url, create=create)
    try:
        return await work(store)
    finally:
        await store.close()


def run_store(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    url = args.store or env.get("KUBEBOTS_STORE") or DEFAULT_STORE_URL
    if args.verb == "apply":  # validate every file before opening the store
        try:
            for path in args.filename:
                load_bot_documents(path)
        except ConfigurationError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot read {exc.filename} ({exc.strerror})", file=sys.stderr)
            return 1
    try:
        # Only apply creates a store: reading or deleting from none is an error, not a new file.
        creates = args.verb == "apply"
        return asyncio.run(_with_store(url, lambda store: _run(args, store), create=creates))
    except KubebotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
