"""kopf's login: the same address and credentials as the operator's own API client.

kopf's built-in ``login_with_service_account`` dials ``https://kubernetes.default.svc``, a
cluster DNS name: without cluster DNS (or before it is up) the operator cannot reach the API.
This login uses :class:`~kubebots.runtime.kube_config.ClusterAccess` instead: in a pod the
``KUBERNETES_SERVICE_HOST``/``PORT`` the kubelet injects and the mounted token (re-read at every
login, so a rotated token is picked up when kopf re-authenticates after a 401), else the
kubeconfig.

kopf's own session opens as many connections as it has requests in flight (``limit=0``): a
burst of 1,000 Bots meant up to 1,000 TLS handshakes and their buffers (CPU and ~100 MiB in the
operator). Ours is a kopf ``AiohttpSession`` with the same headers and TLS context but a bounded
pool of keep-alive connections: ``KUBEBOTS_API_CONNECTIONS`` for requests plus room for the
long-lived watch streams (two per watched namespace, one more for peering).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import kopf

from kubebots.runtime.kube_config import ClusterAccessError

from .services import OperatorMemo


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


def pool_size(requests: int, namespaces: list[str] | None) -> int:
    """Connections for ``requests`` at once beside the watch streams (Bots and Secrets in each
    watched namespace, or cluster-wide, and the peering)."""
    return requests + 2 * len(namespaces or [None]) + 1


def bounded_session(info: kopf.ConnectionInfo, connections: int) -> kopf.AiohttpSession:
    """kopf's session for ``info``, with at most ``connections`` connections (kept alive)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        aiohttp_session=session,
    )


async def login(
    *, memo: OperatorMemo, settings: kopf.OperatorSettings, logger: Any, **_: Any
) -> kopf.AiohttpSession:
    context = memo.context
    access = context.cluster
    try:
        configuration = access.configuration()
    except ClusterAccessError as exc:
        raise kopf.LoginError(exc.message) from None
    logger.debug(f"logging in through the {access.describe()}")
    info = connection_info(configuration, trust_env=settings.networking.trust_env)
    return bounded_session(info, pool_size(context.settings.api_connections, context.namespaces))
