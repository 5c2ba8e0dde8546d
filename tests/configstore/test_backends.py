"""Backend-specific behaviour: PostgreSQL reconnects and hygiene, SQLite across processes,
the memory store's injectable clock."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import psycopg
import pytest

from kubebots.runtime.configstore.base import ReplicaReport, ResyncRequired, StoreError, WatchEvent
from kubebots.runtime.configstore.memory import MemoryConfigStore
from kubebots.runtime.configstore.postgres import PostgresConfigStore
from kubebots.runtime.configstore.sqlite import SqliteConfigStore

from .util import WAIT, eventually, revisions, take, watching

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


async def _watch_backends(url: str, app_name: str) -> list[int]:
    """Backend pids of the watch connections named ``app_name``."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        )
        return [int(pid) for (pid,) in await cur.fetchall()]


async def _terminate(url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert await cur.fetchone() == (True,)


@pytest.mark.postgres
async def test_postgres_watch_resumes_after_its_backend_is_terminated(
    postgres_url: str, pg_prefix: str, watch_app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = await PostgresConfigStore.open(postgres_url, prefix=pg_prefix, pool_size=2)
    reader = await PostgresConfigStore.open(
        postgres_url, prefix=pg_prefix, pool_size=1, watch_application_name=watch_app_name
    )
    total = 300
    events: list[WatchEvent] = []
    try:
        watched = asyncio.create_task(take(reader, 0, total, into=events, within=120))

        async def write() -> None:
            for n in range(total):
                await writer.put(f"bot-{n % 5}", {"n": n}, generation=n + 1, uid="u")
                await asyncio.sleep(0.002)

        async def seen_at_least(count: int) -> bool:
            return len(events) >= count

        writing = asyncio.create_task(write())
        terminated: list[int] = []
        for threshold in (30, 150):  # kill the watch connection twice while writes go on
            await eventually(partial(seen_at_least, threshold), "events flow")
            (pid,) = await _watch_backends(postgres_url, watch_app_name)
            await _terminate(postgres_url, pid)
            terminated.append(pid)

            async def reconnected() -> bool:
                pids = await _watch_backends(postgres_url, watch_app_name)
                return len(pids) == 1 and pids[0] not in terminated

            await eventually(reconnected, "the watch reconnects")
        await asyncio.wait_for(writing, 120)
        assert revisions(await asyncio.wait_for(watched, 120)) == list(range(1, total + 1))
        lost = [r for r in caplog.records if "reconnecting" in r.getMessage()]
        assert len(lost) >= 2
    finally:
        await writer.close()
        await reader.close()


@pytest.mark.postgres
async def test_postgres_watch_checks_compaction_after_a_reconnect(
    postgres_url: str, pg_prefix: str, watch_app_name: str
) -> None:
    store = await PostgresConfigStore.open(
        postgres_url, prefix=pg_prefix, watch_application_name=watch_app_name
    )
    try:
        await store.put("bot", {"n": 1}, generation=1, uid="u")
        async with watching(store, 0) as watch:
            assert (await asyncio.wait_for(anext(watch), WAIT)).revision == 1
            # The consumer pauses; meanwhile its connection dies and history is compacted.
            (pid,) = await _watch_backends(postgres_url, watch_app_name)
            await _terminate(postgres_url, pid)
            await store.put("bot", {"n": 2}, generation=2, uid="u")
            assert await store.compact(0) == 2
            with pytest.raises(ResyncRequired) as caught:
                await asyncio.wait_for(anext(watch), WAIT)
            assert (caught.value.from_revision, caught.value.compacted_revision) == (1, 2)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_cancelled_or_closed_watches_release_their_connection(
    postgres_url: str, pg_prefix: str, watch_app_name: str
) -> None:
    store = await PostgresConfigStore.open(
        postgres_url, prefix=pg_prefix, watch_application_name=watch_app_name
    )

    async def follow() -> None:
        async with watching(store, 0) as watch:
            async for _ in watch:
                pass

    async def backends(count: int) -> bool:
        return len(await _watch_backends(postgres_url, watch_app_name)) == count

    try:
        followers = [asyncio.create_task(follow()) for _ in range(2)]
        await eventually(lambda: backends(2), "two watch connections")
        followers[0].cancel()
        await eventually(lambda: backends(1), "the cancelled watch's connection is gone")
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await asyncio.wait_for(followers[1], WAIT)
        await eventually(lambda: backends(0), "the closed store's watch connection is gone")
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_watch_is_woken_by_notifications(postgres_url: str, pg_prefix: str) -> None:
    """With a fallback poll far beyond the wait bound, only NOTIFY can deliver in time."""
    store = await PostgresConfigStore.open(postgres_url, prefix=pg_prefix, watch_poll_interval=60)
    try:
        follower = asyncio.create_task(take(store, 0, 3))
        for n in range(3):
            await asyncio.sleep(0.3)
            await store.put("bot", {"n": n}, generation=n + 1, uid="u")
        assert revisions(await follower) == [1, 2, 3]
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_openers_racing_on_new_tables_all_succeed(
    postgres_url: str, pg_prefix: str
) -> None:
    stores = await asyncio.gather(
        *(PostgresConfigStore.open(postgres_url, prefix=pg_prefix, pool_size=1) for _ in range(5))
    )
    try:
        results = await asyncio.gather(
            *(s.put(f"b{i}", {}, generation=1, uid="u") for i, s in enumerate(stores))
        )
        assert sorted(results) == [1, 2, 3, 4, 5]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.postgres
async def test_postgres_times_are_utc_whatever_the_session_zone(
    postgres_url: str, pg_prefix: str
) -> None:
    zoned = postgres_url + "?options=-c%20TimeZone%3DAsia/Tokyo"
    store = await PostgresConfigStore.open(zoned, prefix=pg_prefix)
    try:
        await store.put("bot", {}, generation=1, uid="u")
        await store.report(ReplicaReport("r", 1, LONG_AGO))
        entry = await store.get("bot")
        assert entry is not None and entry.updated_at.tzname() == "UTC"
        (report,) = await store.replica_reports(max_age_seconds=60)
        assert report.heartbeat_at.tzname() == "UTC"
        assert abs(report.heartbeat_at - datetime.now(UTC)) < timedelta(minutes=5)
    finally:
        await store.close()


SECRET_USER = "kb-secret-user"
SECRET_PASSWORD = "kb-secret-pw-4711"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:1/test",  # nothing listens
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:5432/test",  # no such role
        f"postgresql://{SECRET_USER}@127.0.0.1:5432/test?password={SECRET_PASSWORD}",
        f"host=127.0.0.1 port=5432 user={SECRET_USER} password={SECRET_PASSWORD} bad",
    ],
)
async def test_postgres_errors_never_quote_credentials(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        await PostgresConfigStore.open(url, connect_timeout=5)
    text = f"{caught.value} {caught.value.detail}"
    assert SECRET_USER not in text and SECRET_PASSWORD not in text
    assert caught.value.__cause__ is None


async def test_invalid_prefixes_are_rejected(tmp_path: Path, postgres_url: str) -> None:
    for prefix in ("Upper_", "has-dash_", "1digit", "", "x" * 52):
        with pytest.raises(ValueError):
            await SqliteConfigStore.open(tmp_path / "s.db", prefix=prefix)
        with pytest.raises(ValueError):
            await PostgresConfigStore.open(postgres_url, prefix=prefix)


async def test_sqlite_prefixes_keep_stores_apart(tmp_path: Path) -> None:
    one = await SqliteConfigStore.open(tmp_path / "s.db", prefix="one_")
    two = await SqliteConfigStore.open(tmp_path / "s.db", prefix="two_")
    try:
        assert await one.put("bot", {}, generation=1, uid="u") == 1
        assert await two.current_revision() == 0 and await two.get("bot") is None
    finally:
        await one.close()
        await two.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from kubebots.runtime.configstore.sqlite import SqliteConfigStore

    async def main(path):
        store = await SqliteConfigStore.open(path)
        for n in range(100):
            await store.put(f"proc-{n % 3}", {"n": n}, generation=n + 1, uid="proc")
        await store.close()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sqlite_watch_sees_a_writer_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = await SqliteConfigStore.open(path)
    try:
        watched = asyncio.create_task(take(store, 0, 200, within=120))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, str(path), stderr=asyncio.subprocess.PIPE
        )
        for n in range(100):  # this process writes at the same time
            await store.put(f"here-{n % 3}", {"n": n}, generation=n + 1, uid="here")
            await asyncio.sleep(0.005)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        events = await watched
        assert revisions(events) == list(range(1, 201))
        assert sum(1 for e in events if e.entry and e.entry.uid == "proc") == 100
    finally:
        await store.close()


async def test_memory_store_runs_on_an_injected_clock() -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    store = MemoryConfigStore(clock=lambda: now[0])
    await store.put("old", {}, generation=1, uid="u")
    await store.report(ReplicaReport("stale", 1, LONG_AGO))
    now[0] += timedelta(seconds=100)
    await store.put("new", {}, generation=1, uid="u")
    await store.report(ReplicaReport("fresh", 2, LONG_AGO))

    entry = await store.get("new")
    assert entry is not None and entry.updated_at == now[0]
    assert [r.replica_id for r in await store.replica_reports(max_age_seconds=50)] == ["fresh"]
    assert await store.expire_replicas(max_age_seconds=100) == 1
    assert await store.compact(50) == 1
    assert await store.compact(200) == 1
    assert revisions(await take(store, 1, 1)) == [2]
    await store.close()


async def test_sqlite_commit_changes_the_file_signature_that_gates_the_watch_poll(
    tmp_path: Path,
) -> None:
    from kubebots.runtime.configstore.sqlite_watch import file_signature

    path = tmp_path / "store.db"
    store = await SqliteConfigStore.open(path)
    try:
        before = file_signature(path)
        assert file_signature(path) == before  # nothing written: the poll query is skipped
        await store.put("ns:a", {"llm": {"provider": "echo"}}, generation=1, uid="u")
        assert file_signature(path) != before
    finally:
        await store.close()
    assert file_signature(tmp_path / "missing.db") == (0, 0, 0, 0)
