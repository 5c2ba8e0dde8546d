"""``ClusterAccess``: the pod's service host/port and mounted token, else the kubeconfig.

Real files in a temporary service-account directory and a real kubeconfig; the environment is
a plain mapping passed in, as the CLI passes the process environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubebots.runtime.kube_config import ClusterAccess, ClusterAccessError

from .support import kubeconfig, service_account


def test_in_a_pod_the_injected_service_host_and_port_are_dialled_not_a_dns_name(
    tmp_path: Path,
) -> None:
    sa = service_account(tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = ClusterAccess(env, sa)
    assert access.in_cluster
    cfg = access.configuration()
    assert cfg.host == "https://10.0.0.1:443"
    assert cfg.ssl_ca_cert == str(sa / "ca.crt")
    assert cfg.get_api_key_with_prefix("BearerToken") == "bearer tok-1"
    assert "10.0.0.1:443" in access.describe()


def test_an_ipv6_service_host_is_bracketed(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert ClusterAccess(env, service_account(tmp_path)).configuration().host == (
        "https://[fd00::1]:6443"
    )


def test_the_kubeconfig_defaults_to_home(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path).rename(tmp_path / ".kube" / "config")
    access = ClusterAccess({"HOME": str(tmp_path)}, tmp_path / "absent")
    assert access.kubeconfig == str(tmp_path / ".kube" / "config")
    assert access.configuration().host == "https://203.0.113.9:6443"


def test_no_pod_and_no_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    access = ClusterAccess({"HOME": str(tmp_path)}, tmp_path / "absent")
    with pytest.raises(ClusterAccessError) as caught:
        access.configuration()
    assert "no access to a Kubernetes cluster through the kubeconfig" in caught.value.message
    assert str(tmp_path / ".kube" / "config") in caught.value.message


def test_a_pod_without_its_ca_is_a_clear_error(tmp_path: Path) -> None:
    sa = service_account(tmp_path)
    (sa / "ca.crt").unlink()
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(ClusterAccessError, match=r"in-cluster .*certification file"):
        ClusterAccess(env, sa).configuration()


def test_the_api_client_keeps_as_many_connections_as_asked(tmp_path: Path) -> None:
    access = ClusterAccess({"KUBECONFIG": str(kubeconfig(tmp_path))}, tmp_path / "absent")
    assert access.api_client(connections=16).configuration.connection_pool_maxsize == 16
    from kubernetes import client

    default = client.Configuration().connection_pool_maxsize  # the client's own, when not asked
    assert access.api_client().configuration.connection_pool_maxsize == default
