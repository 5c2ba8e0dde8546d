"""The SQLite kernel: files opened with their directory, one shared connection per store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.persistence.owner import Owner
from kubebots.runtime.persistence.sqlite import SharedConnection, open_sqlite


class OwnerError(StorageError):
    """The error class of some store."""


OWNER = Owner(OwnerError, "test store")


async def test_open_makes_the_directory_and_runs_the_preparation(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "db.sqlite"
    conn = await open_sqlite(path, OWNER, busy_timeout=2.5, prepare=("PRAGMA journal_mode = WAL",))
    try:
        assert path.is_file()
        assert await conn.execute_fetchall("PRAGMA journal_mode") == [("wal",)]
        assert await conn.execute_fetchall("PRAGMA busy_timeout") == [(2500,)]
    finally:
        await conn.close()


async def test_open_failures_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OwnerError, match=r"cannot open SQLite database .*file/db"):
        await open_sqlite(tmp_path / "file" / "db", OWNER, busy_timeout=1)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OwnerError, match=r"cannot prepare SQLite database .*garbage\.db"):
        await open_sqlite(garbage, OWNER, busy_timeout=1, prepare=("PRAGMA journal_mode = WAL",))


@pytest.fixture
async def shared(tmp_path: Path) -> SharedConnection[OwnerError]:
    conn = await open_sqlite(
        tmp_path / "db", OWNER, busy_timeout=1, prepare=("CREATE TABLE t (n)",)
    )
    return SharedConnection(conn, OWNER)


async def test_a_failed_transaction_rolls_back(shared: SharedConnection[OwnerError]) -> None:
    with pytest.raises(OwnerError, match="SQLite test store failed: no such table"):
        async with shared.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
            await conn.execute("INSERT INTO missing VALUES (1)")
    async with shared.transaction() as conn:
        await conn.execute("INSERT INTO t VALUES (2)")
    async with shared.hold() as conn:
        assert await conn.execute_fetchall("SELECT n FROM t") == [(2,)]
    await shared.close()


async def test_calls_take_turns_and_close_waits_for_the_holder(
    shared: SharedConnection[OwnerError],
) -> None:
    order: list[str] = []

    async def hold(name: str) -> None:
        async with shared.hold():
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    await asyncio.gather(hold("a"), hold("b"), shared.close())
    assert order == ["a in", "a out", "b in", "b out"]
    assert shared.closed
    with pytest.raises(OwnerError, match="the test store is closed"):
        async with shared.hold():
            pass
    await shared.close()  # idempotent


async def test_calls_cancelled_while_beginning_leave_no_open_transaction(
    shared: SharedConnection[OwnerError],
) -> None:
    async def insert(n: int) -> None:
        async with shared.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (?)", (n,))

    tasks = [asyncio.create_task(insert(n)) for n in range(20)]
    for _ in range(3):
        await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await insert(100)  # no "cannot start a transaction within a transaction"
    async with shared.hold() as conn:
        rows = await conn.execute_fetchall("SELECT n FROM t")
    assert (100,) in rows
    assert {n for (n,) in rows} <= {*range(20), 100}
    await shared.close()
