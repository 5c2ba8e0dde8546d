"""The ``kubebots`` console script, run as users run it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

from kubebots.runtime.testing import FakeOpenAIServer

from .support import EXAMPLE, kubebots, kubebots_exe


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
    assert missing.returncode == 1 and "nope.yaml: no such file or directory" in missing.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert kubebots("--version", cwd=tmp_path).stdout.startswith("kubebots ")
    assert kubebots(cwd=tmp_path).returncode == 2


BOT = """apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata:
  name: {name}
spec:
  llm:
    provider: echo
{extra}"""


def test_validate_reports_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    (tmp_path / "bots" / "team" / "deep").mkdir(parents=True)
    (tmp_path / "bots" / "ok.yaml").write_text(BOT.format(name="ok", extra=""))
    two = BOT.format(name="a", extra="    temperature: 7\n    modle: x\n")
    two += "---\n" + BOT.format(name="Bad_Name", extra="  systemPromt: hi\n")
    (tmp_path / "bots" / "team" / "two.yaml").write_text(two)
    (tmp_path / "bots" / "team" / "deep" / "broken.yml").write_text("kind: [unclosed\n")
    (tmp_path / "bots" / ".hidden.yaml").write_text("not: read\n")
    (tmp_path / "bots" / "notes.txt").write_text("not a Bot file")
    single = tmp_path / "single.yaml"
    single.write_text(BOT.format(name="single", extra="").replace("kind: Bot", "kind: Bott"))

    flat = kubebots("validate", "-f", "bots", "-f", str(single), cwd=tmp_path)
    assert flat.returncode == 1
    assert "bots/ok.yaml: bot default/ok is valid" in flat.stdout
    assert "two.yaml" not in flat.stdout + flat.stderr  # a subdirectory, without -R
    assert f"{single}:2:1: default/single: kind: kind must be Bot" in flat.stderr

    deep = kubebots("validate", "-R", "-f", "bots", "-f", str(single), cwd=tmp_path)
    assert deep.returncode == 1
    err = deep.stderr.splitlines()
    two_path = "bots/team/two.yaml"
    assert f"{two_path}:8:5: default/a: spec.llm.temperature: " in deep.stderr
    assert f"{two_path}:9:5: default/a: spec.llm.modle: unknown field (check its spelling)" in err
    assert any(
        line.startswith(f"{two_path}:14:3: default/Bad_Name: metadata.name: ") for line in err
    )
    assert f"{two_path}:18:3: default/Bad_Name: spec.systemPromt: unknown field" in deep.stderr
    assert "bots/team/deep/broken.yml:2:1: (yaml): not valid YAML" in deep.stderr
    assert "6 problems in 4 file(s); 1 Bot(s) valid" in err[-1]
    assert "hidden" not in deep.stdout + deep.stderr
    assert "7" not in " ".join(line.split(": ", 1)[1] for line in err if "temperature" in line)


def test_validate_reads_standard_input(tmp_path: Path) -> None:
    done = kubebots("validate", "-f", "-", cwd=tmp_path, stdin=BOT.format(name="piped", extra=""))
    assert done.returncode == 0, done.stderr
    assert "<stdin>: bot default/piped is valid" in done.stdout


def test_chat_commands_help_history_and_unknown(tmp_path: Path) -> None:
    done = kubebots(
        "chat", "-f", str(EXAMPLE), cwd=tmp_path, stdin="/help\n/history\n/nope\nhi\n/history\n"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "you> commands: /help, /new" in out
    assert "(conversation terminal is empty)" in out
    assert "unknown command /nope" in out
    assert "bot> echo: hi" in out
    assert "user: hi" in out and "assistant: echo: hi" in out
    assert "user: /" not in out  # commands are never sent to the bot


def test_chat_says_when_the_model_is_slow(tmp_path: Path) -> None:
    with FakeOpenAIServer(latency=2.5) as fake:
        bot = tmp_path / "slow.yaml"
        bot.write_text(
            "apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata: {name: slow}\n"
            f"spec: {{llm: {{provider: openai, model: m, baseUrl: '{fake.base_url}'}}}}\n"
        )
        done = kubebots("chat", "-f", str(bot), cwd=tmp_path, stdin="hello\n")
    assert done.returncode == 0, done.stderr
    assert "bot> (waiting for the model...)\nbot> " in done.stdout
    assert len(fake.requests) == 1


def test_ctrl_c_at_the_prompt_exits(tmp_path: Path) -> None:
    exe = kubebots_exe()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.Popen(
        [exe, "chat", "-f", str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,  # kept open: the prompt waits for a line that never comes
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        while b"you> " not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
    finally:
        proc.kill()
        proc.wait()
