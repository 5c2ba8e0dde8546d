"""``kubebots operator``: run the kopf operator (registered through an entry point)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .handlers import build_registry
from .settings import OperatorSettings


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("operator", help="run the Bot operator (kopf)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", help="watch this namespace (repeat)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--peering", help="kopf peering name (HA: standby replicas by priority)")
    p.add_argument("--priority", type=int, default=0, help="peering priority (higher wins)")
    p.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    p.add_argument("--store", help="config store URL (default: $KUBEBOTS_STORE)")
    p.set_defaults(handler=run_operator)


def run_operator(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from kubebots.runtime.cli.logs import configure_logging

    overrides = {"store": args.store} if args.store else {}
    cfg = OperatorSettings(**overrides)
    configure_logging("INFO")
    logging.getLogger("kopf").setLevel(logging.INFO)
    namespaces: list[str] | None = None if args.all_namespaces else (args.namespace or ["default"])
    memo = kopf.Memo(cfg=cfg, namespaces=namespaces)
    kopf.run(
        registry=build_registry(cfg),
        memo=memo,
        clusterwide=args.all_namespaces,
        namespaces=namespaces or (),
        standalone=args.standalone,
        priority=args.priority,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )
    return 0
