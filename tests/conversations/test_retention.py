"""``conversationStorage.retentionDays``: a bot prunes its messages older than that as it stores
turns, at most every ``PRUNE_INTERVAL``; a failing prune never fails the turn."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime import BotContext, BotFactory, BotManager, ConfigurationError
from kubebots.runtime.bot import PRUNE_INTERVAL, DynaBot
from kubebots.runtime.conversations import MemoryConversationStore
from kubebots.runtime.errors import StorageError
from kubebots.runtime.schema import parse_bot_config
from tests.runtime.support import RecordingProvider

CTX = BotContext(conversation_id="c1", client_id="tenant-a")


def spec(retention: int | None, **storage: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"backend": "memory", **storage}
    if retention is not None:
        cfg["retentionDays"] = retention
    return {"llm": {"provider": "echo"}, "conversationStorage": cfg}


def write_old_rows(path: Path, bot_id: str, conversation: str, count: int, days: int) -> None:
    """Rows as an earlier run of the bot left them, ``days`` old (the table is the store's)."""
    at = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    with sqlite3.connect(path) as conn:
        for seq in range(1, count + 1):
            role = "user" if seq % 2 else "assistant"
            conn.execute(
                "INSERT INTO kubebots_messages"
                " (bot_id, client_id, conversation_id, seq, role, content, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bot_id, CTX.client_id, conversation, seq, role, f"old{seq}", at),
            )
    conn.close()


async def test_a_bot_forgets_messages_older_than_its_retention(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    storage = {"backend": "sqlite", "path": str(db)}
    configs = {
        "notes": spec(30, **storage),
        "keeper": {"llm": {"provider": "echo"}, "conversationStorage": storage},
    }
    factory = BotFactory(env={}, providers=lambda config, key: RecordingProvider())
    async with BotManager(config_loader=configs.get, factory=factory) as manager:
        keeper = await manager.get_or_create("keeper")
        await keeper.chat("first", CTX)  # creates the table; then older rows appear in it
        write_old_rows(db, "notes", "c1", 4, days=45)
        write_old_rows(db, "notes", "stale", 2, days=31)
        write_old_rows(db, "keeper", "stale", 2, days=400)
        write_old_rows(db, "notes", "recent", 2, days=29)

        notes = await manager.get_or_create("notes")
        assert await notes.chat("hi", CTX) == "rec: hi"

        history = await notes.get_history(CTX)
        assert [(m.seq, m.content) for m in history] == [(5, "hi"), (6, "rec: hi")]
        assert await notes.list_conversations(CTX.client_id) == ["c1", "recent"]
        # A bot without a retention keeps everything, however old.
        assert await keeper.list_conversations(CTX.client_id) == ["c1", "stale"]


async def test_the_prune_runs_at_most_every_interval_and_never_fails_a_turn() -> None:
    class Recording(MemoryConversationStore):
        def __init__(self) -> None:
            super().__init__()
            self.cutoffs: list[datetime] = []
            self.refuse = False

        async def prune(self, bot_id: str, older_than: datetime) -> int:
            self.cutoffs.append(older_than)
            if self.refuse:
                raise StorageError("the database is down")
            return await super().prune(bot_id, older_than)

    start = datetime(2026, 6, 1, tzinfo=UTC)
    now = [start]
    store = Recording()
    config = parse_bot_config(spec(7), bot_id="b")
    bot = DynaBot("b", config, llm=RecordingProvider(), storage=store, clock=lambda: now[0])

    await bot.chat("one", CTX)  # the first stored turn prunes
    now[0] += PRUNE_INTERVAL - timedelta(seconds=1)
    await bot.chat("two", CTX)
    assert store.cutoffs == [start - timedelta(days=7)]
    now[0] += timedelta(seconds=1)
    store.refuse = True
    chunks = [delta async for delta in bot.stream_chat("three", CTX)]
    assert "".join(chunks) == "rec: three"  # stored although the prune failed
    assert len(store.cutoffs) == 2
    assert len(await bot.get_history(CTX)) == 6
    await bot.close()

    config = parse_bot_config(spec(None), bot_id="c")
    without = DynaBot("c", config, llm=RecordingProvider(), storage=store)
    await without.chat("one", CTX)
    assert len(store.cutoffs) == 2


@pytest.mark.parametrize("days", [0, 3651, "soon"])
def test_retention_days_is_validated(days: object) -> None:
    with pytest.raises(ConfigurationError, match="retentionDays"):
        parse_bot_config(
            {**spec(None), "conversationStorage": {"backend": "sqlite", "retentionDays": days}}
        )
