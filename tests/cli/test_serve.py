"""``kubebots serve`` with no settings: the embedded local default, as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from kubebots.runtime import parse_bot_config
from kubebots.runtime.cli.chat import effective_config
from kubebots.runtime.cli.serve import EXAMPLES, try_line
from kubebots.runtime.testing import FakeOpenAIServer

from .support import ROOT, free_port, kubebots_exe


def test_serve_embedded_default(tmp_path: Path) -> None:
    exe = kubebots_exe()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port)],  # the example Bots come with the package
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        r = httpx.post(
            f"{base}/bots/default:support/chat",
            json={"message": "private-words-42", "conversation_id": "c1"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["response"] == "echo: private-words-42"
        models = httpx.get(f"{base}/v1/models").json()
        assert "default:support" in [m["id"] for m in models["data"]]
        assert httpx.get(f"{base}/ui").status_code == 200  # the console, on by default here
        assert (tmp_path / ".kubebots" / "store.db").exists()
        # the example Bots' relative sqlite path lives under the data dir, not the cwd
        assert (tmp_path / ".kubebots" / "conversations.db").exists()
        assert not (tmp_path / "conversations.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # stopped by SIGINT, after a graceful shutdown
    assert "Application shutdown complete" in err
    assert f"kubebots is serving on {base}" in err
    assert f"console: {base}/ui" in err
    assert f"curl -s {base}/bots/default:sales/chat" in err  # the first Bot applied
    assert "authentication is OFF" in err
    assert "OPENAI_API_KEY is not set" in err
    assert "private-words-42" not in err  # no message content in the logs


def test_the_example_bots_are_package_data_and_examples_bots_links_to_them() -> None:
    shipped = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert shipped == ["sales.yaml", "support.yaml", "tools.yaml"]
    linked = ROOT / "examples" / "bots"
    assert linked.is_symlink() and linked.resolve() == (ROOT / "runtime" / "cli" / "bots")


def test_a_port_in_use_is_an_error_before_serving_is_announced(tmp_path: Path) -> None:
    exe = kubebots_exe()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [exe, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: the address is already in use" in proc.stderr
    assert "serving on" not in proc.stderr
    assert not (tmp_path / ".kubebots").exists()  # nothing was set up for a server that can't run


def test_a_keyless_base_url_bot_is_served_by_its_endpoint(tmp_path: Path) -> None:
    """vLLM/Ollama Bots name a baseUrl and no key: the embedded default runs them as they are."""
    exe = kubebots_exe()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_"))}
    bots = tmp_path / "bots"
    bots.mkdir()
    with FakeOpenAIServer() as fake:
        (bots / "local.yaml").write_text(
            "apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata: {name: local, namespace: lab}\n"
            f"spec: {{llm: {{provider: openai, model: llama3, baseUrl: '{fake.base_url}'}}}}\n"
        )
        proc = subprocess.Popen(
            [exe, "serve", "--port", str(port), "--examples", str(bots)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_ready(base, proc)
            r = httpx.post(
                f"{base}/bots/lab:local/chat", json={"message": "hi", "conversation_id": "c1"}
            )
            assert r.status_code == 200, r.text
            assert len(fake.requests) == 1  # answered by the endpoint, not swapped for echo
            assert fake.requests[0]["body"]["model"] == "llama3"
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert "echo" not in err
    assert f"curl -s {base}/bots/lab:local/chat" in err


@pytest.mark.parametrize(
    ("llm", "env", "swapped", "note"),
    [
        ({"provider": "openai", "baseUrl": "http://vllm:8000/v1"}, {}, False, ""),
        (
            {"provider": "openai", "baseUrl": "http://vllm:8000/v1", "apiKeyEnv": "VLLM_KEY"},
            {},
            True,
            "VLLM_KEY is not set",
        ),
        ({"provider": "openai", "apiKeyEnv": "K"}, {"K": "v"}, False, ""),
        ({"provider": "openai"}, {}, True, "OPENAI_API_KEY is not set"),
        (
            {"provider": "openai", "apiKeySecretRef": {"name": "s", "key": "k"}},
            {"OPENAI_API_KEY": "x"},
            True,
            "Kubernetes Secret",
        ),
    ],
)
def test_auto_swaps_for_echo_only_when_the_key_is_not_at_hand(
    llm: dict[str, object], env: dict[str, str], swapped: bool, note: str
) -> None:
    config = parse_bot_config({"llm": {"model": "m", **llm}})
    effective, said = effective_config(config, "auto", env)
    assert (effective.llm.provider == "echo") is swapped
    assert (note in said) if note else said == ""
    assert "--llm config" in said or not swapped
    assert effective_config(config, "config", {})[0] == config


def test_the_try_line_carries_the_key_header_when_auth_is_on() -> None:
    base = "http://127.0.0.1:8000"
    assert "Authorization" not in try_line(base, "default:support", auth=False)
    line = try_line(base, "default:support", auth=True)
    assert '-H "Authorization: Bearer $KUBEBOTS_API_KEY"' in line
    assert f"{base}/bots/default:support/chat" in line
    assert try_line(base, None, auth=True).startswith(f"try:  curl -s {base}/bots -H")


def wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    raise AssertionError(f"{base} not ready within 30 s")
