"""Storage backends the benchmarks run against, with their clean-up.

``open_backend(name)`` yields a :class:`Backend`: the bot config for that storage and unique bot
ids (prefixed by this run). On exit the SQLite temp directory is removed and every PostgreSQL
conversation of the ids handed out is deleted through ``ConversationStore.delete_bot``.
Close the managers that use a backend before leaving its ``async with``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubebots.runtime.conversations import PostgresConversationStore

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("memory", "sqlite", "postgres")
RUN_PREFIX = f"bench-{os.getpid()}-{secrets.token_hex(3)}"


def echo_config(storage: dict[str, Any]) -> dict[str, Any]:
    """A bot config: the offline echo provider and ``storage`` as ``conversationStorage``."""
    return {"llm": {"provider": "echo"}, "conversationStorage": storage}


MEMORY_CONFIG = echo_config({"backend": "memory"})


@dataclass
class Backend:
    name: str
    config: dict[str, Any]
    issued: list[str] = field(default_factory=list)

    def bot_id(self, suffix: str) -> str:
        """A bot id unique to this run (recorded for clean-up)."""
        bot_id = f"{RUN_PREFIX}-{self.name}-{suffix}"
        self.issued.append(bot_id)
        return bot_id


async def purge_postgres(bot_ids: list[str]) -> None:
    """Delete every conversation the given bots wrote to the default PostgreSQL table."""
    if not bot_ids:
        return
    store = await PostgresConversationStore.open(POSTGRES_URL, pool_size=1)
    try:
        for bot_id in bot_ids:
            await store.delete_bot(bot_id)
    finally:
        await store.close()


@asynccontextmanager
async def open_backend(name: str) -> AsyncIterator[Backend]:
    if name == "memory":
        yield Backend(name, MEMORY_CONFIG)
    elif name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="kubebots-bench-") as tmp:
            path = str(Path(tmp) / "conversations.db")
            yield Backend(name, echo_config({"backend": "sqlite", "path": path}))
    elif name == "postgres":
        backend = Backend(name, echo_config({"backend": "postgres", "url": POSTGRES_URL}))
        try:
            yield backend
        finally:
            await purge_postgres(backend.issued)
    else:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
