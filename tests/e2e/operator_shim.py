"""Run ``kubebots operator`` with kopf's kubeconfig login added when the product registers none.

Product bug (operator/handlers.py ``build_registry``): a plain ``kopf.OperatorRegistry()`` has no
login handlers (only kopf's default SmartOperatorRegistry adds them), so the operator fails at
start with ``LoginError: Ran out of valid credentials`` in a cluster and out of one. This shim
adds kopf's own ``login_via_client`` (in-cluster credentials, else KUBECONFIG) only when the
registry has no authentication handler, and says so on stderr; it is a no-op once fixed.
"""

from __future__ import annotations

import sys
from typing import Any

import kopf
from kopf._core.intents import causes, piggybacking

from kubebots.operator import cli
from kubebots.runtime.cli import main

_build = cli.build_registry


def _build_with_login(cfg: Any) -> kopf.OperatorRegistry:
    registry = _build(cfg)
    logins = registry._activities.get_handlers(activity=causes.Activity.AUTHENTICATION)
    if not logins:
        print("e2e shim: the operator registry has no login handler: adding kopf's", file=sys.stderr)
        kopf.on.login(registry=registry, id="e2e-login")(piggybacking.login_via_client)
    return registry


cli.build_registry = _build_with_login  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
