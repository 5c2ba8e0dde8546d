"""open_conversation_store, storage_key, and how the backends open (and fail to open)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kubebots.runtime.conversations import (
    ConversationStore,
    MemoryConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    open_conversation_store,
    storage_key,
)
from kubebots.runtime.errors import ConfigurationError, StorageError
from kubebots.runtime.schema import (
    MemoryStorageConfig,
    PostgresStorageConfig,
    SqliteStorageConfig,
)

from .util import new_key

SECRET_USER = "kb_secret_user_7f3a"
SECRET_PASSWORD = "kb-secret-pw-91c2"


async def roundtrip(store: ConversationStore) -> None:
    key = new_key()
    try:
        assert await store.append(key, [("user", "hi"), ("assistant", "hello")]) == 2
        assert [m.content for m in await store.recent(key, 1)] == ["hello"]
    finally:
        await store.delete_bot(key.bot_id)
        await store.close()


async def test_memory_config_opens_a_memory_store() -> None:
    store = await open_conversation_store(MemoryStorageConfig(), env={})
    assert isinstance(store, MemoryConversationStore)
    await roundtrip(store)


async def test_sqlite_relative_path_is_used_as_given_and_its_directory_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_conversation_store(SqliteStorageConfig(path="data/db/convs.db"), env={})
    assert isinstance(store, SqliteConversationStore)
    await roundtrip(store)
    db_file = tmp_path / "data" / "db" / "convs.db"
    assert db_file.is_file()
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [
            ("kubebots_messages",)
        ]


@pytest.mark.postgres
async def test_postgres_url_and_url_env_open_postgres_stores(postgres_url: str) -> None:
    by_url = await open_conversation_store(PostgresStorageConfig(url=postgres_url), env={})
    assert isinstance(by_url, PostgresConversationStore)
    await roundtrip(by_url)
    config = PostgresStorageConfig(url_env="KB_DB_URL", pool_size=2)
    by_env = await open_conversation_store(config, env={"KB_DB_URL": postgres_url})
    assert isinstance(by_env, PostgresConversationStore)
    await roundtrip(by_env)


@pytest.mark.parametrize("env", [{}, {"KB_DB_URL": ""}, {"OTHER": "postgresql://x@h/db"}])
async def test_missing_url_variable_is_a_configuration_error(env: dict[str, str]) -> None:
    config = PostgresStorageConfig(url_env="KB_DB_URL")
    with pytest.raises(ConfigurationError) as caught:
        await open_conversation_store(config, env=env)
    assert "KB_DB_URL" in caught.value.message
    assert "postgresql://" not in str(caught.value)
    assert caught.value.fields == ["conversationStorage.urlEnv"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:1/test",  # nothing listens
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:5432/test",  # no such role
        f"postgresql://{SECRET_USER}@127.0.0.1:5432/test?password={SECRET_PASSWORD}",
        f"host=127.0.0.1 port=1 user={SECRET_USER} password='{SECRET_PASSWORD}' dbname=test",
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:notaport/test",
    ],
)
async def test_unreachable_postgres_is_a_storage_error_without_credentials(url: str) -> None:
    config = PostgresStorageConfig(url_env="KB_DB_URL")
    with pytest.raises(StorageError) as caught:
        await open_conversation_store(config, env={"KB_DB_URL": url})
    error = caught.value
    shown = " ".join([str(error), repr(error), repr(error.detail)])
    assert SECRET_USER not in shown
    assert SECRET_PASSWORD not in shown
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.postgres
async def test_a_reachable_server_refusing_the_role_says_why(postgres_url: str) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        await PostgresConversationStore.open(postgres_url.replace("postgres@", "nosuchrole_kb@"))


async def test_unusable_sqlite_path_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError):
        await SqliteConversationStore.open(tmp_path / "file" / "db.sqlite")
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        await SqliteConversationStore.open(tmp_path / "garbage.db")


@pytest.mark.parametrize("table", ["", "Messages", "a-b", "x; DROP TABLE y", "1abc", "a" * 64])
async def test_table_names_must_be_plain_identifiers(table: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await SqliteConversationStore.open(tmp_path / "db", table=table)
    with pytest.raises(ValueError):
        await PostgresConversationStore.open("postgresql://u@127.0.0.1:1/db", table=table)


def test_storage_key_names_the_physical_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage_key(MemoryStorageConfig()) == "memory"
    relative = storage_key(SqliteStorageConfig(path="convs.db"))
    assert relative == f"sqlite:{(tmp_path / 'convs.db').resolve()}"
    dotted = SqliteStorageConfig(path=str(tmp_path / "x" / ".." / "convs.db"))
    assert storage_key(dotted) == relative
    url = "postgresql://bots@db:5432/bots"
    assert storage_key(PostgresStorageConfig(url=url, pool_size=3)) == f"postgres:{url}"
    assert storage_key(PostgresStorageConfig(url=url, pool_size=9)) == f"postgres:{url}"
    assert storage_key(PostgresStorageConfig(url_env="DB_URL")) == "postgres-env:DB_URL"
