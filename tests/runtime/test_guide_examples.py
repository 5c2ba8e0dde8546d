"""The guide's BotManager examples run as written (import line changed), against a real wire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kubebots.runtime.testing import FakeOpenAIServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "guide"
PROMPT = "You are the support bot from YAML."
DB_PROMPT = "You are the support bot from PostgreSQL."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="sk-guide-test") as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path, postgres_url: str) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "support-bot.yaml").write_text(
        "llm: {provider: openai, model: gpt-4o}\n"
        "conversation_storage: {backend: memory}\n"
        f"system_prompt: {PROMPT}\n"
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bot_configs (bot_id text PRIMARY KEY, config text)"
        )
        conn.execute(
            "INSERT INTO bot_configs VALUES ('support-bot', %s) "
            "ON CONFLICT (bot_id) DO UPDATE SET config = excluded.config",
            (json.dumps({"llm": {"provider": "echo"}, "system_prompt": DB_PROMPT}),),
        )
    return tmp_path


def run_example(name: str, cwd: Path, fake: FakeOpenAIServer, postgres_url: str) -> str:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-guide-test",
        "OPENAI_BASE_URL": fake.base_url,
        "KUBEBOTS_GUIDE_DB": postgres_url,
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_basic_usage(workdir: Path, fake: FakeOpenAIServer, postgres_url: str) -> None:
    # The guide's config names no base URL: OPENAI_BASE_URL is honoured only when the
    # environment sets it explicitly, as here, so the real client talks to our fake server.
    fake.reset()
    out = run_example("basic_usage.py", workdir, fake, postgres_url)
    assert "response: [gpt-4o] You are a helpful customer support assistant. | Hello" in out
    assert fake.requests[-1]["authorization"] == "Bearer sk-guide-test"


def test_three_loaders(workdir: Path, fake: FakeOpenAIServer, postgres_url: str) -> None:
    out = run_example("loaders.py", workdir, fake, postgres_url)
    assert f"function loader: {PROMPT}" in out
    assert f"async loader: {DB_PROMPT}" in out
    assert f"class loader: {PROMPT}" in out


def test_lifecycle(workdir: Path, fake: FakeOpenAIServer, postgres_url: str) -> None:
    out = run_example("lifecycle.py", workdir, fake, postgres_url)
    assert "Active bots: ['support-bot']" in out
    assert "Total bots: 1" in out
    assert "Bot removed: True" in out
    assert "Reloaded: support-bot -> ['support-bot']" in out
    assert "After clear_all: 0" in out
