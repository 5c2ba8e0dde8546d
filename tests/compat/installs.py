"""The third-party clients' environments, installed once and cached outside the repository.

The clients of the compatibility suite keep their dependency trees apart from ours: the npm
``openai`` package under the machine's node, and ``langchain-openai`` + ``litellm`` in a venv of
their own. Both live in ``~/.cache/kubebots-compat/`` (``KUBEBOTS_COMPAT_CACHE`` overrides) in a
directory named after a hash of the pins (``clients/package.json``, ``requirements.txt``) and
the runtime's version, so a changed pin installs afresh and an unchanged one never reinstalls.
A directory counts as installed once its ``.installed`` stamp exists (written last); a failed
install raises with the installer's output and leaves no stamp. An exclusive file lock keeps two
pytest processes from installing into the same directory at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
CLIENTS = HERE / "clients"
PACKAGE_JSON = CLIENTS / "package.json"
REQUIREMENTS = HERE / "requirements.txt"
#: The interpreter of the clients' venv (the project's Python: CI has the same machine kind).
PYTHON = "python3.11"
#: One install may take this long (pip resolves and downloads a few dozen wheels).
INSTALL_TIMEOUT = 900.0
STAMP = ".installed"


class InstallError(RuntimeError):
    """An install step failed; the message carries the command and its output."""


@dataclass(frozen=True)
class Installed:
    """One cached environment: where it is and how long getting it took this time."""

    path: Path
    seconds: float
    fresh: bool  # installed now (False: found in the cache)


def cache_root() -> Path:
    override = os.environ.get("KUBEBOTS_COMPAT_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "kubebots-compat"


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run one install command; its combined output, or :class:`InstallError`."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InstallError(f"{' '.join(command)}: {error}") from error
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise InstallError(f"{' '.join(command)} exited {done.returncode}:\n{output[-4000:]}")
    return output


def tool_version(command: str) -> str:
    """``command --version`` (node, npm): what the machine has, or :class:`InstallError`."""
    if shutil.which(command) is None:
        raise InstallError(f"{command} is not on PATH: the compatibility suite needs it")
    return run([command, "--version"]).strip()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(kind: str, key: str, install: Callable[[Path], None]) -> Installed:
    """The directory ``<cache>/<kind>-<hash(key)>``, made by ``install`` unless stamped."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_root() / f"{kind}-{digest}"
    started = time.monotonic()
    with locked(cache_root() / f"{kind}-{digest}.lock"):
        if (target / STAMP).exists():
            return Installed(target, time.monotonic() - started, fresh=False)
        if target.exists():
            shutil.rmtree(target)  # a half-made install from an interrupted run
        target.mkdir(parents=True)
        install(target)
        (target / STAMP).write_text(key)
    return Installed(target, time.monotonic() - started, fresh=True)


def node_clients() -> Installed:
    """``node_modules`` with the pinned npm ``openai`` (``clients/package.json``)."""
    node = tool_version("node")
    pins = PACKAGE_JSON.read_text()

    def install(target: Path) -> None:
        shutil.copy(PACKAGE_JSON, target / "package.json")
        run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--omit=peer"],
            cwd=target,
        )
        if not (target / "node_modules" / "openai" / "package.json").exists():
            raise InstallError(f"npm install left no node_modules/openai in {target}")

    return cached("node", f"{node}\n{pins}", install)


def python_clients() -> Installed:
    """A venv with the pinned ``requirements.txt`` (langchain-openai, litellm)."""
    python = tool_version(PYTHON)
    pins = REQUIREMENTS.read_text()

    def install(target: Path) -> None:
        run([PYTHON, "-m", "venv", str(target)])
        pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        run([*pip, "install", "--quiet", "-r", str(REQUIREMENTS)])
        run([str(target / "bin" / "python"), "-c", "import langchain_openai, litellm"])

    return cached("py", f"{python}\n{sys.platform}\n{pins}", install)
