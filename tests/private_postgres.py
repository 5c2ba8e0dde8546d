"""A PostgreSQL server of a test's own: ``initdb`` + ``pg_ctl`` on a free port and socket dir.

For tests that start or stop the database (the shared server on 127.0.0.1:5432 is never
touched). As root, the server runs as the ``postgres`` user (PostgreSQL refuses root). Trust
authentication on 127.0.0.1 only: a password in the URL is accepted and ignored, so tests can
check that no message ever quotes it.

    with PrivatePostgres() as pg:   # initialised, not started
        url = pg.url(password="x")
        pg.start(); ...; pg.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path:
    """The directory of ``initdb``/``pg_ctl`` (on PATH, else Debian's versioned directory)."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise AssertionError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return versions[-1].parent


class PrivatePostgres:
    """Its files live in a temporary directory of its own (pytest's ``tmp_path`` is not
    reachable by the ``postgres`` user), removed on exit."""

    def __init__(self, *, port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kubebots-pg-"))
        self.data = self.dir / "data"
        self.sockets = self.dir / "sockets"
        self.log = self.dir / "postgres.log"
        self.port = port or _free_port()
        self.bindir = _bindir()
        self._as_postgres = os.geteuid() == 0
        self.running = False

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError(
                f"{' '.join(argv[:2])} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"\n{tail}"
            )

    def init(self) -> Self:
        self.dir.chmod(0o755)
        self.sockets.mkdir()
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (self.dir, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=50"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def __enter__(self) -> Self:
        return self.init()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
