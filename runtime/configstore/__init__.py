"""The config store: protocol, backends (memory, sqlite, postgres) and a URL factory.

URLs: ``memory://``; ``sqlite:PATH`` or ``sqlite:///ABSOLUTE/PATH`` (a plain path means sqlite
too); ``postgresql://...`` (``postgres://`` accepted). The URL may hold credentials: it comes
from settings or a mounted Secret, never from a Bot, and is never logged.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import psycopg

from ..persistence.postgres import postgres_error
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, TABLE_PREFIX_PATTERN
from ..persistence.redaction import url_secrets, url_without_password
from .base import (
    BotReport,
    ConfigStore,
    ReplicaReport,
    ReplicaReports,
    ReportingConfigStore,
    ResyncRequired,
    StoreEntry,
    StoreError,
    WatchEvent,
    WriteConflict,
)
from .deferred import DeferredConfigStore
from .memory import MemoryConfigStore
from .postgres import PostgresConfigStore
from .sqlite import SqliteConfigStore

#: Where ``kubebots`` keeps its local data (the embedded store) unless told otherwise.
DEFAULT_DATA_DIR = Path(".kubebots")


def embedded_store_url(data_dir: Path) -> str:
    """The URL of the SQLite config store kept in ``data_dir``."""
    return f"sqlite:{data_dir / 'store.db'}"


#: The config store unless told otherwise: the embedded one in the default data directory.
DEFAULT_STORE_URL = embedded_store_url(DEFAULT_DATA_DIR)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_STORE_URL",
    "DEFAULT_TABLE_PREFIX",
    "TABLE_PREFIX_PATTERN",
    "BotReport",
    "ConfigStore",
    "DeferredConfigStore",
    "MemoryConfigStore",
    "PostgresConfigStore",
    "ReplicaReport",
    "ReplicaReports",
    "ReportingConfigStore",
    "ResyncRequired",
    "SqliteConfigStore",
    "StoreEntry",
    "StoreError",
    "WatchEvent",
    "WriteConflict",
    "describe_store_url",
    "embedded_store_url",
    "open_config_store",
]


def _sqlite_path(url: str) -> str | None:
    if url.startswith("sqlite:///"):
        return url[len("sqlite://") :]
    if url.startswith("sqlite:"):
        return url[len("sqlite:") :]
    if "://" not in url:
        return url
    return None


def check_postgres_url(url: str) -> None:
    """StoreError (naming no part of the URL) unless libpq can parse ``url``."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise postgres_error(StoreError, "connection", exc, url_secrets(url)) from None


def describe_store_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    if url.startswith(("postgresql://", "postgres://")):
        return url_without_password(url)
    return url


async def open_config_store(
    url: str,
    *,
    prefix: str = DEFAULT_TABLE_PREFIX,
    watch_application_name: str = "kubebots-store-watch",
    wait_for_server: bool = False,
    create: bool = True,
) -> ReportingConfigStore:
    """Open the store a URL names (see the module docstring); ``prefix`` prefixes its tables.

    ``create=False``: a SQLite store that does not exist yet is an error, not a new empty file
    (for commands that only read or delete).

    ``wait_for_server``: a PostgreSQL store connects on first use instead of now (a
    :class:`DeferredConfigStore`), so a process can start before its database; until then
    every call raises :class:`StoreError` with the reason. A malformed URL still fails now.
    """
    if url == "memory://":
        return MemoryConfigStore()
    if url.startswith(("postgresql://", "postgres://")):
        connect = partial(
            PostgresConfigStore.open,
            url,
            prefix=prefix,
            watch_application_name=watch_application_name,
        )
        if wait_for_server:
            check_postgres_url(url)
            return DeferredConfigStore(connect)
        return await connect()
    path = _sqlite_path(url)
    if not path:
        raise StoreError(
            f"unsupported store URL '{describe_store_url(url)}': use memory://, sqlite:PATH or "
            "postgresql://..."
        )
    if not create and not await asyncio.to_thread(Path(path).exists):
        raise StoreError(f"no config store at {path} (none created yet; or name one with --store)")
    return await SqliteConfigStore.open(path, prefix=prefix)
