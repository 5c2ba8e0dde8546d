"""kopf's login: the same address and credentials as the operator's own API client.

kopf's built-in ``login_with_service_account`` dials ``https://kubernetes.default.svc``, a
cluster DNS name: without cluster DNS (or before it is up) the operator cannot reach the API.
This login uses :class:`~kubebots.runtime.kube_config.ClusterAccess` instead: in a pod the
``KUBERNETES_SERVICE_HOST``/``PORT`` the kubelet injects and the mounted token (re-read at every
login, so a rotated token is picked up when kopf re-authenticates after a 401), else the
kubeconfig.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubebots.runtime.kube_config import ClusterAccess, ClusterAccessError


def connection_info(configuration: Any, *, trust_env: bool = False) -> kopf.ConnectionInfo:
    """kopf's credentials from a ``kubernetes.client.Configuration``."""
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").strip().rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=trust_env,
    )


async def login(
    *, memo: kopf.Memo, settings: kopf.OperatorSettings, logger: Any, **_: Any
) -> kopf.ConnectionInfo:
    access: ClusterAccess = memo.cluster
    try:
        configuration = access.configuration()
    except ClusterAccessError as exc:
        raise kopf.LoginError(exc.message) from None
    logger.debug(f"logging in through the {access.describe()}")
    return connection_info(configuration, trust_env=settings.networking.trust_env)
