"""The JSON log lines: plain ``extra`` fields are kept, objects are left out (not their repr)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubebots.runtime import BotContext, BotManager
from kubebots.runtime.cli.logs import (
    CONTENT_LOGGERS,
    TRAFFIC_LOGGERS,
    JsonFormatter,
    configure_logging,
)
from kubebots.runtime.testing import FakeOpenAIServer


class Settings:
    def __repr__(self) -> str:
        return "Settings(" + "x" * 2000 + ")"


def test_plain_extras_are_kept_and_objects_left_out() -> None:
    record = logging.makeLogRecord(
        {
            "name": "kopf.objects",
            "levelname": "INFO",
            "msg": "Handler %r succeeded.",
            "args": ("reconcile",),
            "k8s_ref": {"kind": "Bot", "name": "hello", "namespace": "default"},
            "request_id": "abc",
            "settings": Settings(),
        }
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "Handler 'reconcile' succeeded."
    assert entry["k8s_ref"] == {"kind": "Bot", "name": "hello", "namespace": "default"}
    assert entry["request_id"] == "abc"
    assert "settings" not in entry and len(line) < 400


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in (*CONTENT_LOGGERS, *TRAFFIC_LOGGERS)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restore_logging")
async def test_debug_level_never_logs_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With KUBEBOTS_LOG_LEVEL=DEBUG the SQL drivers and the LLM client would print the message
    text (INSERT parameters, request bodies); the floor on their loggers keeps it out."""
    configure_logging("DEBUG")
    content = "CONTENT-never-in-logs-7d1e"
    spec = {
        "llm": {"provider": "openai", "model": "m"},
        "conversationStorage": {"backend": "sqlite", "path": str(tmp_path / "c.db")},
    }
    with FakeOpenAIServer(api_key="sk-test-0123456789abcdef") as fake:
        spec["llm"]["baseUrl"] = fake.base_url  # type: ignore[index]
        env = {"OPENAI_API_KEY": "sk-test-0123456789abcdef"}
        async with BotManager(env=env) as manager:
            bot = await manager.get_or_create("logs", spec)
            await bot.chat(content, BotContext("c", "t"))
            logging.getLogger("kubebots.runtime.test").debug("debug lines are on")
    err = capsys.readouterr().err
    assert "debug lines are on" in err
    assert content not in err
