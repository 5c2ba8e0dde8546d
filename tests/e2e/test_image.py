"""The container images, for real: the kubebots image and the stand-ins the e2e node runs.

The images are built by ``tests/e2e/harness/images.py`` (after ``host-setup.sh``: the Debian
packages and a docker daemon): minutes the first time on a machine, seconds after that. Nothing
is skipped: without docker (or root to set it up) these tests fail, saying why.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from tests.e2e.harness.docker import Container, Docker, Image, host_setup
from tests.e2e.harness.images import (
    KUBEBOTS_TAG,
    PAUSE_TAG,
    POSTGRES_TAG,
    PYTHON_TAG,
    Built,
    ensure_images,
)

REPO = Path(__file__).resolve().parents[2]
#: The kubebots image, uncompressed: the python stand-in (~124 MB) + the virtualenv (~165 MB:
#: 289 MB in all in 2026-12, after the MCP SDK (httpx2, jsonschema, pyjwt: ~32 MB, issue 17) and
#: OpenTelemetry's SDK and OTLP exporter (protobuf: ~6 MB, issue 18) joined the 251 MB before);
#: the margin is for dependency updates, not for a regression.
MAX_KUBEBOTS_MB = 305
SITE = "opt/kubebots/lib/python3.11/site-packages"
PG_USER = "kubebots"
PG_DB = "kubebots"
PGDATA = "/var/lib/postgresql/data/pgdata"

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float, logs: Container) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if not logs.running:
            raise AssertionError(f"{what}: the container exited\n{logs.logs()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}\n{logs.logs()[-4000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def docker() -> Docker:
    """host-setup.sh (packages + dockerd; raises with its output when that fails), the client."""
    host_setup()
    return Docker()


@pytest.fixture(scope="module")
def images(docker: Docker) -> Mapping[str, Built]:
    """The python stand-in, the postgres stand-in and the kubebots image."""
    built = ensure_images(("python", "postgres", "kubebots"), setup_host=False)
    for item in built.values():
        print(item.line())
    return built


@pytest.fixture(scope="module")
def kubebots(images: Mapping[str, Built]) -> Image:
    return images["kubebots"].image


@pytest.fixture(scope="module")
def postgres(images: Mapping[str, Built]) -> Image:
    return images["postgres"].image


# -- the kubebots image ------------------------------------------------------------------------


def test_sizes_are_reported(
    images: Mapping[str, Built], capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {item.image.ref: item.image.size_mb for item in images.values()}
    with capsys.disabled():
        print()
        for item in images.values():
            state = "cached" if item.cached else "built"
            print(
                f"  {item.image.ref:<34} {item.image.id[7:19]}  {item.image.size_mb:7.1f} MB"
                f"  ({state} in {item.seconds:.1f}s)"
            )
    assert set(sizes) == {PYTHON_TAG, POSTGRES_TAG, KUBEBOTS_TAG}
    assert sizes[KUBEBOTS_TAG] < MAX_KUBEBOTS_MB, f"the kubebots image is {sizes[KUBEBOTS_TAG]} MB"
    assert sizes[PYTHON_TAG] < sizes[KUBEBOTS_TAG]


def test_kubebots_runs_as_10001_on_a_read_only_root(docker: Docker, kubebots: Image) -> None:
    assert kubebots.config["User"] == "10001:10001"
    assert kubebots.config["Entrypoint"] == ["kubebots"]
    assert kubebots.config["Cmd"] == ["serve"]
    out = docker.run(KUBEBOTS_TAG, "--version", options=["--read-only"]).stdout
    assert out.strip() == "kubebots 0.1.0"
    out = docker.run(
        KUBEBOTS_TAG,
        "-c",
        "id -u; id -g; touch /opt/kubebots/x 2>/dev/null && echo writable || echo read-only",
        options=["--read-only", "--entrypoint", "sh"],
    ).stdout
    assert out.split() == ["10001", "10001", "read-only"]


def test_kubebots_serve_answers_health_ready_and_chat(docker: Docker, kubebots: Image) -> None:
    options = [
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/var/lib/kubebots:uid=10001,gid=10001,mode=0700",
        "-e",
        "KUBEBOTS_HOST=0.0.0.0",
        "-v",
        f"{REPO / 'examples' / 'bots'}:/examples:ro",
        "-p",
        "127.0.0.1::8000",
    ]
    with docker.start(KUBEBOTS_TAG, "serve", "--examples", "/examples", options=options) as c:
        url = f"http://127.0.0.1:{c.port(8000)}"

        def status(path: str) -> int | None:
            try:
                return httpx.get(url + path, timeout=2).status_code
            except httpx.HTTPError:
                return None

        assert wait_for(lambda: status("/healthz"), "/healthz answers", 60, c) == 200
        wait_for(lambda: status("/readyz") == 200, "/readyz is 200", 60, c)
        reply = httpx.post(
            f"{url}/bots/default:support/chat",
            json={"message": "Hello from a container", "conversation_id": "c1"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert "Hello from a container" in reply.text  # the offline echo LLM: no key given
        assert c.exec("cat", "/proc/1/comm").strip() == "kubebots"
        seconds = c.stop(timeout=20)
        assert c.exit_code() != 137, f"SIGTERM did not stop it (killed after {seconds:.1f}s)"
        assert seconds < 15, c.logs()


def test_kubebots_image_holds_no_build_tools_nor_repo_files(
    docker: Docker, kubebots: Image
) -> None:
    paths = docker.exported_paths(KUBEBOTS_TAG)
    assert "opt/kubebots/bin/kubebots" in paths
    names = {p.rstrip("/") for p in paths}
    tool = re.compile(
        r"^usr/(local/)?bin/((x86_64|aarch64)-linux-gnu-)?(gcc|g\+\+|cc|c\+\+|cpp|make|ld|as)"
        r"(-[0-9.]+)?$"
    )
    tools = sorted(p for p in names if tool.match(p))
    assert not tools, f"build tools in the image: {tools}"
    forbidden = re.compile(
        r"(^|/)\.git(/|$)"  # a repository
        r"|^src(/|$)"  # the build stage's work directory
        r"|^root/\.cache(/|$)|(^|/)\.cache/pip(/|$)"  # pip caches
        r"|^opt/kubebots/lib/python3\.11/site-packages/kubebots/(?!(runtime|operator)(/|$))"
    )
    bad = sorted(p for p in names if forbidden.search(p))
    assert not bad, f"unexpected files in the image: {bad[:20]}"
    # the shipped virtualenv has no installer nor build backend (the Dockerfile's `deps` stage)
    installers = re.compile(
        rf"^opt/kubebots/bin/(pip|pip3|pip3\.11|wheel)$"
        rf"|^{SITE}/(pip|setuptools|wheel|pkg_resources|_distutils_hack)([-_.].*)?(/|$)"
        rf"|^{SITE}/distutils-precedence\.pth$"
    )
    found = sorted(p for p in names if installers.search(p))
    assert not found, f"pip/setuptools/wheel in the virtualenv: {found[:20]}"
    # nor what its dependencies ship but never run (see the Dockerfile for each)
    unused = re.compile(
        rf"^{SITE}/kubernetes/aio(/|$)"
        rf"|^{SITE}/.*/(tests|_tests)(/|$)|^{SITE}/[^/]+-stubs(/|$)"
        rf"|^{SITE}/(?!kubebots/).*/(test_[^/]*|[^/]*_test)(\.cpython-311)?\.pyc?$"
        rf"|^{SITE}/.*\.(pyx|pxd|pxi|pyi|c|h)$"
    )
    found = sorted(p for p in names if unused.search(p))
    assert not found, f"tests, sources or stubs of dependencies in the image: {found[:20]}"
    # none of the repository's tests/ or bench/ files, wherever they might have been copied
    ours = {
        str(p.relative_to(REPO))
        for top in ("tests", "bench")
        for p in (REPO / top).rglob("*.py")
        if "__pycache__" not in p.parts and p.name != "__init__.py"  # a generic name
    }
    copied = sorted(
        p for p in names for m in re.finditer(r"(?:^|/)((?:tests|bench)/.*)", p) if m[1] in ours
    )
    assert not copied, f"repository test/bench files in the image: {copied[:20]}"
    # only the installed package: no editable install pointing at a source tree
    assert not [p for p in names if p.endswith(".egg-link") or "__editable__" in p]


IMPORT_ALL = """
import importlib, pkgutil, sys
import kubebots.operator, kubebots.runtime
names = sys.argv[1:]
for pkg in (kubebots.runtime, kubebots.operator):
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
              if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_kubebots_imports_only_compiled_code_on_a_read_only_root(
    docker: Docker, kubebots: Image
) -> None:
    """Every module of kubebots and the libraries it runs on loads from a .pyc: nothing can be
    compiled and kept on the read-only root filesystem of a pod, so a missing or stale .pyc
    (the stdlib's included: python:3.11-slim ships none) is paid for at every start.
    Importing every kubebots module also proves nothing it imports was trimmed away."""
    libraries = [
        *("uvloop", "httptools", "uvicorn", "fastapi", "prometheus_client", "yaml"),
        *("psycopg", "psycopg_pool", "aiosqlite", "openai", "kopf"),
        *("kubernetes", "kubernetes.client", "kubernetes.config", "kubernetes.watch"),
    ]
    proc = docker.run(
        KUBEBOTS_TAG,
        "-v",
        "-c",
        IMPORT_ALL,
        *libraries,
        options=["--read-only", "--entrypoint", "python"],
    )
    assert int(proc.stdout.split()[-1]) > len(libraries) + 50, proc.stdout
    loaded = re.findall(r"^# code object from '?([^'\s]+)'?$", proc.stderr, re.M)
    assert len(loaded) > 1000, proc.stderr[-2000:]
    from_source = [path for path in loaded if not path.endswith(".pyc")]
    assert not from_source, f"compiled at import (no valid .pyc): {from_source[:20]}"
    # kubernetes.aio is not in the image (the Dockerfile drops it): kubebots never uses it
    sources = docker.run(
        KUBEBOTS_TAG,
        "-c",
        f"grep -rlE 'kubernetes\\.aio|from kubernetes import .*aio' /{SITE}/kubebots || true",
        options=["--entrypoint", "sh"],
    ).stdout.split()
    assert not sources, f"kubebots uses kubernetes.aio, which the image leaves out: {sources}"


# -- the postgres stand-in ---------------------------------------------------------------------


def _pg_options(data: str, password: str, user: str = "999:999") -> list[str]:
    return [
        "--user",
        user,
        "--read-only",
        "--tmpfs",
        "/var/run/postgresql:mode=0777",  # an emptyDir in the pod
        "--tmpfs",
        "/tmp:mode=1777",
        "-v",
        f"{data}:/var/lib/postgresql/data",
        "-e",
        f"PGDATA={PGDATA}",
        "-e",
        f"POSTGRES_USER={PG_USER}",
        "-e",
        f"POSTGRES_PASSWORD={password}",
        "-e",
        f"POSTGRES_DB={PG_DB}",
        "-p",
        "127.0.0.1::5432",
    ]


def _connect(port: int, password: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=PG_USER,
        password=password,
        dbname=PG_DB,
        connect_timeout=3,
        autocommit=True,
    )


def _wait_login(c: Container, password: str) -> int:
    port = c.port(5432)

    def login() -> bool:
        try:
            with _connect(port, password) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    wait_for(login, "a password login to the postgres stand-in", 90, c)
    return port


@pytest.fixture
def volume(docker: Docker) -> Iterator[str]:
    """A named docker volume: new, it takes the image's data directory (owned by 999)."""
    name = f"kubebots-e2e-pg-{secrets.token_hex(4)}"
    docker("volume", "create", name)
    yield name
    docker("volume", "rm", "-f", name, check=False)


def test_postgres_stand_in_password_login_and_restart(
    docker: Docker, postgres: Image, volume: str
) -> None:
    assert postgres.config["Entrypoint"] == ["docker-entrypoint.sh"]
    assert postgres.config["Cmd"] == ["postgres"]
    assert postgres.config["StopSignal"] == "SIGINT"
    password = secrets.token_urlsafe(12)
    with docker.start(POSTGRES_TAG, options=_pg_options(volume, password)) as c:
        port = _wait_login(c, password)
        assert c.inspect()["HostConfig"]["ReadonlyRootfs"] is True
        # postgres itself is PID 1, as uid 999 (it gets the stop signal, no shell in between)
        status = c.exec("cat", "/proc/1/status")
        assert re.search(r"^Name:\s+postgres$", status, re.M), status
        assert re.search(r"^Uid:\s+999\s", status, re.M), status
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _connect(port, password + "-wrong").close()
        with _connect(port, password) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('before the restart')")
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == (PG_USER, PG_DB)
            method = conn.execute("SHOW password_encryption").fetchone()
            assert method == ("scram-sha-256",)
        seconds = c.stop(timeout=30)
        assert c.exit_code() == 0, c.logs()
        assert seconds < 10, f"docker stop took {seconds:.1f}s\n{c.logs()}"
        logs = c.logs()
        assert "fast shutdown request" in logs, logs
        assert "database system is shut down" in logs, logs

    # a new container on the same volume: no initdb, the data is there
    with docker.start(POSTGRES_TAG, options=_pg_options(volume, password)) as c:
        port = _wait_login(c, password)
        assert "Skipping initialization" in c.logs()
        with _connect(port, password) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("before the restart",)]


def test_postgres_stand_in_initializes_a_volume_writable_through_fs_group(
    docker: Docker, postgres: Image
) -> None:
    """An fsGroup volume: owned by root, group 999 with the setgid bit, as kubelet leaves it."""
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="kubebots-e2e-pg-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        os.chown(data, 0, 999)
        data.chmod(0o2770)
        options = _pg_options(str(data), password, user="999:999")
        with docker.start(POSTGRES_TAG, options=[*options, "--group-add", "999"]) as c:
            port = _wait_login(c, password)
            with _connect(port, password) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert "init process complete" in c.logs()
            c.stop(timeout=30)
            assert c.exit_code() == 0, c.logs()
        pgdata = data / "pgdata"
        assert pgdata.stat().st_uid == 999
        assert pgdata.stat().st_mode & 0o777 == 0o700


# -- the pause image ---------------------------------------------------------------------------


def test_pause_image(docker: Docker) -> None:
    """FROM scratch + the static pause binary from fetch-and-build.sh (its cache)."""
    pause = ensure_images(("pause",), setup_host=False)["pause"].image
    assert pause.config["Entrypoint"] == ["/pause"]
    assert pause.config["User"] == "65535:65535"
    assert pause.size < 2_000_000, f"{pause.size} bytes"
    out = docker.run(PAUSE_TAG, "-v", options=["--read-only"])
    assert "v3.4.1" in out.stdout + out.stderr
    with docker.start(PAUSE_TAG, options=["--read-only", "--network", "none"]) as c:
        assert c.running
        seconds = c.stop(timeout=10)
        assert seconds < 5 and c.exit_code() == 0, c.logs()
