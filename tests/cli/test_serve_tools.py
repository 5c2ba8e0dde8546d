"""The example Bot with tools (``examples/bots/tools.yaml``), served offline by ``kubebots
serve`` as ``make run`` does: its HTTP tools call the runtime itself, one needs approval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from kubebots.runtime.cli.serve import EXAMPLES

from .support import free_port, kubebots_exe
from .test_serve import wait_ready

BOT = "default:ops"


def test_the_example_tools_bot_runs_its_tools_and_waits_for_approval(tmp_path: Path) -> None:
    exe = kubebots_exe()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bots = tmp_path / "bots"
    bots.mkdir()
    # the example as shipped, on this test's port instead of 8000
    text = (EXAMPLES / "tools.yaml").read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    (bots / "tools.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--examples", str(bots)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def chat(**body: object) -> dict[str, object]:
        r = httpx.post(f"{base}/bots/{BOT}/chat", json={"conversation_id": "c1", **body})
        assert r.status_code == 200, r.text
        return dict(r.json())

    try:
        wait_ready(base, proc)
        reply = chat(message="call runtime_readiness")
        [run] = reply["tool_calls"]  # type: ignore[misc]
        assert run["name"] == "runtime_readiness" and not run["is_error"], run
        assert json.loads(run["content"])["status"] == "ready"
        assert str(reply["response"]).startswith("echo: ")

        reply = chat(message=f'call unload_bot {{"bot_id": "{BOT}"}}')
        assert reply["status"] == "awaiting_approval"
        [pending] = reply["pending_approvals"]  # type: ignore[misc]
        assert BOT in httpx.get(f"{base}/bots").json()["active"]  # nothing ran yet
        reply = chat(approvals=[{"id": pending["id"], "approved": True}])
        [run] = reply["tool_calls"]  # type: ignore[misc]
        assert not run["is_error"], run  # the bot unloaded itself: it drains, then closes
        assert BOT not in httpx.get(f"{base}/bots").json()["active"]
        assert chat(message="still there?")["response"] == "echo: still there?"  # rebuilt
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
