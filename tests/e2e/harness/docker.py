"""A small typed wrapper around the docker CLI for the e2e harness (standard library only).

    host_setup()                      # tests/e2e/harness/host-setup.sh: packages + dockerd
    docker = Docker()
    image = docker.image("kubebots-e2e/kubebots:dev")          # Image | None
    out = docker.run("kubebots-e2e/kubebots:dev", "--version", options=["--read-only"])
    with docker.start("kubebots-e2e/postgres:15", options=[...]) as c:
        port = c.port(5432)

The client is Debian's docker 20.10 (``/usr/bin/docker``) unless ``KUBEBOTS_E2E_DOCKER`` names
another; ``DOCKER_API_VERSION=1.41`` is set for it, so a newer client also talks to the 20.10
daemon. Every failure raises :class:`DockerError` with the command and its output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .scripts import run_script

HERE = Path(__file__).resolve().parent
HOST_SETUP = HERE / "host-setup.sh"
#: What Debian's dockerd 20.10 speaks.
API_VERSION = "1.41"
#: host-setup.sh may install packages (docker.io, ...) first: minutes on a fresh machine.
HOST_SETUP_TIMEOUT = 20 * 60.0
OUTPUT_TAIL = 40


class DockerError(RuntimeError):
    """A docker command (or host-setup.sh) failed; the message holds its output's tail."""


def tail(text: str, lines: int = OUTPUT_TAIL) -> str:
    return "\n".join(text.splitlines()[-lines:])


def docker_binary() -> str:
    """``$KUBEBOTS_E2E_DOCKER``, else Debian's client ``/usr/bin/docker``, else ``docker``."""
    configured = os.environ.get("KUBEBOTS_E2E_DOCKER")
    if configured:
        return configured
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    found = shutil.which("docker")
    if found is None:
        raise DockerError("no docker client: run tests/e2e/harness/host-setup.sh (as root)")
    return found


def host_setup(timeout: float = HOST_SETUP_TIMEOUT) -> str:
    """Run ``host-setup.sh`` (a no-op in ~0.4 s once done); return its log (stderr)."""
    return run_script(HOST_SETUP, timeout, DockerError).stderr


@dataclass(frozen=True)
class Image:
    """What ``docker image inspect`` says about one image."""

    ref: str
    id: str
    size: int  # bytes, uncompressed (all layers)
    labels: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        return self.size / 1e6


class Docker:
    """``docker`` commands; each returns text or raises :class:`DockerError`."""

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or docker_binary()
        self.env = {**os.environ, "DOCKER_API_VERSION": API_VERSION}

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        try:
            proc = subprocess.run(
                argv,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
        if check and proc.returncode != 0:
            raise DockerError(
                f"`{' '.join(argv)}` failed (exit {proc.returncode}):\n"
                f"{tail(proc.stdout + proc.stderr)}"
            )
        return proc

    # -- images --------------------------------------------------------------------------------

    def image(self, ref: str) -> Image | None:
        """The image ``ref`` (tag or id), or None when there is none."""
        proc = self("image", "inspect", ref, check=False)
        if proc.returncode != 0:
            if "No such image" in proc.stderr:
                return None
            raise DockerError(f"docker image inspect {ref} failed:\n{tail(proc.stderr)}")
        data: dict[str, Any] = json.loads(proc.stdout)[0]
        config: dict[str, Any] = data.get("Config") or {}
        return Image(
            ref=ref,
            id=str(data["Id"]),
            size=int(data["Size"]),
            labels=dict(config.get("Labels") or {}),
            config=config,
        )

    def build(
        self,
        context: Path,
        tag: str,
        *,
        dockerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        log: Path | None = None,
        timeout: float = 30 * 60.0,
    ) -> Image:
        """``docker build`` (the daemon's layer cache applies); output goes to ``log``."""
        args = ["build", "-t", tag]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        return self.run_logged([self.binary, *args, str(context)], tag, log, timeout)

    def run_logged(self, argv: Sequence[str], tag: str, log: Path | None, timeout: float) -> Image:
        """Run a command that makes image ``tag`` (``docker build``, ``make image``), output to
        ``log``; return the image."""
        argv = list(argv)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
        output = proc.stdout + proc.stderr
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(f"$ {' '.join(argv)}\n{output}")
        if proc.returncode != 0:
            where = f" (full log: {log})" if log else ""
            raise DockerError(
                f"`{' '.join(argv)}` failed (exit {proc.returncode}){where}:\n{tail(output)}"
            )
        image = self.image(tag)
        if image is None:
            raise DockerError(f"`{' '.join(argv)}` succeeded but there is no image {tag}")
        return image

    def exported_paths(self, image: str) -> list[str]:
        """Every path in the image's filesystem (``docker export`` of a created container)."""
        import tarfile

        cid = self("create", image).stdout.strip()
        try:
            with subprocess.Popen(
                [self.binary, "export", cid],
                stdout=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=self.env,
            ) as proc:
                assert proc.stdout is not None
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    paths = [member.name for member in tar]
            if proc.returncode != 0:
                raise DockerError(f"docker export {cid} failed (exit {proc.returncode})")
            return paths
        finally:
            self("rm", "-f", cid, check=False)

    # -- containers ----------------------------------------------------------------------------

    def run(
        self,
        image: str,
        *command: str,
        options: Iterable[str] = (),
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``docker run --rm OPTIONS IMAGE COMMAND...`` in the foreground."""
        return self("run", "--rm", *options, image, *command, timeout=timeout, check=check)

    def start(self, image: str, *command: str, options: Iterable[str] = ()) -> Container:
        """``docker run -d``: a running container (a context manager that removes it)."""
        cid = self("run", "-d", *options, image, *command).stdout.strip()
        return Container(self, cid)


class Container:
    """A container started by :meth:`Docker.start`."""

    def __init__(self, docker: Docker, cid: str) -> None:
        self.docker = docker
        self.id = cid

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def inspect(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.docker("inspect", self.id).stdout)[0]
        return data

    @property
    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def port(self, container_port: int, proto: str = "tcp") -> int:
        """The host port published for ``container_port``."""
        ports = self.inspect()["NetworkSettings"]["Ports"] or {}
        bindings = ports.get(f"{container_port}/{proto}") or []
        if not bindings:
            raise DockerError(f"container {self.id[:12]} publishes no {container_port}/{proto}")
        return int(bindings[0]["HostPort"])

    def logs(self) -> str:
        proc = self.docker("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *command: str, options: Iterable[str] = ()) -> str:
        return self.docker("exec", *options, self.id, *command).stdout

    def stop(self, timeout: int = 10) -> float:
        """``docker stop`` (the image's STOPSIGNAL, then SIGKILL); returns the seconds it took."""
        t0 = time.monotonic()
        self.docker("stop", "-t", str(timeout), self.id, timeout=timeout + 60.0)
        return time.monotonic() - t0

    def start(self) -> None:
        self.docker("start", self.id)

    def exit_code(self) -> int:
        return int(self.inspect()["State"]["ExitCode"])

    def remove(self) -> None:
        self.docker("rm", "-f", "-v", self.id, check=False)
