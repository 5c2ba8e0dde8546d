"""The operator (and the runtime) as they run in a pod, on a real kube-apiserver.

* Liveness: ``/healthz`` answers 200 while the API answers, fails once the API has been frozen
  or gone for longer than ``KUBEBOTS_API_LIVENESS_TIMEOUT`` (plus kopf's 10 s probe cache and
  the probe's own timeout), and answers 200 again as soon as the API does.
* Peering: ``--peering`` creates the ClusterKopfPeering with only the deploy/ RBAC and kopf's
  peering then works (a higher-priority operator pauses it); a missing verb or CRD is a clear
  error at start.
* In-cluster config: ``KUBERNETES_SERVICE_HOST``/``PORT`` pointing at the apiserver and a
  service-account directory holding a real ServiceAccount token, no kubeconfig at all: the
  operator reconciles and the runtime reads an API key from a Secret.
* Start order: operator and runtime started before their PostgreSQL wait for it (alive,
  ``/healthz`` 200, the runtime unready), then converge by themselves.

Processes are real (``kubebots operator``/``serve``), with the deploy/ ServiceAccounts' rights.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubebots.runtime.testing.fake_openai import FakeOpenAIServer
from tests.e2e.conftest import (
    KUBEBOTS,
    RBAC_FILES,
    REPO,
    SYSTEM_NS,
    Proc,
    Runtime,
    Stack,
    _clean_env,
    _wait_crd_established,
    free_port,
    wait_until,
)
from tests.e2e.harness.controlplane import ControlPlane
from tests.private_postgres import PrivatePostgres

#: The liveness timeout under test, and kopf's caching of a successful probe (probing.py).
LIVENESS_TIMEOUT = 3.0
PROBE_TIMEOUT = 1.0
KOPF_PROBE_CACHE = 10.0
#: When /healthz must fail at the latest after the API stopped answering (plus slack for a
#: loaded 2-core machine).
FAIL_WITHIN = LIVENESS_TIMEOUT + KOPF_PROBE_CACHE + 2 * PROBE_TIMEOUT + 6.0
PEERING_CRDS = REPO / "deploy" / "peering" / "crds.yaml"


def bot_yaml(ns: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "kubebots.io/v1alpha1",
            "kind": "Bot",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )


ECHO = {"llm": {"provider": "echo", "model": "echo-1"}, "systemPrompt": "You are terse."}


def install(cp: ControlPlane, workdir: Path) -> Stack:
    """The Bot CRD, the system namespace, the deploy/ RBAC and a test namespace."""
    st = Stack(cp, workdir)
    cp.kubectl("apply", "-f", str(REPO / "crds" / "bots.kubebots.io.yaml"), check=True)
    cp.kubectl("create", "namespace", SYSTEM_NS, check=True)
    for path in RBAC_FILES:
        cp.kubectl("apply", "-f", str(REPO / path), check=True)
    _wait_crd_established(cp)
    cp.kubectl("create", "namespace", st.ns, check=True)
    token = cp.service_account_token(SYSTEM_NS, "kubebots-operator")
    st.write_kubeconfig(st.operator_kubeconfig, "kubebots-operator", token)
    token = cp.service_account_token(SYSTEM_NS, "kubebots-runtime")
    st.write_kubeconfig(st.runtime_kubeconfig, "kubebots-runtime", token)
    return st


def env_for(st: Stack, kubeconfig: Path, store: str, **extra: str) -> dict[str, str]:
    return {
        **_clean_env(),
        "HOME": str(st.workdir),
        "KUBECONFIG": str(kubeconfig),
        "KUBEBOTS_STORE": store,
        "KUBEBOTS_TABLE_PREFIX": "e2e_",
        "KUBEBOTS_LOG_LEVEL": "INFO",
        **extra,
    }


def start_operator(st: Stack, name: str, args: list[str], env: dict[str, str]) -> Proc:
    proc = Proc(name, [KUBEBOTS, "operator", *args], env, st.workdir / name).start()
    st.procs.append(proc)
    return proc


def health(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=8).status_code
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def plane() -> Iterator[Stack]:
    with ControlPlane() as cp:
        workdir = Path(tempfile.mkdtemp(prefix="kubebots-e2e-pod-"))
        st = install(cp, workdir)
        try:
            yield st
        finally:
            for proc in reversed(st.procs):
                proc.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        server.start()
        yield server


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()


# -- liveness ---------------------------------------------------------------------------------


def apiserver_pid(cp: ControlPlane) -> int:
    """The kube-apiserver serving ``cp.server`` (found by its command line)."""
    port = cp.server.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"kube-apiserver")
            and f"--secure-port={port}".encode() in argv
        ):
            return int(entry.name)
    raise AssertionError(f"no kube-apiserver process serves {cp.server}")


def test_liveness_fails_while_the_api_is_frozen_or_gone_and_recovers() -> None:
    with ControlPlane() as cp:
        st = install(cp, Path(tempfile.mkdtemp(prefix="kubebots-e2e-live-")))
        url = f"http://127.0.0.1:{free_port()}/healthz"
        env = env_for(
            st,
            st.operator_kubeconfig,
            "memory://",
            KUBEBOTS_API_LIVENESS_TIMEOUT=str(LIVENESS_TIMEOUT),
            KUBEBOTS_API_PROBE_TIMEOUT=str(PROBE_TIMEOUT),
        )
        op = start_operator(st, "operator", ["-n", st.ns, "--standalone", "--liveness", url], env)
        try:

            def body() -> Any:
                try:
                    r = httpx.get(url, timeout=8)
                except httpx.HTTPError:
                    return None
                return r.json() if r.status_code == 200 else None

            ok = wait_until(body, "/healthz 200", 60, on_fail=op.tail)
            assert ok["kubernetes-api"] == {"api": "ok"}
            lags = {k: v for k, v in ok["progress"].items() if k != "tasks"}
            assert set(lags) == {"status", "tombstones", "rollouts"}  # each one's lag, seconds
            assert all(lag < 5 for lag in lags.values())
            assert ok["progress"]["tasks"] > 0  # bounded at scale: tests/e2e/cluster

            def fails() -> bool:
                assert op.alive, op.tail()
                return health(url) == 500

            # A hung apiserver (connections accepted, never answered).
            pid = apiserver_pid(cp)
            os.kill(pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                wait_until(fails, "/healthz to fail (API frozen)", FAIL_WITHIN, on_fail=op.tail)
                assert time.monotonic() - frozen >= LIVENESS_TIMEOUT
            finally:
                os.kill(pid, signal.SIGCONT)
            # The API answers again: so does /healthz (a failure is never cached).
            wait_until(lambda: health(url) == 200, "/healthz 200 again", 30, on_fail=op.tail)

            # The apiserver gone (connection refused).
            cp.stop()
            wait_until(fails, "/healthz to fail (API gone)", FAIL_WITHIN, on_fail=op.tail)
            assert op.alive
        finally:
            op.stop()


# -- peering ----------------------------------------------------------------------------------


def peering(st: Stack, name: str) -> dict[str, Any] | None:
    got = st.cp.kubectl("get", "clusterkopfpeering", name, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 else None


def test_peering_without_its_crd_is_a_clear_error_at_start(plane: Stack) -> None:
    missing = plane.cp.kubectl("get", "crd", "clusterkopfpeerings.kopf.dev")
    assert missing.returncode != 0, "this test needs a cluster without the peering CRDs"
    env = env_for(plane, plane.operator_kubeconfig, "memory://")
    op = start_operator(plane, "op-no-crd", ["-A", "--peering", "kubebots"], env)
    assert op.popen is not None
    assert op.popen.wait(timeout=60) == 1
    out = op.log.read_text()
    assert "the kopf peering CRD 'clusterkopfpeerings.kopf.dev' is not installed" in out
    assert "deploy/peering/crds.yaml" in out


@pytest.fixture(scope="module")
def peering_crds(plane: Stack) -> Stack:
    plane.kubectl("apply", "-f", str(PEERING_CRDS), check=True)
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/kopfpeerings.kopf.dev",
        "--timeout=60s",
        check=True,
    )
    wait_until(
        lambda: plane.cp.kubectl("get", "clusterkopfpeerings").returncode == 0,
        "the peering kind in discovery",
        60,
    )
    return plane


def test_peering_is_created_with_the_deploy_rbac_and_works(peering_crds: Stack) -> None:
    st = peering_crds
    name = f"e2e-{secrets.token_hex(3)}"
    assert peering(st, name) is None
    env = env_for(st, st.operator_kubeconfig, "memory://", POD_ID="operator-low")
    low = start_operator(st, "op-low", ["-A", "--peering", name, "--priority", "1"], env)

    def keepalive(identity: str, priority: int) -> bool:
        assert low.alive, low.tail()
        obj = peering(st, name) or {}
        return (obj.get("status") or {}).get(identity, {}).get("priority") == priority

    wait_until(
        lambda: keepalive("operator-low", 1), "the keep-alive of op-low", 60, on_fail=low.tail
    )
    assert "created the kopf peering object: ClusterKopfPeering" in low.log.read_text()

    # A second operator of higher priority: the first one pauses in its favour.
    env = env_for(st, st.operator_kubeconfig, "memory://", POD_ID="operator-high")
    high = start_operator(st, "op-high", ["-A", "--peering", name, "--priority", "9"], env)
    try:
        wait_until(
            lambda: "Pausing operations in favour of" in low.log.read_text(),
            "op-low to pause for op-high",
            60,
            on_fail=lambda: low.tail() + "\n" + high.tail(),
        )
        assert keepalive("operator-high", 9)
        assert "created the kopf peering object" not in high.log.read_text()
    finally:
        high.stop()
        low.stop()


READER_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: peering-reader, namespace: kubebots-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-peering-reader}
rules:
  - apiGroups: [kopf.dev]
    resources: [clusterkopfpeerings]
    verbs: [get, list, watch, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-peering-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-peering-reader}
subjects: [{kind: ServiceAccount, name: peering-reader, namespace: kubebots-system}]
"""


def test_peering_without_the_create_verb_names_it(peering_crds: Stack) -> None:
    st = peering_crds
    st.apply(READER_RBAC)
    kubeconfig = st.workdir / "reader.kubeconfig"
    token = st.cp.service_account_token(SYSTEM_NS, "peering-reader")
    st.write_kubeconfig(kubeconfig, "peering-reader", token)
    name = f"e2e-{secrets.token_hex(3)}"
    op = start_operator(
        st, "op-reader", ["-A", "--peering", name], env_for(st, kubeconfig, "memory://")
    )
    assert op.popen is not None
    assert op.popen.wait(timeout=60) == 1
    out = op.log.read_text()
    assert "lacks the verb 'create' on 'clusterkopfpeerings' in API group 'kopf.dev'" in out
    assert peering(st, name) is None


# -- in-cluster config ------------------------------------------------------------------------


def service_account_dir(st: Stack, name: str) -> Path:
    """What the kubelet mounts: a real bound token of the deploy/ ServiceAccount, the CA."""
    sa = st.workdir / f"sa-{name}"
    sa.mkdir()
    (sa / "token").write_text(st.cp.service_account_token(SYSTEM_NS, name))
    (sa / "ca.crt").write_text(st.cp.ca_file.read_text())
    (sa / "namespace").write_text(SYSTEM_NS)
    return sa


def pod_env(st: Stack, sa: Path, store: str, **extra: str) -> dict[str, str]:
    """A pod's environment: the kubelet's service variables, no kubeconfig anywhere."""
    host, port = st.cp.server.removeprefix("https://").rsplit(":", 1)
    env = env_for(st, st.workdir / "no-such-kubeconfig", store, **extra)
    env["HOME"] = str(st.workdir / "empty-home")
    env |= {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBEBOTS_SERVICE_ACCOUNT_DIR": str(sa),
    }
    return env


def test_operator_and_runtime_use_the_in_cluster_config(
    plane: Stack, pg: PrivatePostgres, fake_openai: FakeOpenAIServer
) -> None:
    st = plane
    ns = f"pod-{secrets.token_hex(3)}"
    st.kubectl("create", "namespace", ns, check=True)
    store = pg.url(database="postgres")
    prefix = {"KUBEBOTS_TABLE_PREFIX": f"pod{secrets.token_hex(3)}_"}
    op_env = pod_env(st, service_account_dir(st, "kubebots-operator"), store, **prefix)
    op = start_operator(st, "op-pod", ["-n", ns, "--standalone"], op_env)
    rt_env = pod_env(
        st,
        service_account_dir(st, "kubebots-runtime"),
        store,
        KUBEBOTS_AUTH="false",
        KUBEBOTS_SECRETS="kubernetes",
        KUBEBOTS_HEARTBEAT_INTERVAL="0.5",
        **prefix,
    )
    rt = Runtime("rt-pod", rt_env, st.workdir / "rt-pod").start()
    assert isinstance(rt, Runtime)
    st.procs.append(rt)
    rt.wait_ready()

    key = "sk-in-cluster-0042"
    st.apply(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: llm-key, namespace: {ns}}}\n"
        f"stringData: {{api-key: {key}}}\n"
    )
    spec = {
        "llm": {
            "provider": "openai",
            "model": "fake-model",
            "baseUrl": fake_openai.base_url,
            "maxRetries": 0,
            "apiKeySecretRef": {"name": "llm-key", "key": "api-key"},
        },
        "systemPrompt": "p",
    }
    st.apply(bot_yaml(ns, "incluster", spec))
    done = st.cp.kubectl(
        "-n", ns, "wait", "--for=condition=Ready", "bot/incluster", "--timeout=90s", timeout=120
    )
    assert done.returncode == 0, f"{done.stderr}\n{op.tail()}\n{rt.tail()}"
    reply = rt.chat(f"{ns}:incluster", "hello")
    assert reply.status_code == 200, f"{reply.text}\n{rt.tail()}"
    assert reply.json()["response"] == "[fake-model] p | hello"
    assert fake_openai.requests[-1]["authorization"] == f"Bearer {key}"
    host_port = st.cp.server.removeprefix("https://")
    assert f"in-cluster ({host_port}" in op.log.read_text()
    op.stop()
    rt.stop()


# -- start order ------------------------------------------------------------------------------


def test_operator_and_runtime_started_before_postgres_wait_for_it(plane: Stack) -> None:
    st = plane
    ns = f"late-{secrets.token_hex(3)}"
    st.kubectl("create", "namespace", ns, check=True)
    with PrivatePostgres() as late:  # initialised, not started
        password = "pw-e2e-never-shown"
        store = late.url(password=password)
        url = f"http://127.0.0.1:{free_port()}/healthz"
        env = env_for(st, st.operator_kubeconfig, store, KUBEBOTS_STATUS_INTERVAL="0.5")
        op = start_operator(st, "op-late", ["-n", ns, "--standalone", "--liveness", url], env)
        rt_env = env_for(
            st,
            st.runtime_kubeconfig,
            store,
            KUBEBOTS_AUTH="false",
            KUBEBOTS_HEARTBEAT_INTERVAL="0.5",
        )
        rt = Runtime("rt-late", rt_env, st.workdir / "rt-late").start()
        assert isinstance(rt, Runtime)
        st.procs.append(rt)
        try:
            wait_until(lambda: health(url) == 200, "operator /healthz", 60, on_fail=op.tail)
            wait_until(
                lambda: health(f"{rt.url}/healthz") == 200, "runtime /healthz", 60, on_fail=rt.tail
            )
            st.apply(bot_yaml(ns, "late", ECHO))
            time.sleep(5)  # both wait without their database: alive, healthy, unready
            assert op.alive, op.tail()
            assert rt.alive, rt.tail()
            assert health(url) == 200
            unready = httpx.get(f"{rt.url}/readyz", timeout=5)
            assert unready.status_code == 503
            assert "config store unavailable" in unready.json()["message"]
            assert password not in unready.text

            late.start()
            rt.wait_ready(timeout=60)
            done = st.cp.kubectl(
                "-n", ns, "wait", "--for=condition=Ready", "bot/late", "--timeout=90s", timeout=120
            )
            assert done.returncode == 0, f"{done.stderr}\n{op.tail()}\n{rt.tail()}"
            reply = rt.chat(f"{ns}:late", "hi")
            assert reply.status_code == 200 and reply.json()["response"] == "echo: hi"
            for proc in (op, rt):
                assert password not in proc.log.read_text(), f"{proc.name} logged the password"
        finally:
            op.stop()
            rt.stop()
