"""Backend-specific behaviour: real concurrent processes on SQLite, racing writers on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime.conversations import (
    ConversationKey,
    NewMessage,
    PostgresConversationStore,
    SqliteConversationStore,
    StoredToolCall,
)

from .util import new_key

_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from kubebots.runtime.conversations import ConversationKey, SqliteConversationStore

    async def main(path, name):
        store = await SqliteConversationStore.open(path)
        key = ConversationKey("bot", "client", "shared")
        for i in range(40):
            await store.append(key, [("user", f"{name}-{i}-q"), ("assistant", f"{name}-{i}-a")])
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_sqlite_file_shared_by_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, path, f"p{n}"], stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()

    async def check() -> None:
        store = await SqliteConversationStore.open(path)
        try:
            stored = await store.history(ConversationKey("bot", "client", "shared"))
        finally:
            await store.close()
        assert [m.seq for m in stored] == list(range(1, 241))
        for question, answer in zip(stored[::2], stored[1::2], strict=True):
            assert question.content[:-2] == answer.content[:-2]

    asyncio.run(check())


@pytest.mark.postgres
async def test_postgres_openers_racing_on_a_new_table_all_succeed(postgres_url: str) -> None:
    table = f"kb_race_{uuid.uuid4().hex[:12]}"
    try:
        stores = await asyncio.gather(
            *(
                PostgresConversationStore.open(postgres_url, table=table, pool_size=1)
                for _ in range(6)
            )
        )
        key = new_key()
        await asyncio.gather(*(s.append(key, [("user", "x")]) for s in stores))
        assert len(await stores[0].history(key)) == 6
        for store in stores:
            await store.close()
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.mark.postgres
async def test_postgres_append_retries_when_another_writer_takes_its_seq(
    postgres_url: str, pg_table: str
) -> None:
    """A writer that skips the advisory lock commits seq 1 under the store's feet."""
    store = await PostgresConversationStore.open(postgres_url, table=pg_table, pool_size=2)
    key = new_key()
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, 1, 'user', 'rogue', now())")
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url) as rogue:
            await rogue.execute(insert.format(sql.Identifier(pg_table)), key)  # not committed
            append = asyncio.create_task(store.append(key, [("user", "mine")]))
            for _ in range(100):  # until the store's INSERT waits on the rogue's row
                waiting = await rogue.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid()"
                )
                if (await waiting.fetchone() or (0,))[0]:
                    break
                await asyncio.sleep(0.05)
            assert not append.done()
            await rogue.commit()
        assert await append == 2
        assert [(m.seq, m.content) for m in await store.history(key)] == [(1, "rogue"), (2, "mine")]
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_timestamps_are_utc_whatever_the_session_zone(
    postgres_url: str, pg_table: str
) -> None:
    zoned = postgres_url + "?options=-c%20TimeZone%3DAsia/Tokyo"
    store = await PostgresConversationStore.open(zoned, table=pg_table)
    key = new_key()
    try:
        await store.append(key, [("user", "hi")])
        (message,) = await store.history(key)
        assert message.created_at.tzinfo is not None
        assert message.created_at.utcoffset() is not None
        assert message.created_at.tzname() == "UTC"
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_role_with_only_dml_rights_can_use_an_existing_table(
    postgres_url: str, pg_table: str
) -> None:
    # Make sure the session table exists (created by a privileged opener).
    await (await PostgresConversationStore.open(postgres_url, table=pg_table)).close()
    role = f"kb_dml_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(role)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        try:
            await admin.execute(
                sql.SQL("GRANT SELECT, INSERT, DELETE ON {} TO {}").format(
                    sql.Identifier(pg_table), ident
                )
            )
            url = postgres_url.replace("postgres@", f"{role}@")
            store = await PostgresConversationStore.open(url, table=pg_table)
            key = new_key()
            try:
                assert await store.append(key, [("user", "hi")]) == 1
                assert await store.delete_bot(key.bot_id) == 1
            finally:
                await store.close()
        finally:
            await admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            await admin.execute(sql.SQL("DROP ROLE {}").format(ident))


OLD_SQLITE_DDL = (
    "CREATE TABLE kubebots_messages ("
    " bot_id TEXT NOT NULL, client_id TEXT NOT NULL, conversation_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " PRIMARY KEY (bot_id, client_id, conversation_id, seq))"
)
ANSWER = [
    NewMessage("assistant", "", tool_calls=(StoredToolCall("c1", "f", "{}"),)),
    NewMessage("tool", "done", tool_call_id="c1"),
]


async def test_sqlite_table_made_before_tool_calling_gets_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_SQLITE_DDL)
        conn.execute(
            "INSERT INTO kubebots_messages VALUES ('b', 'c', 'conv', 1, 'user', 'old', ?)",
            (datetime.now(UTC).isoformat(),),
        )
    conn.close()
    key = ConversationKey("b", "c", "conv")
    for _ in range(2):  # the second open finds the columns there
        store = await SqliteConversationStore.open(path)
        try:
            await store.append(key, ANSWER)
            stored = await store.history(key)
        finally:
            await store.close()
        assert (stored[0].content, stored[0].tool_calls, stored[0].tool_call_id) == (
            "old",
            (),
            None,
        )
        assert stored[-2].tool_calls == ANSWER[0].tool_calls
        assert stored[-1].tool_call_id == "c1"


@pytest.mark.postgres
async def test_postgres_table_made_before_tool_calling_gets_its_columns(postgres_url: str) -> None:
    table = f"kb_old_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(table)
    old = (
        OLD_SQLITE_DDL.replace("kubebots_messages", "{}")
        .replace("created_at TEXT", "created_at timestamptz")
        .replace("INTEGER", "integer")
    )
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(sql.SQL(old).format(ident))
        await admin.execute(
            sql.SQL("INSERT INTO {} VALUES ('b', 'c', 'conv', 1, 'user', 'old', now())").format(
                ident
            )
        )
        try:
            key = ConversationKey("b", "c", "conv")
            stores = [
                await PostgresConversationStore.open(postgres_url, table=table) for _ in range(3)
            ]
            try:
                await stores[0].append(key, ANSWER)
                stored = await stores[-1].history(key)
            finally:
                for store in stores:
                    await store.close()
            assert (stored[0].content, stored[0].tool_calls) == ("old", ())
            assert stored[1].tool_calls == ANSWER[0].tool_calls
            assert stored[2].tool_call_id == "c1"
        finally:
            await admin.execute(sql.SQL("DROP TABLE {}").format(ident))
