"""How kubebots reaches the Kubernetes API: a pod's service account, else a kubeconfig.

In a pod the kubelet injects ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` (the
``kubernetes`` Service's ClusterIP, always, even with ``enableServiceLinks: false``) and mounts
the service account's token and CA. Those are used as given: no cluster DNS name
(``kubernetes.default.svc``) is involved, so the API is reachable before, or without, cluster
DNS. Outside a pod, the kubeconfig (``$KUBECONFIG``, else ``~/.kube/config``) is used.

Both the operator (kopf's login and its own reads) and the runtime's Secret reader build their
clients from :class:`ClusterAccess`, so they always talk to the same address with the same
credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KubebotsError

#: Where the kubelet mounts a pod's service account (token, ca.crt, namespace).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_HOST = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT = "KUBERNETES_SERVICE_PORT"


class ClusterAccessError(KubebotsError):
    """Neither a pod's service account nor a kubeconfig gives access to a cluster."""


@dataclass(frozen=True)
class ClusterAccess:
    """Where the API and the credentials are: ``env`` (the process environment, read at the
    edge) and the service account directory (the kubelet's mount unless told otherwise)."""

    env: Mapping[str, str]
    service_account_dir: Path = SERVICE_ACCOUNT_DIR

    @property
    def token_file(self) -> Path:
        return self.service_account_dir / "token"

    @property
    def ca_file(self) -> Path:
        return self.service_account_dir / "ca.crt"

    @property
    def in_cluster(self) -> bool:
        """In a pod: the service host and port are set and a token is mounted."""
        return bool(
            self.env.get(SERVICE_HOST) and self.env.get(SERVICE_PORT) and self.token_file.is_file()
        )

    @property
    def kubeconfig(self) -> str:
        home = self.env.get("HOME") or os.path.expanduser("~")
        return self.env.get("KUBECONFIG") or str(Path(home) / ".kube" / "config")

    def configuration(self) -> Any:
        """A fresh ``kubernetes.client.Configuration`` (never the client's global default).

        In a pod its token is re-read from the mounted file (kubelet rotates it) at most a
        minute after it changes.
        """
        from kubernetes import client
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.incluster_config import InClusterConfigLoader
        from kubernetes.config.kube_config import load_kube_config

        configuration = client.Configuration()
        try:
            if self.in_cluster:
                InClusterConfigLoader(
                    token_filename=str(self.token_file),
                    cert_filename=str(self.ca_file),
                    environ=self.env,
                ).load_and_set(configuration)  # type: ignore[no-untyped-call]
            else:
                load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=self.kubeconfig,
                    client_configuration=configuration,
                    persist_config=False,  # never write to the file (read-only filesystems)
                )
        except (ConfigException, OSError) as exc:
            raise ClusterAccessError(
                f"no access to a Kubernetes cluster through the {self.describe()}: {exc}"
            ) from None
        return configuration

    def describe(self) -> str:
        if self.in_cluster:
            host, port = self.env[SERVICE_HOST], self.env[SERVICE_PORT]
            return f"in-cluster ({host}:{port}, service account {self.service_account_dir})"
        return f"kubeconfig {self.kubeconfig}"

    def api_client(self, connections: int | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` on :meth:`configuration`, keeping up to
        ``connections`` connections alive (the client's default: 5 per CPU)."""
        from kubernetes import client

        configuration = self.configuration()
        if connections is not None:
            configuration.connection_pool_maxsize = connections
        return client.ApiClient(configuration)
