"""Start-up cost: what a runtime process imports before it serves (each check in a fresh one)."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_app_does_not_import_the_openai_sdk_until_an_openai_bot_is_built() -> None:
    done = run_python(
        "import sys\n"
        "import kubebots.runtime.api.app\n"
        "from kubebots.runtime.llm import EchoProvider\n"
        "assert 'openai' not in sys.modules, 'openai imported at start-up'\n"
        "from kubebots.runtime.llm import OpenAIProvider\n"
        "assert 'openai' in sys.modules and OpenAIProvider.__name__ == 'OpenAIProvider'\n"
    )
    assert done.returncode == 0, done.stderr


def test_kubebots_serve_parser_does_not_load_the_operator_plugin() -> None:
    done = run_python(
        "import sys\n"
        "from kubebots.runtime.cli import build_parser\n"
        "p = build_parser(load=['serve'])\n"
        "assert 'kopf' not in sys.modules and 'kubernetes' not in sys.modules\n"
        "assert 'operator' in p.format_help()\n"
    )
    assert done.returncode == 0, done.stderr


def test_the_operator_command_is_loaded_when_it_is_invoked() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubebots.runtime.cli", "operator", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--standalone" in done.stdout
