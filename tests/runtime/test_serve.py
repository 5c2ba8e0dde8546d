"""``kubebots serve`` with no settings: the embedded local default, as a real process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_embedded_default(tmp_path: Path) -> None:
    exe = shutil.which("kubebots", path=str(Path(sys.executable).parent))
    assert exe
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--examples", str(ROOT / "examples" / "bots")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        r = httpx.post(
            f"{base}/bots/default:support/chat",
            json={"message": "private-words-42", "conversation_id": "c1"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["response"] == "echo: private-words-42"
        models = httpx.get(f"{base}/v1/models").json()
        assert "default:support" in [m["id"] for m in models["data"]]
        assert (tmp_path / ".kubebots" / "store.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # stopped by SIGINT, after a graceful shutdown
    assert "Application shutdown complete" in err
    assert f"kubebots is serving on {base}" in err
    assert f"curl -s {base}/bots/default:support/chat" in err
    assert "authentication is OFF" in err
    assert "OPENAI_API_KEY is not set" in err
    assert "private-words-42" not in err  # no message content in the logs
