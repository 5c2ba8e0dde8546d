"""A throwaway Kubernetes control plane (etcd + kube-apiserver 1.20) for end-to-end tests.

There is no kubelet, scheduler or controller-manager: objects are stored and served, RBAC and
admission are real, but nothing reconciles them (pods are never scheduled, namespaces get no
``default`` ServiceAccount, deleted namespaces stay ``Terminating``).

    with ControlPlane() as cp:
        cp.kubectl("get", "ns", check=True)
        status, body = cp.request("GET", "/api/v1/namespaces")

The binaries are built once per machine by ``fetch-and-build.sh`` (minutes the first time) into
``${KUBEBOTS_E2E_CACHE:-~/.cache/kubebots-e2e}``; starting a control plane then takes seconds.
Everything else (etcd data, certificates, keys, logs, kubeconfig) lives in a temporary directory
that ``stop()`` removes. Only the standard library, PyYAML and the ``openssl`` CLI (or the
``cryptography`` package) are needed.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from .scripts import run_script

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "fetch-and-build.sh"
K8S_VERSION = "1.20.2"
BINARIES = (
    "kube-apiserver",
    "kubectl",
    "etcd",
    "kubelet",
    "kube-proxy",
    "kube-scheduler",
    "kube-controller-manager",
    "pause",
)
#: Issuer and audience of ServiceAccount tokens (what a real cluster's defaults look like).
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
#: The first build fetches ~150 MB from Debian and compiles for ~5 minutes on 2 cores.
BUILD_TIMEOUT = 45 * 60.0
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The binaries could not be built, or etcd/kube-apiserver did not come up."""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def ensure_binaries(timeout: float = BUILD_TIMEOUT) -> dict[str, Path]:
    """Run ``fetch-and-build.sh`` (a no-op once built) and return ``{name: path}``."""
    proc = run_script(BUILD_SCRIPT, timeout, ControlPlaneError)
    found: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        name, sep, path = line.partition("=")
        if sep and name in BINARIES:
            found[name] = Path(path)
    missing = [b for b in BINARIES if b not in found or not os.access(found[b], os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.name} reported no usable {', '.join(missing)}:\n{proc.stdout}"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open until all are picked)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _generate_rsa_key(path: Path) -> None:
    """A 2048-bit RSA private key in PEM, with the openssl CLI or else ``cryptography``."""
    openssl = shutil.which("openssl")
    if openssl:
        proc = subprocess.run(
            [openssl, "genrsa", "-out", str(path), "2048"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"openssl genrsa failed: {proc.stderr.strip()}")
        return
    try:
        from cryptography.hazmat.primitives import (  # type: ignore[import-not-found,unused-ignore]
            serialization,
        )
        from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found,unused-ignore]
            rsa,
        )
    except ImportError as exc:
        raise ControlPlaneError(
            "need the openssl CLI or the cryptography package to make the service-account key"
        ) from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _pem_certs(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block.strip() + "\n" + end + "\n" for block in text.split(end) if "BEGIN" in block]


class ControlPlane:
    """etcd + kube-apiserver on random loopback ports, with an admin token and a kubeconfig.

    Attributes once started: ``server`` (``https://127.0.0.1:PORT``), ``token`` (admin, group
    ``system:masters``), ``kubeconfig`` (path), ``ca_file`` (the apiserver's self-signed CA),
    ``bins`` (name -> path), ``startup_seconds``.
    """

    def __init__(
        self,
        *,
        extra_apiserver_args: Sequence[str] = (),
        start_timeout: float = 90.0,
        build_timeout: float = BUILD_TIMEOUT,
        address: str = "127.0.0.1",
        with_nodes: bool = False,
    ) -> None:
        """``address``: where the apiserver binds and what it advertises (a node needs one
        outside 127/8, see ``harness.node``); ``with_nodes``: a controller-manager will run, so
        ServiceAccount admission and the ``kubernetes`` Service's endpoints are kept on."""
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.address = address
        self.with_nodes = with_nodes
        self.start_timeout = start_timeout
        self.build_timeout = build_timeout
        self.bins: dict[str, Path] = {}
        self.token = secrets.token_hex(24)
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds = 0.0
        self._tmp: Path | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            raise ControlPlaneError("the control plane is not started")
        return self._tmp

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def etcd_log(self) -> Path:
        return self.workdir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.workdir / "kube-apiserver.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._tmp is not None:
            raise ControlPlaneError("the control plane is already started")
        self.bins = ensure_binaries(self.build_timeout)
        began = time.monotonic()
        self._tmp = Path(tempfile.mkdtemp(prefix="kubebots-e2e-cp-"))
        try:
            self._start_etcd(began)
            self._start_apiserver(began)
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Terminate kube-apiserver then etcd (SIGTERM, then SIGKILL), remove the temp dir."""
        for proc in (self._apiserver, self._etcd):
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._apiserver = self._etcd = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._ssl = None

    def pids(self) -> dict[str, int]:
        """The running processes by binary name."""
        procs = {"etcd": self._etcd, "kube-apiserver": self._apiserver}
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._tmp is None:
            return "<no logs: the control plane is not started>"
        return (
            f"--- etcd log (last {lines} lines) ---\n{_tail(self.etcd_log, lines)}\n"
            f"--- kube-apiserver log (last {lines} lines) ---\n{_tail(self.apiserver_log, lines)}"
        )

    def _fail(self, why: str) -> ControlPlaneError:
        return ControlPlaneError(f"{why}\n{self.logs_tail()}")

    def _spawn(
        self, argv: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, **(env or {})},
                # Ctrl-C reaches only the test run, whose teardown (stop) ends them in order.
                start_new_session=True,
            )

    def _start_etcd(self, began: float) -> None:
        client, peer = _free_ports(2)
        env = {}
        if platform.machine() not in {"x86_64", "AMD64"}:
            # etcd 3.4 refuses to start on non-amd64 unless told (arm64 is supported in 3.5).
            env["ETCD_UNSUPPORTED_ARCH"] = {"aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            )
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._etcd = self._spawn(
            [
                str(self.bins["etcd"]),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
            ],
            self.etcd_log,
            env,
        )
        self._wait(
            "etcd",
            self._etcd,
            began,
            lambda: self._http_ok(f"{self.etcd_url}/health"),
        )

    def _start_apiserver(self, began: float) -> None:
        (port,) = _free_ports(1)
        self.server = f"https://{self.address}:{port}"
        certs = self.workdir / "certs"
        certs.mkdir()
        sa_key = self.workdir / "sa.key"
        _generate_rsa_key(sa_key)
        tokens = self.workdir / "tokens.csv"
        # token,user,uid,"group1,group2"
        tokens.write_text(f'{self.token},e2e-admin,e2e-admin,"system:masters"\n')
        tokens.chmod(0o600)
        argv = [
            str(self.bins["kube-apiserver"]),
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={port}",  # 1.20 serves no insecure port: no --insecure-port needed
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--cert-dir={certs}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={tokens}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--api-audiences={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *(self._node_args() if self.with_nodes else self._standalone_args()),
            # Fewer moving parts and a faster start; tests do not load the apiserver.
            "--enable-priority-and-fairness=false",
            "--allow-privileged=true",
            "--profiling=false",
            "--logtostderr=true",
            "--v=1",
            *self.extra_apiserver_args,
        ]
        self._apiserver = self._spawn(argv, self.apiserver_log)

        def ready() -> bool:
            if not self._ssl:
                crt = certs / "apiserver.crt"
                if not crt.exists():
                    return False
                blocks = _pem_certs(crt.read_text())
                if not blocks:
                    return False
                # apiserver.crt is the serving cert followed by its self-signed CA.
                self.ca_file.write_text(blocks[-1])
                self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
            status, _ = self.request("GET", "/readyz", timeout=2)
            if status != 200:
                return False
            # readyz does not wait for the system namespaces; tests expect `default` to exist.
            status, _ = self.request("GET", "/api/v1/namespaces/default", timeout=2)
            return status == 200

        self._wait("kube-apiserver", self._apiserver, began, ready)

    @staticmethod
    def _standalone_args() -> list[str]:
        return [
            # No controller-manager creates the `default` ServiceAccount of a namespace, so
            # the ServiceAccount admission plugin would reject every pod.
            "--disable-admission-plugins=ServiceAccount",
            # Endpoints may not be loopback addresses: keeping the `kubernetes` Service's
            # endpoints at 127.0.0.1 only logs an error every 10 s.
            "--endpoint-reconciler-type=none",
        ]

    @staticmethod
    def _node_args() -> list[str]:
        return [
            # The node's name does not resolve: logs/exec/port-forward reach the kubelet by IP.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _wait(
        self,
        what: str,
        proc: subprocess.Popen[bytes],
        began: float,
        ready: Callable[[], bool],
    ) -> None:
        deadline = began + self.start_timeout
        last_error: BaseException | None = None
        while True:
            code = proc.poll()
            if code is not None:
                raise self._fail(f"{what} exited with code {code} during startup")
            try:
                if ready():
                    return
            except ssl.SSLError as exc:  # e.g. the cert was read half-written: read it again
                last_error, self._ssl = exc, None
            except OSError as exc:  # not listening yet
                last_error = exc
            if time.monotonic() > deadline:
                raise self._fail(
                    f"{what} was not ready within {self.start_timeout:.0f}s"
                    f" (last probe error: {last_error!r})"
                )
            time.sleep(0.2)

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "e2e-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin"}}],
            "current-context": "e2e",
            "preferences": {},
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)
        (self.workdir / "home").mkdir(exist_ok=True)

    # -- clients -----------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        token: str | None = None,
        input: str | None = None,
        check: bool = False,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this control plane (as admin, or as ``token``).

        With ``check=True`` a non-zero exit raises AssertionError showing stdout and stderr.
        """
        argv = [str(self.bins["kubectl"]), f"--kubeconfig={self.kubeconfig}"]
        if token is not None:
            argv.append(f"--token={token}")
        argv += args
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # A private HOME keeps kubectl's discovery cache out of the user's ~/.kube.
            env={**os.environ, "HOME": str(self.workdir / "home"), "KUBECONFIG": ""},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One raw API call with urllib (admin token unless ``token``): ``(status, json|text)``.
        A PATCH names its kind in ``content_type`` (e.g. ``application/merge-patch+json``)."""
        if self._ssl is None:
            raise ControlPlaneError("the apiserver's CA is not known yet")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def keep_alive(self) -> KeepAlive:
        """A client on one kept-alive connection (admin token): for timing, where a new TLS
        handshake per request would be most of what is measured."""
        if self._ssl is None:
            raise ControlPlaneError("the apiserver's CA is not known yet")
        return KeepAlive(self.server, self.token, self._ssl)

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (SA_ISSUER,),
    ) -> str:
        """A bound token for an existing ServiceAccount, through the TokenRequest API."""
        status, body = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "audiences": list(audiences),
                    "expirationSeconds": expiration_seconds,
                },
            },
        )
        if status != 201 or not isinstance(body, dict):
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name}: HTTP {status}: {body}")
        return str(body["status"]["token"])


class KeepAlive:
    """Raw API calls on one HTTPS connection, reopened if the server closes it."""

    def __init__(self, server: str, token: str, context: ssl.SSLContext) -> None:
        host, _, port = server.removeprefix("https://").partition(":")
        self._open = lambda: http.client.HTTPSConnection(
            host, int(port or 443), context=context, timeout=30
        )
        self._conn = self._open()
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {**self._headers, **({"Content-Type": content_type} if data else {})}
        for attempt in (1, 2):
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, json.loads(resp.read() or b"null")
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = self._open()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._conn.close()
