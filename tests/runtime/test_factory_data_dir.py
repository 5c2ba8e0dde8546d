"""A relative SQLite conversation path lives under the factory's data dir (``--data-dir``), so
two servers with different data directories never share conversations."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebots.runtime import BotContext, BotFactory, BotManager

SPEC = {"conversationStorage": {"backend": "sqlite", "path": "conversations.db"}}
CTX = BotContext(conversation_id="c", client_id="t")


async def test_relative_sqlite_paths_resolve_under_each_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # both servers started from the same working directory
    first, second = tmp_path / "one", tmp_path / "two"
    async with BotManager(factory=BotFactory(env={}, data_dir=first)) as one:
        await (await one.get_or_create("b", SPEC)).chat("only in one", CTX)
        async with BotManager(factory=BotFactory(env={}, data_dir=second)) as two:
            assert await (await two.get_or_create("b", SPEC)).get_history(CTX) == []
    assert (first / "conversations.db").is_file()
    assert not (tmp_path / "conversations.db").exists()


async def test_absolute_paths_and_no_data_dir_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = {"conversationStorage": {"backend": "sqlite", "path": str(tmp_path / "abs.db")}}
    async with BotManager(factory=BotFactory(env={}, data_dir=tmp_path / "data")) as manager:
        await (await manager.get_or_create("a", absolute)).chat("hi", CTX)
    async with BotManager(env={}) as library:  # a library user: the working directory
        await (await library.get_or_create("b", SPEC)).chat("hi", CTX)
    assert (tmp_path / "abs.db").is_file() and (tmp_path / "conversations.db").is_file()
