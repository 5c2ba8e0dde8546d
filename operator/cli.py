"""``kubebots operator``: run the kopf operator (registered through an entry point).

Before kopf starts: the cluster access is resolved (a pod's service host/port and token, else
the kubeconfig) and, with ``--peering NAME``, the peering object is made if missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from typing import Any

import kopf

from kubebots.runtime.kube_config import ClusterAccess, ClusterAccessError

from .handlers import build_registry
from .liveness import ApiLiveness, VersionCheck
from .peering import PeeringSetupError, ensure_peering, peering_refs
from .services import OperatorContext, OperatorMemo
from .settings import OperatorSettings

log = logging.getLogger("kubebots.operator")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("operator", help="run the Bot operator (kopf)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeat)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument(
        "--peering",
        help="kopf peering name (HA: standby replicas by priority); the ClusterKopfPeering "
        "(-A) or KopfPeerings (-n) of that name are created when missing",
    )
    p.add_argument("--priority", type=int, default=0, help="peering priority (higher wins)")
    p.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    p.add_argument("--store", help="config store URL (default: $KUBEBOTS_STORE)")
    p.set_defaults(handler=run_operator)


def _quiet_handlers(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(
        ("Handler 'bot' succeeded", "Handler 'secrets' succeeded")
    )


def run_operator(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from kubernetes import client

    from kubebots.runtime.cli.logs import configure_logging
    from kubebots.runtime.tracing import configure_tracing

    overrides = {"store": args.store} if args.store else {}
    cfg = OperatorSettings(**overrides)
    configure_logging("INFO")
    logging.getLogger("kopf").setLevel(logging.INFO)
    # kopf logs every successful probe (each /healthz); failures still show as errors
    logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per liveness probe
    # the event handlers run on every Bot and Secret event: no line per event
    logging.getLogger("kopf.objects").addFilter(_quiet_handlers)
    namespaces: list[str] | None = None if args.all_namespaces else (args.namespace or ["default"])
    access = ClusterAccess(env, cfg.service_account_dir)
    try:
        api_client = access.api_client(connections=cfg.api_threads)
        log.info("Kubernetes API through the %s", access.describe())
        if args.peering and not args.standalone:
            ensure_peering(
                client.CustomObjectsApi(api_client),
                peering_refs(args.peering, namespaces),
                give_up_after=cfg.api_liveness_timeout,
            )
    except (ClusterAccessError, PeeringSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    liveness = ApiLiveness(
        VersionCheck(api_client, cfg.api_probe_timeout), timeout=cfg.api_liveness_timeout
    )
    context = OperatorContext(
        settings=cfg,
        namespaces=namespaces,
        cluster=access,
        api_client=api_client,
        liveness=liveness,
    )
    # spans exported over OTLP when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set
    stop_tracing = configure_tracing(env, service_name="kubebots-operator")
    try:
        kopf.run(
            registry=build_registry(),
            memo=OperatorMemo(context=context),
            clusterwide=args.all_namespaces,
            namespaces=namespaces or (),
            standalone=args.standalone,
            priority=args.priority,
            peering_name=args.peering,
            liveness_endpoint=args.liveness,
        )
    finally:
        stop_tracing()  # what is queued is sent
    return 0
