"""Build the container images the e2e node runs; each build is skipped when nothing changed.

    python3 -m tests.e2e.harness.images                    # all four, from the repository root
    python3 -m tests.e2e.harness.images postgres kubebots  # some (their base comes along)
    python3 -m tests.e2e.harness.images --no-host-setup    # docker is known to be up

No image can be pulled where the tests run, so the upstream images are replaced by stand-ins
made from Debian bookworm packages and the binaries built by ``fetch-and-build.sh``:

=========  ===================================  =========================================
name       tag                                  what
=========  ===================================  =========================================
python     ``kubebots-e2e/python:3.11-slim``    stand-in for python:3.11-slim: debootstrap
                                                minbase + python3, venv, ca-certificates,
                                                imported with ``docker import``
pause      ``kubebots-e2e/pause:3.4.1``         FROM scratch + the static pause binary
postgres   ``kubebots-e2e/postgres:15``         stand-in for postgres:15 (postgres-image/)
kubebots   ``kubebots-e2e/kubebots:dev``        the product image: ``make image`` on the
                                                python stand-in
=========  ===================================  =========================================

The python stand-in holds the HOST's CA bundle, with PIP_CERT / SSL_CERT_FILE /
REQUESTS_CA_BUNDLE pointing at it, so pip inside ``docker build`` reaches the package index from
this network: that is test-only and never part of the shipped Dockerfile.

Caching: each stand-in carries a label with the hash of its inputs (recipe, Debian mirror, CA
bundle, pause binary, Dockerfile, entrypoint, base image id); when the tagged image has the
expected label the build is skipped. The debootstrap root filesystem is kept as a tarball (and its
.debs) under ``${KUBEBOTS_E2E_CACHE:-~/.cache/kubebots-e2e}/images/``. The kubebots image is always
``make image`` (docker's layer cache makes an unchanged tree a matter of seconds).

Runs as root (debootstrap, dockerd); calls host-setup.sh first unless told not to, and
fetch-and-build.sh when the pause binary is not in the cache. Standard library only. Progress goes
to stderr; stdout is one line per image: ``NAME TAG ID SIZE_BYTES built|cached SECONDS``.
Environment: KUBEBOTS_E2E_CACHE, KUBEBOTS_E2E_DEBIAN_MIRROR (default deb.debian.org/debian),
KUBEBOTS_E2E_DEBIAN_SECURITY_MIRROR, KUBEBOTS_E2E_DOCKER.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness.docker import Docker, DockerError, Image, host_setup, tail

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
FETCH_AND_BUILD = HERE / "fetch-and-build.sh"
POSTGRES_CONTEXT = HERE / "postgres-image"
K8S_VERSION = "1.20.2"
LABEL = "io.kubebots.e2e.inputs"

PYTHON_TAG = "kubebots-e2e/python:3.11-slim"
PAUSE_TAG = "kubebots-e2e/pause:3.4.1"
POSTGRES_TAG = "kubebots-e2e/postgres:15"
KUBEBOTS_TAG = "kubebots-e2e/kubebots:dev"
TAGS = {
    "python": PYTHON_TAG,
    "pause": PAUSE_TAG,
    "postgres": POSTGRES_TAG,
    "kubebots": KUBEBOTS_TAG,
}
NAMES = tuple(TAGS)
DEPENDS = {"python": (), "pause": (), "postgres": ("python",), "kubebots": ("python",)}

SUITE = "bookworm"
#: What python:3.11-slim has that matters to us: `python`, `python -m venv` with pip, CA certs.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
#: Bump when the root filesystem recipe below changes (it keys the cached tarball).
ROOTFS_RECIPE = "1"
HOST_CA_IN_IMAGE = "/usr/local/share/kubebots-e2e/host-ca-certificates.crt"
#: Passed from the host into the stand-in's ENV when set (a package index mirror, ...).
PIP_ENV_FROM_HOST = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST")

PAUSE_DOCKERFILE = """\
# The pause container of kubelet's pod sandboxes: the static binary fetch-and-build.sh builds
# from the Kubernetes tree's build/pause (the upstream image is the same binary, FROM scratch).
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
"""

# debootstrap leaves these in the root filesystem; the image has no use for them.
TRIM = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*.log",
    "var/log/apt/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "usr/share/doc/*/*",  # copyright files are put back below
    "debootstrap",
)

# As in Debian's slim images: later `apt-get install`s (the postgres stand-in) stay small too.
DPKG_SLIM = """\
# kubebots e2e stand-in base: no docs, man pages or translations (copyright files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
APT_CLEAN = """\
// kubebots e2e stand-in base: no package caches or translations left in image layers.
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
"""

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("KUBEBOTS_E2E_CACHE") or Path.home() / ".cache" / "kubebots-e2e")


def mirror() -> str:
    return os.environ.get("KUBEBOTS_E2E_DEBIAN_MIRROR") or "http://deb.debian.org/debian"


def security_mirror() -> str:
    default = "http://deb.debian.org/debian-security"
    return os.environ.get("KUBEBOTS_E2E_DEBIAN_SECURITY_MIRROR") or default


def host_ca_bundle() -> Path:
    for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    if not default.is_file():
        raise DockerError(f"no host CA bundle: {default} is missing and PIP_CERT is not set")
    return default


def _sha256(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Built:
    """One image, and whether this call built it or found it up to date."""

    name: str
    image: Image
    cached: bool
    seconds: float

    def line(self) -> str:
        state = "cached" if self.cached else "built"
        return (
            f"{self.name} {self.image.ref} {self.image.id} {self.image.size} {state} "
            f"{self.seconds:.1f}"
        )


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Images:
    """Builds (or finds) the images; one instance per run."""

    def __init__(self, docker: Docker | None = None, log: Log = _stderr) -> None:
        self.docker = docker or Docker()
        self.log = log
        self.root = cache_dir() / "images"
        self.logs = self.root / "logs"
        self.built: dict[str, Built] = {}

    # -- the entry point ------------------------------------------------------------------------

    def ensure(self, names: Sequence[str] = NAMES) -> dict[str, Built]:
        wanted: list[str] = []
        for name in names:
            if name not in TAGS:
                raise ValueError(f"unknown image {name!r} (known: {', '.join(NAMES)})")
            for dep in (*DEPENDS[name], name):
                if dep not in wanted:
                    wanted.append(dep)
        with _lock(self.root / ".lock"):
            for name in wanted:
                if name not in self.built:
                    self.built[name] = self._timed(name)
        return {name: self.built[name] for name in wanted}

    def _timed(self, name: str) -> Built:
        t0 = time.monotonic()
        build = {
            "python": self._python,
            "pause": self._pause,
            "postgres": self._postgres,
            "kubebots": self._kubebots,
        }[name]
        image, cached = build()
        done = Built(name, image, cached, time.monotonic() - t0)
        how = "up to date" if cached else "built"
        self.log(
            f"{image.ref}: {how} in {done.seconds:.1f}s, {image.id[7:19]}, {image.size_mb:.1f} MB"
        )
        return done

    def _current(self, tag: str, inputs: str) -> Image | None:
        image = self.docker.image(tag)
        if image is not None and image.labels.get(LABEL) == inputs:
            return image
        return None

    # -- python: debootstrap + docker import -----------------------------------------------------

    def _python_env(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            # test-only: the host's CA bundle, for pip (and Python's ssl) behind this network
            "PIP_CERT": HOST_CA_IN_IMAGE,
            "SSL_CERT_FILE": HOST_CA_IN_IMAGE,
            "REQUESTS_CA_BUNDLE": HOST_CA_IN_IMAGE,
        }
        for name in PIP_ENV_FROM_HOST:
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def _python(self) -> tuple[Image, bool]:
        ca = host_ca_bundle().read_bytes()
        rootfs_key = _sha256(
            ROOTFS_RECIPE,
            SUITE,
            mirror(),
            security_mirror(),
            ",".join(BASE_PACKAGES),
            repr(TRIM),
            DPKG_SLIM,
            APT_CLEAN,
            platform.machine(),
            ca,
        )
        env = self._python_env()
        inputs = _sha256(rootfs_key, json.dumps(env, sort_keys=True))
        current = self._current(PYTHON_TAG, inputs)
        if current is not None:
            return current, True
        tarball = self.root / f"python-3.11-slim-rootfs-{rootfs_key[:16]}.tar"
        if not tarball.is_file():
            self._debootstrap(tarball, ca)
        else:
            self.log(f"using the cached root filesystem {tarball}")
        changes = [f"ENV {key}={value}" for key, value in env.items()]
        changes += ['CMD ["python3"]', f"LABEL {LABEL}={inputs}"]
        args = ["import", "--message", "kubebots e2e stand-in for python:3.11-slim"]
        for change in changes:
            args += ["--change", change]
        self.log(f"docker import {tarball.name} as {PYTHON_TAG}")
        self.docker(*args, str(tarball), PYTHON_TAG, timeout=600)
        image = self.docker.image(PYTHON_TAG)
        if image is None or image.labels.get(LABEL) != inputs:
            raise DockerError(f"docker import did not produce {PYTHON_TAG} with its label")
        return image, False

    def _debootstrap(self, tarball: Path, ca: bytes) -> None:
        if os.geteuid() != 0:
            raise DockerError("debootstrap needs root: run as root (sudo)")
        if shutil.which("debootstrap") is None:
            raise DockerError("debootstrap is missing: run tests/e2e/harness/host-setup.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        debs = self.root / "debs"
        debs.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=self.root))
        rootfs = work / "rootfs"
        log = self.logs / "debootstrap.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            f"--cache-dir={debs}",
            "--components=main",
            SUITE,
            str(rootfs),
            mirror(),
        ]
        self.log(f"{' '.join(argv)} (a few minutes; log: {log})")
        t0 = time.monotonic()
        try:
            with log.open("w") as out:
                proc = subprocess.run(
                    argv,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            if proc.returncode != 0:
                inner = rootfs / "debootstrap" / "debootstrap.log"
                detail = tail(inner.read_text(errors="replace")) if inner.is_file() else ""
                raise DockerError(
                    f"debootstrap failed (exit {proc.returncode}; log: {log}):\n"
                    f"{tail(log.read_text(errors='replace'))}\n{detail}"
                )
            self.log(f"debootstrap done in {time.monotonic() - t0:.0f}s")
            self._configure_rootfs(rootfs, ca)
            tmp = tarball.with_suffix(".tar.tmp")
            subprocess.run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "--one-file-system",
                    "--exclude=./dev/*",
                    "--exclude=./proc/*",
                    "--exclude=./sys/*",
                    "-C",
                    str(rootfs),
                    "-cf",
                    str(tmp),
                    ".",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
            )
            tmp.replace(tarball)
            self.log(f"root filesystem: {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
            for old in self.root.glob("python-3.11-slim-rootfs-*.tar"):
                if old != tarball:
                    old.unlink()
        finally:
            _remove_tree(work)

    def _configure_rootfs(self, rootfs: Path, ca: bytes) -> None:
        python = rootfs / "usr" / "bin" / "python"
        if not python.exists() or not (rootfs / "usr" / "lib" / "python3.11" / "venv").is_dir():
            raise DockerError("debootstrap produced no python / python3.11 venv module")
        (rootfs / "etc/dpkg/dpkg.cfg.d/kubebots-e2e-slim").write_text(DPKG_SLIM)
        (rootfs / "etc/apt/apt.conf.d/kubebots-e2e-clean").write_text(APT_CLEAN)
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {mirror()} {SUITE} main\n"
            f"deb {mirror()} {SUITE}-updates main\n"
            f"deb {security_mirror()} {SUITE}-security main\n"
        )
        bundle = rootfs / HOST_CA_IN_IMAGE.lstrip("/")
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(ca)
        bundle.chmod(0o644)
        # copyright files, put back after the trim
        keep = {p: p.read_bytes() for p in (rootfs / "usr/share/doc").glob("*/copyright")}
        for pattern in TRIM:
            for path in rootfs.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    _remove_tree(path)
                else:
                    path.unlink(missing_ok=True)
        for path, data in keep.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        # docker provides these per container; the host's must not stay in the image
        for name in ("etc/resolv.conf", "etc/hostname", "etc/machine-id"):
            path = rootfs / name
            if path.exists() or path.is_symlink():
                path.unlink()
            path.write_text("")

    # -- pause -----------------------------------------------------------------------------------

    def _pause_binary(self) -> Path:
        binary = cache_dir() / f"k8s-{K8S_VERSION}" / "bin" / "pause"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        self.log(f"{binary} is missing: running {FETCH_AND_BUILD.name} (minutes the first time)")
        proc = subprocess.run(
            ["bash", str(FETCH_AND_BUILD)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60 * 60,
            check=False,
        )
        if proc.returncode != 0:
            raise DockerError(
                f"{FETCH_AND_BUILD.name} failed (exit {proc.returncode}):\n"
                f"{tail(proc.stdout + proc.stderr)}"
            )
        for line in proc.stdout.splitlines():
            name, _, path = line.partition("=")
            if name == "pause":
                return Path(path)
        raise DockerError(f"{FETCH_AND_BUILD.name} printed no pause=PATH line")

    def _pause(self) -> tuple[Image, bool]:
        binary = self._pause_binary()
        inputs = _sha256(PAUSE_DOCKERFILE, binary.read_bytes())
        current = self._current(PAUSE_TAG, inputs)
        if current is not None:
            return current, True
        with tempfile.TemporaryDirectory(prefix="pause-context-") as tmp:
            context = Path(tmp)
            (context / "Dockerfile").write_text(PAUSE_DOCKERFILE)
            shutil.copy2(binary, context / "pause")
            (context / "pause").chmod(0o755)
            image = self.docker.build(
                context, PAUSE_TAG, labels={LABEL: inputs}, log=self.logs / "pause.log"
            )
        return image, False

    # -- postgres --------------------------------------------------------------------------------

    def _postgres(self) -> tuple[Image, bool]:
        base = self.built["python"].image
        files = sorted(p for p in POSTGRES_CONTEXT.iterdir() if p.is_file())
        inputs = _sha256(base.id, *(f"{p.name}\0{p.read_text()}" for p in files))
        current = self._current(POSTGRES_TAG, inputs)
        if current is not None:
            return current, True
        self.log(f"docker build {POSTGRES_TAG} (apt-get install postgresql-15 inside)")
        image = self.docker.build(
            POSTGRES_CONTEXT,
            POSTGRES_TAG,
            build_args={"BASE_IMAGE": PYTHON_TAG},
            labels={LABEL: inputs},
            log=self.logs / "postgres.log",
        )
        return image, False

    # -- kubebots --------------------------------------------------------------------------------

    def _kubebots(self) -> tuple[Image, bool]:
        before = self.docker.image(KUBEBOTS_TAG)
        argv = [
            "make",
            "-C",
            str(REPO),
            "--no-print-directory",
            "image",
            f"IMAGE={KUBEBOTS_TAG}",
            f"PYTHON_IMAGE={PYTHON_TAG}",
            f"DOCKER={self.docker.binary}",
        ]
        self.log(f"{' '.join(argv)} (log: {self.logs / 'kubebots.log'})")
        image = self.docker.run_logged(argv, KUBEBOTS_TAG, self.logs / "kubebots.log", 30 * 60)
        if before is not None and before.id != image.id:
            # the replaced image (and its layers) would stay behind untagged; a container still
            # using it keeps it (rmi refuses, and that is fine)
            self.docker("rmi", before.id, check=False)
        return image, before is not None and before.id == image.id


def _remove_tree(path: Path) -> None:
    """``rm -rf`` that first unmounts anything (proc, sys, ...) left mounted below ``path``."""
    resolved = str(path.resolve())
    mounts: list[str] = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == resolved or point.startswith(resolved + "/"):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)


def ensure_images(
    names: Sequence[str] = NAMES, *, setup_host: bool = True, log: Log = _stderr
) -> Mapping[str, Built]:
    """host-setup.sh (unless ``setup_host`` is false), then the images ``names`` (+ their base)."""
    if setup_host:
        host_setup()
    return Images(log=log).ensure(names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.e2e.harness.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)}")
    parser.add_argument(
        "--no-host-setup", action="store_true", help="do not run host-setup.sh first"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    t0 = time.monotonic()
    try:
        built = ensure_images(args.names or NAMES, setup_host=not args.no_host_setup)
    except DockerError as exc:
        print(f"[images] ERROR: {exc}", file=sys.stderr)
        return 1
    for item in built.values():
        print(item.line())
    _stderr(f"done in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
