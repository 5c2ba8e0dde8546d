"""Helpers shared by the CLI's tests: the ``kubebots`` console script, run as users run it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bots" / "support.yaml"


def kubebots_exe() -> str:
    """The installed ``kubebots`` console script of this environment."""
    exe = shutil.which("kubebots", path=str(Path(sys.executable).parent))
    assert exe, "the kubebots console script is not installed"
    return exe


def kubebots(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kubebots ARGS`` to completion (no OpenAI key from the test's environment)."""
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(
        [kubebots_exe(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
