"""The compatibility suite's fixtures: `kubebots serve` on real uvicorn and the real clients.

The server is the app (``create_app``, API keys on) with ``default:gpt`` on a
:class:`FakeOpenAIServer` that records every request body, so each test checks what reached the
upstream. The third-party clients are installed once and cached (``installs.py``); an install
that fails fails the suite, it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from ..api.app.helpers import default_bots_server
from . import installs

KEY = "key-a-0123456789"
MODEL = "default:gpt"
#: A client run (process start, imports, a few requests) on a loaded 2-core machine.
CLIENT_TIMEOUT = 180.0


@dataclass(frozen=True)
class ClientRunner:
    """Runs one case of a client script against the server; its JSON result."""

    command: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, case: str, *, model: str = MODEL) -> dict[str, Any]:
        done = subprocess.run(
            [*self.command, case],
            env={**self.env, "COMPAT_MODEL": model},
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"{case} exited {done.returncode}:\n{done.stderr[-6000:]}"
        lines = done.stdout.strip().splitlines()
        assert lines, f"{case} printed nothing:\n{done.stderr[-6000:]}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result


@pytest.fixture(scope="session")
def compat_fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def compat_server(
    tmp_path_factory: pytest.TempPathFactory, compat_fake: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    with default_bots_server(tmp_path_factory.mktemp("compat"), compat_fake) as running:
        yield running


@pytest.fixture
def upstream(compat_fake: FakeOpenAIServer) -> FakeOpenAIServer:
    """The fake upstream with nothing recorded yet."""
    compat_fake.reset()
    return compat_fake


def client_env(server: ThreadedServer) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "COMPAT_BASE_URL": server.url + "/v1",
        "COMPAT_API_KEY": KEY,
        # Nothing leaves the machine: no proxy, no model-price download, no telemetry.
        "NO_PROXY": "*",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }


@pytest.fixture(scope="session")
def node_client(compat_server: ThreadedServer) -> ClientRunner:
    installed = installs.node_clients()
    report("npm openai", installed)
    env = {**client_env(compat_server), "NODE_PATH": str(installed.path / "node_modules")}
    return ClientRunner(("node", str(installs.CLIENTS / "openai_node.cjs")), env)


@pytest.fixture(scope="session")
def python_clients() -> Path:
    """The clients' venv (langchain-openai, litellm)."""
    installed = installs.python_clients()
    report("python clients", installed)
    return installed.path / "bin" / "python"


@pytest.fixture(scope="session")
def langchain_client(compat_server: ThreadedServer, python_clients: Path) -> ClientRunner:
    script = installs.CLIENTS / "langchain_client.py"
    return ClientRunner((str(python_clients), str(script)), client_env(compat_server))


@pytest.fixture(scope="session")
def litellm_client(compat_server: ThreadedServer, python_clients: Path) -> ClientRunner:
    script = installs.CLIENTS / "litellm_client.py"
    return ClientRunner((str(python_clients), str(script)), client_env(compat_server))


def report(what: str, installed: installs.Installed) -> None:
    how = "installed" if installed.fresh else "cached"
    print(
        f"\n[compat] {what}: {how} in {installed.seconds:.1f} s ({installed.path})", file=sys.stderr
    )
