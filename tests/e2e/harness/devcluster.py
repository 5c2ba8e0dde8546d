"""``make cluster`` / ``make cluster-down``: the e2e node, for people, with kubebots deployed.

    python3 -m tests.e2e.harness.devcluster up     # prints KUBECONFIG and a chat command
    python3 -m tests.e2e.harness.devcluster down

``up`` starts a keeper process in the background that builds the images (cached), starts the
node (``harness.node``), applies the quickstart from the local image (with its example Bot)
and waits for the Bot to be Ready; then it holds the node until ``down`` sends it SIGTERM, when it
removes everything it made. State lives in ``$KUBEBOTS_CLUSTER_DIR`` (default
``~/.cache/kubebots-e2e/cluster``): ``keeper.pid``, ``keeper.log``, ``kubeconfig``, ``ready``.
Root only (kubelet, docker, iptables), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .images import ensure_images
from .node import Node
from .quickstart import Quickstart

START_TIMEOUT = 45 * 60.0  # a first run builds Kubernetes and the images


def state_dir() -> Path:
    default = Path.home() / ".cache" / "kubebots-e2e" / "cluster"
    return Path(os.environ.get("KUBEBOTS_CLUSTER_DIR", default))


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "keeper.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def keep(state: Path) -> int:
    """The keeper: bring everything up, write ``ready``, hold until SIGTERM, tear down."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ensure_images()
    with Node() as node:
        qs = Quickstart.deploy(node)
        qs.wait_bot_ready("default", "hello")
        kubeconfig = state / "kubeconfig"
        kubeconfig.write_text(node.kubeconfig.read_text())
        kubeconfig.chmod(0o600)
        info = {
            "kubeconfig": str(kubeconfig),
            "runtime_url": qs.runtime_url(),
            "node_seconds": round(node.startup_seconds, 1),
            "ready_seconds": round(qs.ready_seconds, 1),
        }
        (state / "ready").write_text(json.dumps(info))
        print(f"[devcluster] up: {info}", flush=True)
        stop.wait()
        print("[devcluster] stopping", flush=True)
    return 0


def up(state: Path) -> int:
    if os.geteuid() != 0:
        print("make cluster needs root (kubelet, docker, iptables)", file=sys.stderr)
        return 1
    if _pid(state) is None:
        state.mkdir(parents=True, exist_ok=True)
        (state / "ready").unlink(missing_ok=True)
        with (state / "keeper.log").open("ab") as log:
            keeper = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.harness.devcluster", "keep"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "KUBEBOTS_CLUSTER_DIR": str(state)},
            )
        (state / "keeper.pid").write_text(str(keeper.pid))
        print(f"starting (log: {state / 'keeper.log'}; the first run builds for ~15 minutes)")
    deadline = time.monotonic() + START_TIMEOUT
    while not (state / "ready").exists():
        if _pid(state) is None:
            tail = (state / "keeper.log").read_text(errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            print("make cluster failed (log above)", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(
                f"not up within {START_TIMEOUT:.0f}s: see {state / 'keeper.log'}", file=sys.stderr
            )
            return 1
        time.sleep(1)
    info = json.loads((state / "ready").read_text())
    key = (
        "$(kubectl -n kubebots-system get secret kubebots-api-keys"
        " -o jsonpath='{.data.client-key}' | base64 -d)"
    )
    print(
        f"kubebots is up (node {info['node_seconds']}s,"
        f" quickstart Ready {info['ready_seconds']}s).\n"
        f"\n  export KUBECONFIG={info['kubeconfig']}\n"
        f"  kubectl get pods -n kubebots-system; kubectl get bots -A\n"
        f"\nChat with the example Bot through the runtime Service:\n\n"
        f"  curl -s {info['runtime_url']}/bots/default:hello/chat \\\n"
        f'    -H "Authorization: Bearer {key}" \\\n'
        f"    -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"message": "hello", "conversation_id": "try-1"}}\'\n'
        f"\nStop it with: make cluster-down"
    )
    return 0


def down(state: Path) -> int:
    pid = _pid(state)
    if pid is None:
        print("no cluster is running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 180
    while _pid(state) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    if _pid(state) is not None:
        print(f"the keeper (pid {pid}) did not stop: see {state / 'keeper.log'}", file=sys.stderr)
        return 1
    for name in ("keeper.pid", "ready", "kubeconfig"):
        (state / name).unlink(missing_ok=True)
    print("cluster stopped and removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.e2e.harness.devcluster")
    parser.add_argument("command", choices=("up", "down", "keep"))
    args = parser.parse_args(argv)
    state = state_dir()
    if args.command == "up":
        return up(state)
    if args.command == "down":
        return down(state)
    return keep(state)


if __name__ == "__main__":
    sys.exit(main())
