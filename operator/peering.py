"""The kopf peering object, made by the operator itself before kopf starts.

``kubectl apply -k`` on a fresh cluster cannot create a ClusterKopfPeering in the same apply
as its CRD ("no matches for kind"), and kopf silently keeps no peering when the object is
missing (its keep-alives find nothing to patch). So with ``--peering NAME`` the operator makes
sure the object exists: the ClusterKopfPeering (``-A``) or a KopfPeering in each watched
namespace (``-n``). An existing object is left alone (read first, so an operator allowed only
to read and patch peerings works where an administrator created the object).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .kube import describe_api_error, status_kind

GROUP, VERSION = "kopf.dev", "v1"
CRDS_HINT = "apply deploy/peering/crds.yaml (part of `kubectl apply -k deploy/default`) first"
#: Seconds one API call may take (a hung API must not hang the operator's start).
REQUEST_TIMEOUT = 10.0
#: HTTP statuses worth another attempt (the API is starting, overloaded or behind a proxy).
RETRYABLE = {429, 500, 502, 503, 504}

log = logging.getLogger("kubebots.operator.peering")


class PeeringSetupError(RuntimeError):
    """The peering object is missing and cannot be created; the message says what to fix."""


class PeeringApi(Protocol):
    """The part of ``kubernetes.client.CustomObjectsApi`` used here."""

    def get_cluster_custom_object(
        self, group: str, version: str, plural: str, name: str, *, _request_timeout: float
    ) -> Any:
        """Read one cluster-scoped object."""

    def create_cluster_custom_object(
        self, group: str, version: str, plural: str, body: Any, *, _request_timeout: float
    ) -> Any:
        """Create one cluster-scoped object."""

    def get_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        *,
        _request_timeout: float,
    ) -> Any:
        """Read one namespaced object."""

    def create_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: Any,
        *,
        _request_timeout: float,
    ) -> Any:
        """Create one namespaced object."""


@dataclass(frozen=True)
class PeeringRef:
    """One peering object: the ClusterKopfPeering (``namespace`` None) or a KopfPeering."""

    name: str
    namespace: str | None = None

    @property
    def kind(self) -> str:
        return "ClusterKopfPeering" if self.namespace is None else "KopfPeering"

    @property
    def plural(self) -> str:
        return self.kind.lower() + "s"

    def __str__(self) -> str:
        where = f" in namespace '{self.namespace}'" if self.namespace else ""
        return f"{self.kind} '{self.name}'{where}"

    def body(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "labels": {"app.kubernetes.io/managed-by": "kubebots-operator"},
        }
        if self.namespace is not None:
            meta["namespace"] = self.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "metadata": meta}


def peering_refs(name: str, namespaces: list[str] | None) -> list[PeeringRef]:
    """What ``kubebots operator --peering NAME`` needs: ``namespaces`` None means ``-A``.

    kopf also accepts namespace patterns (``team-*``): no object can be made for a pattern.
    """
    if namespaces is None:
        return [PeeringRef(name)]
    refs = []
    for ns in namespaces:
        if any(c in ns for c in "*?[]!"):
            log.warning("no KopfPeering '%s' made for the namespace pattern '%s'", name, ns)
            continue
        refs.append(PeeringRef(name, ns))
    return refs


def _forbidden(ref: PeeringRef, verb: str) -> PeeringSetupError:
    scope = "ClusterRole" if ref.namespace is None else "Role or ClusterRole"
    return PeeringSetupError(
        f"cannot {verb} the {ref}: the operator's ServiceAccount lacks the verb '{verb}' on "
        f"'{ref.plural}' in API group '{GROUP}'; add it to its {scope} "
        "(deploy/operator/rbac.yaml)"
    )


def _crd_missing(ref: PeeringRef) -> PeeringSetupError:
    return PeeringSetupError(
        f"the kopf peering CRD '{ref.plural}.{GROUP}' is not installed, so the {ref} cannot "
        f"be made: {CRDS_HINT}"
    )


def _exists(api: PeeringApi, ref: PeeringRef) -> bool:
    try:
        if ref.namespace is None:
            api.get_cluster_custom_object(
                GROUP, VERSION, ref.plural, ref.name, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            api.get_namespaced_custom_object(
                GROUP,
                VERSION,
                ref.namespace,
                ref.plural,
                ref.name,
                _request_timeout=REQUEST_TIMEOUT,
            )
    except ApiException as exc:
        if exc.status == 404:
            # The object's own 404 names its kind; an unknown resource is a bare 404 page.
            if status_kind(exc) == ref.plural:
                return False
            raise _crd_missing(ref) from None
        if exc.status == 403:
            raise _forbidden(ref, "get") from None
        raise
    return True


def _create(api: PeeringApi, ref: PeeringRef) -> bool:
    """Create ``ref``; False when someone else just did (409)."""
    try:
        if ref.namespace is None:
            api.create_cluster_custom_object(
                GROUP, VERSION, ref.plural, ref.body(), _request_timeout=REQUEST_TIMEOUT
            )
        else:
            api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ref.namespace,
                ref.plural,
                ref.body(),
                _request_timeout=REQUEST_TIMEOUT,
            )
    except ApiException as exc:
        if exc.status == 409:
            return False
        if exc.status == 403:
            raise _forbidden(ref, "create") from None
        if exc.status == 404 and status_kind(exc) == "namespaces":
            raise PeeringSetupError(
                f"the namespace '{ref.namespace}' does not exist, so the {ref} cannot be made: "
                "create the namespace (or stop watching it)"
            ) from None
        if exc.status == 404:
            raise _crd_missing(ref) from None
        raise
    return True


def ensure_peering(
    api: PeeringApi,
    refs: list[PeeringRef],
    *,
    give_up_after: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[PeeringRef]:
    """Create each missing peering object; return those created.

    API outages (connection errors, 429, 5xx) are retried for ``give_up_after`` seconds; what
    a retry cannot fix (missing RBAC verbs, a missing CRD or namespace) raises at once.
    """
    deadline = clock() + give_up_after
    delay = 0.5
    created: list[PeeringRef] = []
    pending = list(refs)
    while pending:
        ref = pending[0]
        try:
            if not _exists(api, ref) and _create(api, ref):
                created.append(ref)
                log.info("created the kopf peering object: %s", ref)
        except PeeringSetupError:
            raise
        except (ApiException, HTTPError, OSError) as exc:
            transient = not isinstance(exc, ApiException) or exc.status in RETRYABLE
            if not transient or clock() + delay > deadline:
                raise PeeringSetupError(
                    f"cannot make sure the {ref} exists: {describe_api_error(exc)}"
                ) from None
            log.warning(
                "peering set-up: the API did not answer (%s); retrying", describe_api_error(exc)
            )
            sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        pending.pop(0)
    return created
