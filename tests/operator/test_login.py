"""kopf's login: the same server, token and CA as ``ClusterAccess`` (never kubernetes.default.svc).

Real files in a temporary service-account directory and a real kubeconfig.
"""

from __future__ import annotations

import logging
from pathlib import Path

import certifi
import kopf

from kubebots.operator.liveness import ApiLiveness
from kubebots.operator.login import connection_info, login, pool_size
from kubebots.operator.services import OperatorContext, OperatorMemo
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.kube_config import ClusterAccess
from tests.runtime.support import kubeconfig, service_account

from .support import FakeApiCheck


def test_kopf_logs_in_with_the_same_server_token_and_ca(tmp_path: Path) -> None:
    sa = service_account(tmp_path, token="the-pod-token")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    info = connection_info(ClusterAccess(env, sa).configuration(), trust_env=True)
    assert info.server == "https://10.0.0.1:443"
    assert (info.scheme, info.token) == ("bearer", "the-pod-token")
    assert info.ca_path == str(sa / "ca.crt")
    assert info.insecure is False
    assert info.trust_env is True


def test_a_rotated_token_is_read_at_the_next_login(tmp_path: Path) -> None:
    sa = service_account(tmp_path, token="first")
    access = ClusterAccess(
        {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, sa
    )
    assert connection_info(access.configuration()).token == "first"
    (sa / "token").write_text("second")
    assert connection_info(access.configuration()).token == "second"


def test_outside_a_pod_the_kubeconfig_is_used(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path)
    # the service host alone (no mounted token) is not a pod's service account
    env = {"KUBECONFIG": str(path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    access = ClusterAccess(env, tmp_path / "absent")
    assert not access.in_cluster
    info = connection_info(access.configuration())
    assert info.server == "https://203.0.113.9:6443"
    assert (info.scheme, info.token) == ("Bearer", "kubeconfig-token")
    assert info.insecure is True
    assert access.describe() == f"kubeconfig {path}"


def pod_account(tmp_path: Path) -> Path:
    """A service account directory whose ca.crt is a real PEM bundle (TLS contexts load it)."""
    sa = service_account(tmp_path, token="the-pod-token")
    (sa / "ca.crt").write_text(Path(certifi.where()).read_text())
    return sa


async def test_kopf_gets_a_bounded_keep_alive_pool_with_the_same_credentials(
    tmp_path: Path,
) -> None:
    sa = pod_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    context = OperatorContext(
        settings=OperatorSettings(api_connections=8),
        namespaces=["a", "b"],
        cluster=ClusterAccess(env, sa),
        api_client=None,
        liveness=ApiLiveness(FakeApiCheck(), timeout=60),
    )
    memo = OperatorMemo(context=context)
    got = await login(memo=memo, settings=kopf.OperatorSettings(), logger=logging.getLogger("t"))
    try:
        assert isinstance(got, kopf.AiohttpSession) and got.server == "https://10.0.0.1:443"
        session = got.aiohttp_session
        assert session.headers["Authorization"] == "bearer the-pod-token"
        # 8 for requests, 2 watches per namespace (Bots, Secrets), 1 for the peering
        assert session.connector is not None and session.connector.limit == 8 + 4 + 1
        assert pool_size(8, None) == 8 + 2 + 1  # cluster-wide
    finally:
        await got.aiohttp_session.close()
