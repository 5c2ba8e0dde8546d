"""The generation tag on stored messages: every backend keeps it, old tables get its column.

A message records the Bot generation that produced it (None: not recorded). The SQL stores
keep it in a nullable integer column that a table made by an older release gets when a store
opens it; its old rows read back None. On PostgreSQL the tag costs a warm turn nothing: the
append stays one statement and the cached window holds the tag.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime import BotContext, DynaBot
from kubebots.runtime.bot import BotVersion
from kubebots.runtime.conversations import (
    ConversationKey,
    ConversationStore,
    NewMessage,
    PostgresConversationStore,
    SqliteConversationStore,
    StoredToolCall,
)
from kubebots.runtime.conversations.messages import MAX_GENERATION
from kubebots.runtime.llm.echo import EchoProvider
from kubebots.runtime.schema import parse_bot_config

from .proxy import CountingProxy
from .util import StoreFactory, new_key

TAGGED = [
    NewMessage("user", "q", generation=7),
    NewMessage("assistant", "", (StoredToolCall("c1", "f", "{}"),), generation=7),
    NewMessage("tool", "r", tool_call_id="c1", generation=7),
    NewMessage("assistant", "a", generation=MAX_GENERATION),
]

#: The messages table as the release before the generation tag made it (both SQL dialects).
PRE_GENERATION_SQLITE = (
    "CREATE TABLE {t} ("
    " bot_id TEXT NOT NULL, client_id TEXT NOT NULL, conversation_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
    " created_at TEXT NOT NULL, tool_calls TEXT, tool_call_id TEXT,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
PRE_GENERATION_POSTGRES = (
    "CREATE TABLE {t} ("
    ' bot_id text COLLATE "C" NOT NULL, client_id text COLLATE "C" NOT NULL,'
    ' conversation_id text COLLATE "C" NOT NULL, seq integer NOT NULL,'
    " role text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL,"
    " tool_calls text, tool_call_id text,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
OLD_ROW = "INSERT INTO {t} VALUES ('b', 'c', 'conv', 1, 'user', 'old', %s, NULL, NULL)"
KEY = ConversationKey("b", "c", "conv")


async def test_every_backend_keeps_the_generation(store: ConversationStore) -> None:
    key = new_key()
    assert await store.append(key, TAGGED) == 4
    await store.append(key, [("user", "untagged"), NewMessage("assistant", "none")])
    expected = [7, 7, 7, MAX_GENERATION, None, None]
    assert [m.generation for m in await store.history(key)] == expected
    assert [m.generation for m in await store.recent(key, 3)] == expected[-3:]
    recent = await store.recent(key, 6)  # the window a cache may hold keeps the tags too
    assert [(m.seq, m.generation) for m in recent] == list(enumerate(expected, start=1))
    assert recent[1].tool_calls == TAGGED[1].tool_calls and recent[2].tool_call_id == "c1"


@pytest.mark.parametrize(
    ("generation", "error"),
    [(-1, ValueError), (MAX_GENERATION + 1, ValueError), (True, TypeError), ("7", TypeError)],
)
async def test_a_generation_no_store_can_keep_is_refused_and_nothing_is_stored(
    store: ConversationStore, generation: object, error: type[Exception]
) -> None:
    key = new_key()
    bad = NewMessage("assistant", "a", generation=generation)  # type: ignore[arg-type]
    with pytest.raises(error, match="generation"):
        await store.append(key, [NewMessage("user", "q", generation=1), bad])
    assert await store.history(key) == []


async def test_the_generation_survives_a_restart(open_durable: StoreFactory) -> None:
    key = new_key()
    first = await open_durable()
    await first.append(key, TAGGED)
    await first.close()
    again = await open_durable()
    assert [m.generation for m in await again.history(key)] == [m.generation for m in TAGGED]


async def test_a_sqlite_table_made_before_the_tag_gets_its_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(PRE_GENERATION_SQLITE.format(t="kubebots_messages"))
        row = OLD_ROW.format(t="kubebots_messages").replace("%s", "?")
        conn.execute(row, (datetime.now(UTC).isoformat(),))
    conn.close()
    for turn in range(2):  # the second open finds the column there
        store = await SqliteConversationStore.open(path)
        try:
            await store.append(KEY, [NewMessage("assistant", f"new {turn}", generation=3)])
            stored = await store.history(KEY)
        finally:
            await store.close()
        assert [(m.content, m.generation) for m in stored][:2] == [("old", None), ("new 0", 3)]
    with sqlite3.connect(path) as conn:
        columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(kubebots_messages)")}
    conn.close()
    assert columns["generation"] == "INTEGER"


@pytest.mark.postgres
async def test_a_postgres_table_made_before_the_tag_gets_its_column(postgres_url: str) -> None:
    table = f"kb_old_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(table)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(sql.SQL(PRE_GENERATION_POSTGRES).format(t=ident))
        await admin.execute(sql.SQL(OLD_ROW).format(t=ident), (datetime.now(UTC),))
        try:
            # Openers racing on the old table add the column once (under the advisory lock).
            stores = await asyncio.gather(
                *(PostgresConversationStore.open(postgres_url, table=table) for _ in range(3))
            )
            try:
                await stores[0].append(KEY, [NewMessage("assistant", "new", generation=9)])
                stored = await stores[-1].history(KEY)
                recent = await stores[1].recent(KEY, 5)
            finally:
                for store in stores:
                    await store.close()
            assert [(m.content, m.generation) for m in stored] == [("old", None), ("new", 9)]
            assert [m.generation for m in recent] == [None, 9]
            found = await admin.execute(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = %s AND column_name = 'generation'",
                (table,),
            )
            assert await found.fetchall() == [("bigint",)]
        finally:
            await admin.execute(sql.SQL("DROP TABLE {}").format(ident))


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the store to listen"
        await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_a_warm_tagged_turn_still_takes_one_round_trip(
    postgres_url: str, pg_table: str
) -> None:
    async with CountingProxy(postgres_url) as proxy:
        store = await PostgresConversationStore.open(proxy.url, table=pg_table, pool_size=2)
        await _until(lambda: store.listening)
        config = parse_bot_config({"llm": {"provider": "echo"}})
        bot_id = f"bot-{uuid.uuid4().hex[:12]}"
        version = BotVersion(revision=1, generation=7)
        bot = DynaBot(bot_id, config, llm=EchoProvider(), storage=store, version=version)
        try:
            # Warm up: psycopg prepares a statement on its 5th run (one extra round trip, once).
            for i in range(6):
                await bot.complete("warm-up", BotContext(f"warm-{i}", "tenant"))
            context = BotContext("measured", "tenant")
            await bot.complete("first", context)
            proxy.reset()
            await bot.complete("second", context)  # warm: the append alone
            assert proxy.round_trips == 1
            window = await store.recent(ConversationKey(bot_id, "tenant", "measured"), 4)
            assert proxy.round_trips == 1  # from the cache, tags included
            assert [m.generation for m in window] == [7, 7, 7, 7]
        finally:
            await bot.close()
            await store.close()
