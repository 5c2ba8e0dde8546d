"""The quickstart deployed on a harness node, and what tests and ``make cluster`` need of it.

    deployed = Quickstart.deploy(node)       # `kubectl apply -k` once, then every pod Ready
    deployed.runtime_url(), deployed.client_key()

The quickstart is applied with the test overlay for 1.20 (tests/e2e/overlays/quickstart-1.20:
only what 1.20 lacks and the locally built images differ) by a current kubectl, as users do.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.deploy.render import host_kubectl

from .node import Node
from .waiting import wait_until

REPO = Path(__file__).resolve().parents[3]
OVERLAY = REPO / "tests" / "e2e" / "overlays" / "quickstart-1.20"
#: The example Bot the quickstart ships (ConfigMap + Job kubebots-example-bots create it).
HELLO_BOT = REPO / "deploy" / "quickstart" / "bots" / "hello.yaml"
EXAMPLE_BOTS_JOB = "kubebots-example-bots"
SYSTEM_NS = "kubebots-system"
RUNTIME = "app.kubernetes.io/component=runtime"
OPERATOR = "app.kubernetes.io/component=operator"
POSTGRES = "app.kubernetes.io/component=postgres"


class Quickstart:
    """The node with the quickstart deployed, and what the scenarios need from it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.apply_seconds = 0.0
        self.ready_seconds = 0.0

    # -- kubectl ----------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120.0) -> str:
        return self.node.kubectl(*args, input=input, check=True, timeout=timeout).stdout

    def host_kubectl(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [host_kubectl(), f"--kubeconfig={self.node.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HOME": str(self.node.workdir), "KUBECONFIG": ""},
        )

    def get(self, *args: str) -> Any:
        return self.node.get_json(*args)

    def pods(self, selector: str, namespace: str = SYSTEM_NS) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("-n", namespace, "pods", "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def secret(self, name: str, key: str, namespace: str = SYSTEM_NS) -> str:
        data = self.get("-n", namespace, "secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    # -- state ------------------------------------------------------------------------------

    def explain(self) -> str:
        """What to look at when something did not converge: pods, events, logs, the node."""
        events = self.node.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp").stdout
        parts = [
            self.node.kubectl(
                "get", "pods,deploy,sts,jobs,pvc,svc,bots", "-A", "-o", "wide"
            ).stdout,
            "\n".join(events.splitlines()[-40:]),
        ]
        for selector in (OPERATOR, RUNTIME, POSTGRES):
            for pod in self.pods(selector):
                name = pod["metadata"]["name"]
                logs = self.node.kubectl("-n", SYSTEM_NS, "logs", name, "--tail=30").stdout
                parts.append(f"--- logs of {name} ---\n{logs}")
        parts.append(self.node.logs_tail(20))
        return "\n".join(parts)

    def wait_ready_pods(
        self, selector: str, count: int, timeout: float = 180.0, namespace: str = SYSTEM_NS
    ) -> list[str]:
        """``count`` pods of ``selector``, all Running and Ready; their names."""

        def ready() -> list[str] | None:
            pods = self.pods(selector, namespace)
            names = [p["metadata"]["name"] for p in pods if _pod_ready(p)]
            return names if len(names) == count and len(pods) == count else None

        return wait_until(ready, f"{count} Ready pods {selector}", timeout, 1.0, self.explain)

    def wait_bot_ready(self, namespace: str, name: str, timeout: float = 120.0) -> dict[str, Any]:
        proc = self.node.kubectl(
            "-n",
            namespace,
            "wait",
            "--for=condition=Ready",
            f"bot/{name}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            raise AssertionError(f"bot/{name} not Ready: {proc.stderr}\n{self.explain()}")
        bot: dict[str, Any] = self.get("-n", namespace, "bot", name)
        return bot

    def runtime_url(self) -> str:
        """The runtime Service's ClusterIP (kube-proxy routes it from this host too)."""
        svc = self.get("-n", SYSTEM_NS, "service", "kubebots-runtime")
        return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def client_key(self) -> str:
        return self.secret("kubebots-api-keys", "client-key")

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.runtime_url(),
            headers={"Authorization": f"Bearer {self.client_key()}"},
            timeout=30,
        )

    def restarts(self, selector: str) -> dict[str, int]:
        return {
            p["metadata"]["name"]: sum(
                c.get("restartCount", 0) for c in p["status"].get("containerStatuses", [])
            )
            for p in self.pods(selector)
        }

    # -- deploying --------------------------------------------------------------------------

    def wait_job_complete(self, name: str, timeout: float = 120.0) -> None:
        proc = self.node.kubectl(
            "-n",
            SYSTEM_NS,
            "wait",
            "--for=condition=Complete",
            f"job/{name}",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            logs = self.node.kubectl("-n", SYSTEM_NS, "logs", f"job/{name}", "--tail=30").stdout
            raise AssertionError(
                f"job/{name} not Complete: {proc.stderr}\n--- its logs ---\n{logs}\n"
                f"{self.explain()}"
            )

    @classmethod
    def deploy(cls, node: Node, timeout: float = 240.0) -> Quickstart:
        """`kubectl apply -k` of the quickstart once (no retry), then every pod Running+Ready,
        then the example Bot (created by the Job kubebots-example-bots) Ready."""
        qs = cls(node)
        # No dynamic provisioner on this node: a volume without a class takes the PVC of the
        # StatefulSet (on a real cluster the default StorageClass provisions it).
        node.add_host_path_volume("kubebots-postgres-data")
        began = time.monotonic()
        proc = qs.host_kubectl("apply", "-k", str(OVERLAY))
        qs.apply_seconds = time.monotonic() - began
        if proc.returncode != 0:
            raise AssertionError(
                f"kubectl apply -k {OVERLAY} failed the first time:\n{proc.stdout}\n{proc.stderr}"
            )
        qs.wait_ready_pods(POSTGRES, 1, timeout)
        qs.wait_ready_pods(OPERATOR, 1, timeout)
        qs.wait_ready_pods(RUNTIME, 2, timeout)
        qs.ready_seconds = time.monotonic() - began
        qs.wait_job_complete(EXAMPLE_BOTS_JOB)
        qs.wait_bot_ready("default", "hello")
        return qs


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"
