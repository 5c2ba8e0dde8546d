"""The ``kubebots`` console script, run as users run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bots" / "support.yaml"


def kubebots(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubebots", path=str(Path(os.sys.executable).parent))
    assert exe, "the kubebots console script is not installed"
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def test_chat_with_the_example_falls_back_to_echo_and_persists(tmp_path: Path) -> None:
    done = kubebots("chat", "-f", str(EXAMPLE), cwd=tmp_path, stdin="Hello there\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert "OPENAI_API_KEY is not set" in done.stderr
    assert "bot> echo: Hello there" in done.stdout
    # sqlite conversation storage from the Bot file: the history survives the process
    again = kubebots("chat", "-f", str(EXAMPLE), cwd=tmp_path, stdin="/history\n")
    assert "user: Hello there" in again.stdout
    assert "assistant: echo: Hello there" in again.stdout
    assert (tmp_path / ".kubebots" / "conversations.db").exists()


def test_chat_reports_errors_and_goes_on(tmp_path: Path) -> None:
    long = "x" * 5000  # the example allows 4000 characters
    done = kubebots("chat", "-f", str(EXAMPLE), cwd=tmp_path, stdin=f"{long}\nok\n")
    assert done.returncode == 0
    assert "[error] MessageRejectedError" in done.stdout
    assert "bot> echo: ok" in done.stdout


def test_chat_with_invalid_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("maxTokens", "maxTokenz"))
    done = kubebots("chat", "-f", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "spec.llm.maxTokenz" in done.stderr


def test_validate(tmp_path: Path) -> None:
    ok = kubebots("validate", "-f", str(EXAMPLE), cwd=tmp_path)
    assert ok.returncode == 0 and "bot default/support is valid" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("backend: sqlite", "backend: mongo"))
    done = kubebots("validate", "-f", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "spec.conversationStorage" in done.stderr
    missing = kubebots("validate", "-f", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert kubebots("--version", cwd=tmp_path).stdout.startswith("kubebots ")
    assert kubebots(cwd=tmp_path).returncode == 2
