"""The whole product on a real kube-apiserver: CRD, RBAC, `kubebots operator` and `kubebots serve`.

One control plane per session; the operator and the runtime replicas are real processes that
authenticate as the deploy/ ServiceAccounts (tokens from the TokenRequest API), so they have
exactly the ClusterRoles' permissions. The config store is the real PostgreSQL, under a random
table prefix dropped at the end. Every process's output goes to a log file whose tail is printed
when a test fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from tests.e2e.harness.controlplane import ControlPlane
from tests.e2e.harness.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
KUBEBOTS = str(Path(sys.executable).with_name("kubebots"))
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEM_NS = "kubebots-system"
RBAC_FILES = (
    "deploy/operator/serviceaccount.yaml",
    "deploy/operator/rbac.yaml",
    "deploy/runtime/serviceaccount.yaml",
    "deploy/runtime/rbac.yaml",
)
#: Operator: a replica is live while its heartbeat is younger than this (runtime beats every 0.5s).
REPLICA_MAX_AGE = 6.0
LOG_TAIL = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEBOTS_")}
    # never in-cluster credentials, never a proxy between us and 127.0.0.1
    for name in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HTTP_PROXY", "http_proxy"):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


class Proc:
    """One product process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive and self.popen is not None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGCONT)  # in case a test froze it
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.popen = None

    def tail(self, lines: int = LOG_TAIL) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        # kopf's JSON lines repeat its whole settings object: keep each line readable
        return "\n".join(line[:400] for line in text.splitlines()[-lines:])


class Runtime(Proc):
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        env = {
            **env,
            "KUBEBOTS_HOST": "127.0.0.1",
            "KUBEBOTS_PORT": str(self.port),
            "KUBEBOTS_REPLICA_ID": f"{name}-{secrets.token_hex(3)}",
            "KUBEBOTS_DATA_DIR": str(workdir / "data"),
        }
        super().__init__(name, [KUBEBOTS, "serve", "--examples", "/nonexistent"], env, workdir)
        self.url = f"http://127.0.0.1:{self.port}"
        self.replica_id = env["KUBEBOTS_REPLICA_ID"]

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, f"{self.name} /readyz", timeout, on_fail=self.tail)

    def chat(self, bot_id: str, message: str, conversation: str = "c1") -> httpx.Response:
        return httpx.post(
            f"{self.url}/bots/{bot_id}/chat",
            json={"message": message, "conversation_id": conversation},
            timeout=30,
        )


class Stack:
    """The control plane, the store, the operator and the runtimes, plus helpers for tests."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp
        self.workdir = workdir
        self.ns = f"e2e-{secrets.token_hex(3)}"
        self.prefix = f"e2e{secrets.token_hex(4)}_"
        self.procs: list[Proc] = []
        self.operator: Proc | None = None
        self.runtime: Runtime | None = None
        self.operator_kubeconfig = workdir / "operator.kubeconfig"
        self.runtime_kubeconfig = workdir / "runtime.kubeconfig"

    # -- setup -----------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": self.cp.server,
                        "certificate-authority": str(self.cp.ca_file),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def base_env(self, kubeconfig: Path) -> dict[str, str]:
        return {
            **_clean_env(),
            "HOME": str(self.workdir),
            "KUBECONFIG": str(kubeconfig),
            "KUBEBOTS_STORE": POSTGRES_URL,
            "KUBEBOTS_TABLE_PREFIX": self.prefix,
            "KUBEBOTS_LOG_LEVEL": "INFO",
        }

    def start_operator(self) -> Proc:
        env = {
            **self.base_env(self.operator_kubeconfig),
            "KUBEBOTS_STATUS_INTERVAL": "0.5",
            "KUBEBOTS_READY_WAIT": "1",
            "KUBEBOTS_REPLICA_MAX_AGE": str(REPLICA_MAX_AGE),
        }
        if os.environ.get("KUBEBOTS_E2E_SHIPPED_TIMINGS") == "1":
            # the bench measures the operator as shipped: its status controller's 0.25 s tick
            # and 2 s ready wait, not the tests' 0.5 s and 1 s
            del env["KUBEBOTS_STATUS_INTERVAL"], env["KUBEBOTS_READY_WAIT"]
        argv = [KUBEBOTS, "operator", "-n", self.ns, "--standalone"]
        proc = Proc("operator", argv, env, self.workdir / "operator").start()
        self.procs.append(proc)
        self.operator = proc
        return proc

    def start_runtime(self, name: str) -> Runtime:
        env = {
            **self.base_env(self.runtime_kubeconfig),
            "KUBEBOTS_AUTH": "false",
            "KUBEBOTS_SECRETS": "kubernetes",
            "KUBEBOTS_HEARTBEAT_INTERVAL": "0.5",
            "KUBEBOTS_TOOL_EGRESS": "127.0.0.1,localhost",  # the tests' MCP servers
        }
        rt = Runtime(name, env, self.workdir / name)
        rt.start()
        self.procs.append(rt)
        rt.wait_ready()
        return rt

    # -- helpers ---------------------------------------------------------------------------

    def logs(self) -> str:
        parts = [f"--- {p.name} ({p.log}) ---\n{p.tail()}" for p in self.procs]
        return "\n".join(parts)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cp.kubectl(*args, input=input, check=check)

    def apply(self, manifest: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl("apply", "-f", "-", input=manifest, check=check)

    def bot(self, name: str) -> dict[str, Any]:
        import json

        out = self.kubectl("-n", self.ns, "get", "bot", name, "-o", "json").stdout
        return dict(json.loads(out))

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events on Bot ``name``, oldest first (kopf stamps each with its ``eventTime``,
        in microseconds)."""
        import json

        out = self.kubectl(
            "-n",
            self.ns,
            "get",
            "events",
            "--field-selector",
            f"involvedObject.kind=Bot,involvedObject.name={name}",
            "-o",
            "json",
        ).stdout
        return sorted(json.loads(out)["items"], key=lambda e: e.get("eventTime") or "")

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        bot = self.bot(name)
        for cond in (bot.get("status") or {}).get("conditions") or []:
            if cond.get("type") == ctype:
                return dict(cond)
        return None

    def wait_status(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Poll the Bot until ``predicate(bot)``; the failure shows the Bot and the logs."""
        seen: list[dict[str, Any]] = []

        def probe() -> dict[str, Any] | None:
            bot = self.bot(name)
            seen[:] = [bot]
            return bot if predicate(bot) else None

        def explain() -> str:
            return f"last Bot:\n{yaml.safe_dump(seen[0] if seen else None)}\n{self.logs()}"

        return wait_until(probe, f"bot/{name}: {what}", timeout, on_fail=explain)

    def wait_ready(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """``kubectl wait --for=condition=Ready`` (what users run), then the current Bot."""
        proc = self.cp.kubectl(
            "-n",
            self.ns,
            "wait",
            "--for=condition=Ready",
            f"bot/{name}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"kubectl wait Ready bot/{name} failed: {proc.stdout}{proc.stderr}\n"
                f"{yaml.safe_dump(self.bot(name))}\n{self.logs()}"
            )
        return self.bot(name)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement on the store's database (``{p}`` is the table prefix)."""
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            cur = conn.execute(query.replace("{p}", self.prefix).encode(), params or None)
            return list(cur.fetchall()) if cur.description else []


def _ready_conditions(bot: dict[str, Any]) -> dict[str, Any]:
    status = bot.get("status") or {}
    return {c["type"]: c for c in status.get("conditions") or []}


def is_ready_for_generation(bot: dict[str, Any]) -> bool:
    """Ready=True for the Bot's current generation (status and the condition agree)."""
    gen = bot["metadata"]["generation"]
    ready = _ready_conditions(bot).get("Ready") or {}
    status = bot.get("status") or {}
    return bool(
        ready.get("status") == "True"
        and ready.get("observedGeneration") == gen
        and status.get("observedGeneration") == gen
    )


def ready_reason(bot: dict[str, Any]) -> tuple[str | None, str | None]:
    ready = _ready_conditions(bot).get("Ready") or {}
    return ready.get("status"), ready.get("reason")


def _wait_crd_established(cp: ControlPlane) -> None:
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/bots.kubebots.io",
        "--timeout=60s",
        check=True,
        timeout=90,
    )

    # kubectl's discovery cache may lag behind: wait until `get bots` itself works.
    def listable() -> bool:
        return cp.kubectl("get", "bots", "-A").returncode == 0

    wait_until(listable, "the bots resource in discovery", 60)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with ControlPlane() as cp:
        workdir = Path(tempfile.mkdtemp(prefix="kubebots-e2e-"))
        st = Stack(cp, workdir)
        try:
            cp.kubectl("apply", "-f", str(REPO / "crds" / "bots.kubebots.io.yaml"), check=True)
            cp.kubectl("create", "namespace", SYSTEM_NS, check=True)
            for path in RBAC_FILES:
                cp.kubectl("apply", "-f", str(REPO / path), check=True)
            _wait_crd_established(cp)
            cp.kubectl("create", "namespace", st.ns, check=True)
            op_token = cp.service_account_token(SYSTEM_NS, "kubebots-operator")
            rt_token = cp.service_account_token(SYSTEM_NS, "kubebots-runtime")
            st.write_kubeconfig(st.operator_kubeconfig, "kubebots-operator", op_token)
            st.write_kubeconfig(st.runtime_kubeconfig, "kubebots-runtime", rt_token)
            st.start_operator()
            st.runtime = st.start_runtime("runtime-a")
            yield st
        finally:
            for proc in reversed(st.procs):
                proc.stop()
            try:
                tables = st.sql(
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                    st.prefix.replace("_", r"\_") + "%",
                )
                if tables:
                    names = ", ".join(f'"{t[0]}"' for t in tables)
                    st.sql(f"DROP TABLE IF EXISTS {names} CASCADE")
            finally:
                import shutil

                keep = os.environ.get("KUBEBOTS_E2E_KEEP_LOGS")  # a directory to copy logs to
                if keep:
                    for proc in st.procs:
                        Path(keep).mkdir(parents=True, exist_ok=True)
                        shutil.copy(proc.log, Path(keep) / proc.log.name)
                shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "stack" in request.fixturenames:
        st: Stack = request.getfixturevalue("stack")
        print(st.logs())
