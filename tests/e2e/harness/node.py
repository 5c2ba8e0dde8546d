"""A real single-node Kubernetes 1.20 cluster on this machine, for tests and ``make cluster``.

    with Node() as node:                      # root only; minutes the first time (builds)
        node.kubectl("get", "nodes", check=True)

Pieces, all host processes but the pods:
- etcd + kube-apiserver (:class:`ControlPlane`) bound to the node's address,
- kube-controller-manager (ServiceAccounts and their tokens, Deployments, StatefulSets, Jobs,
  Endpoints, volume binding) and kube-scheduler,
- kubelet with its built-in dockershim driving the docker daemon that ``host-setup.sh`` starts
  (Debian's docker.io, with a runc wrapper this sandbox needs), pods networked by Debian's CNI
  plugins (``bridge`` + ``host-local`` + ``portmap`` + ``loopback``),
- kube-proxy (iptables mode): Service ClusterIPs work from pods and from this host,
- a small cluster DNS (``clusterdns``) on the node's address: Service names resolve in pods.

The node's address is an extra address outside 127/8 on ``lo`` (kubelet refuses a loopback node
IP, and pods cannot reach an apiserver bound to 127.0.0.1); pods live in network namespaces the
kubelet makes on a bridge of this host. No traffic leaves the machine: nothing routes out of
the pod network (no masquerading) and the DNS answers only for the cluster domain.

No image is pulled: the pause image and every image a test runs are built locally
(``images.sh``). What was made (iptables chains, the bridge, the address, pod containers) is
removed by :meth:`Node.stop`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

from .clusterdns import ApiServerSource, ClusterDNS
from .controlplane import LOG_TAIL_LINES, ControlPlane, ControlPlaneError, _free_ports, _tail
from .docker import DockerError, docker_binary, host_setup

NODE_NAME = "kb-node"
#: The node's address (on ``lo``) and the pod network (the CNI bridge ``kbcni0``).
NODE_IP = "10.245.0.1"
POD_CIDR = "10.244.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "kbcni0"
PAUSE_IMAGE = "kubebots-e2e/pause:3.4.1"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
#: Processes of the running node, so that a run killed before its stop() is cleaned up next time.
STATE = Path(os.environ.get("KUBEBOTS_E2E_STATE", "/var/lib/kubebots-e2e"))
PID_FILE = STATE / "node.pids"
#: Held while a node runs: one node per machine (one address, one DNS port 53, one bridge).
LOCK_FILE = STATE / "node.lock"


class NodeError(ControlPlaneError):
    """The node could not be set up or did not become Ready (the message says why)."""


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 120.0) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class Node:
    """A control plane, the node's components and a cluster DNS; ``kubeconfig`` is admin."""

    def __init__(
        self,
        *,
        node_ip: str = NODE_IP,
        pod_cidr: str = POD_CIDR,
        ready_timeout: float = 120.0,
    ) -> None:
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.ready_timeout = ready_timeout
        self.cp = ControlPlane(address=node_ip, with_nodes=True)
        self.dns: ClusterDNS | None = None
        self.startup_seconds = 0.0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._tmp: Path | None = None
        self._added_ip = False
        self._lock: IO[bytes] | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            raise NodeError("the node is not started")
        return self._tmp

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise NodeError("a node needs root (kubelet, docker, iptables): run the tests as root")
        try:
            host_setup()  # Debian packages and the docker daemon (idempotent)
        except DockerError as exc:
            raise NodeError(str(exc)) from exc
        self._take_lock()
        began = time.monotonic()
        self._tmp = Path(tempfile.mkdtemp(prefix="kubebots-e2e-node-"))
        try:
            self._remove_leftovers()
            self._add_node_ip()
            self.cp.start()
            self._write_pids()
            source = ApiServerSource(self.cp.server, self.cp.token, self.cp.ca_file)
            self.dns = ClusterDNS(source, host=self.node_ip, port=53, domain=CLUSTER_DOMAIN)
            self.dns.start()
            self._start_controllers()
            self._write_cni_config()
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop kubelet first (no restarts), then remove pods, proxy rules, bridge, address."""
        for name in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
            self._terminate(name)
        self._remove_pod_containers()
        self._remove_pod_firewall_rules()
        if "kube-proxy" in self.cp.bins:
            _run([str(self.cp.bins["kube-proxy"]), "--cleanup"], check=False, timeout=60)
        _run(["ip", "link", "del", BRIDGE], check=False)
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        self.cp.stop()
        if self._added_ip:
            _run(["ip", "addr", "del", f"{self.node_ip}/32", "dev", "lo"], check=False)
            self._added_ip = False
        PID_FILE.unlink(missing_ok=True)
        if self._tmp is not None:
            # The kubelet's root dir may still hold mounts (secrets are tmpfs): unmount first.
            _unmount_below(self._tmp)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _take_lock(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        lock = LOCK_FILE.open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeError(
                "another node runs on this machine (`make cluster`, or another test run):"
                " one at a time; stop it first (`make cluster-down`)"
            ) from None
        self._lock = lock

    def logs_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._tmp is None:
            return "<no logs: the node is not started>"
        parts = [self.cp.logs_tail(lines)]
        for name in ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"):
            parts.append(f"--- {name} log (last {lines} lines) ---\n{_tail(self.log(name), lines)}")
        return "\n".join(parts)

    # -- clients -----------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(*args, input=input, check=check, timeout=timeout)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", check=True).stdout)

    # -- pieces ------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        with self.log(name).open("wb") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {**self.cp.pids(), **{name: proc.pid for name, proc in self._procs.items()}}
        PID_FILE.parent.mkdir(parents=True, exist_ok=True)
        PID_FILE.write_text(json.dumps(pids))

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _add_node_ip(self) -> None:
        shown = _run(["ip", "-o", "addr", "show", "dev", "lo"])
        if f" {self.node_ip}/" not in shown:  # else left by a run killed before its stop()
            _run(["ip", "addr", "add", f"{self.node_ip}/32", "dev", "lo"])
        self._added_ip = True

    def _remove_leftovers(self) -> None:
        """A run killed before its stop(): its processes, pods and bridge are in the way."""
        try:
            pids: dict[str, int] = json.loads(PID_FILE.read_text())
        except (OSError, ValueError):
            pids = {}
        for name, pid in pids.items():
            try:
                exe = Path(f"/proc/{pid}/exe").resolve().name
            except OSError:
                continue  # gone
            if exe == name:
                os.kill(pid, 9)
        PID_FILE.unlink(missing_ok=True)
        self._remove_pod_containers()
        self._remove_pod_firewall_rules()
        _run(["ip", "link", "del", BRIDGE], check=False)

    def _remove_pod_firewall_rules(self) -> None:
        """The CNI firewall plugin's rules of pods removed without a CNI DEL (by docker rm)."""
        net = ipaddress.ip_network(self.pod_cidr)
        listed = _run(["iptables", "-S", "CNI-FORWARD"], check=False).splitlines()
        for rule in listed:
            words = rule.split()
            addresses = [w.split("/")[0] for w in words if w.endswith("/32")]
            if words[:2] != ["-A", "CNI-FORWARD"] or not addresses:
                continue
            if all(ipaddress.ip_address(a) in net for a in addresses):
                _run(["iptables", "-D", *words[1:]], check=False)

    @staticmethod
    def _remove_pod_containers() -> None:
        docker = docker_binary()
        ids = _run(
            [docker, "ps", "-aq", "--filter", "label=io.kubernetes.docker.type"], check=False
        ).split()
        if ids:
            _run([docker, "rm", "-f", "-v", *ids], check=False, timeout=300)

    def _component_kubeconfig(self) -> str:
        return str(self.cp.kubeconfig)

    def _start_controllers(self) -> None:
        bins = self.cp.bins
        cm_port, sched_port = _free_ports(2)
        self._spawn(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={self._component_kubeconfig()}",
                f"--authentication-kubeconfig={self._component_kubeconfig()}",
                f"--authorization-kubeconfig={self._component_kubeconfig()}",
                f"--service-account-private-key-file={self.cp.workdir / 'sa.key'}",
                f"--root-ca-file={self.cp.ca_file}",
                "--leader-elect=false",
                "--allocate-node-cidrs=false",
                "--port=0",
                "--bind-address=127.0.0.1",
                f"--secure-port={cm_port}",
                "--controllers=*,-csrsigning,-csrapproving,-csrcleaner,-nodeipam,-cloud-node-lifecycle",
                # Fast reactions for tests: pods of a NotReady node are not evicted for 5 minutes.
                "--node-monitor-grace-period=40s",
                "--logtostderr=true",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--kubeconfig={self._component_kubeconfig()}",
                f"--authentication-kubeconfig={self._component_kubeconfig()}",
                f"--authorization-kubeconfig={self._component_kubeconfig()}",
                "--leader-elect=false",
                "--port=0",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--logtostderr=true",
                "--v=1",
            ],
        )

    def _write_cni_config(self) -> None:
        net = ipaddress.ip_network(self.pod_cidr)
        gateway = str(next(net.hosts()))
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True)
        config = {
            "cniVersion": "0.4.0",
            "name": "kubebots-e2e",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    # Nothing from a pod is routed off this machine.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                        "ranges": [[{"subnet": self.pod_cidr, "gateway": gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                # docker sets the FORWARD policy to DROP: accept the pods' own traffic (per pod
                # IP, in the CNI-FORWARD chain; removed with each pod).
                {"type": "firewall", "backend": "iptables"},
            ],
        }
        (conf_dir / "10-kubebots-e2e.conflist").write_text(json.dumps(config, indent=2))

    def _start_kubelet(self) -> None:
        bin_dir = next((d for d in CNI_BIN_DIRS if Path(d, "bridge").exists()), None)
        if bin_dir is None:
            raise NodeError(
                f"no CNI bridge plugin in {CNI_BIN_DIRS}: run host-setup.sh"
                " (it installs containernetworking-plugins)"
            )
        root = self.workdir / "kubelet"
        root.mkdir()
        resolv = self.workdir / "resolv.conf"
        resolv.write_text("")  # pods get only the cluster DNS, never the host's resolvers
        (port,) = _free_ports(1)
        self._spawn(
            "kubelet",
            [
                str(self.cp.bins["kubelet"]),
                f"--kubeconfig={self._component_kubeconfig()}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.node_ip}",
                f"--address={self.node_ip}",
                f"--port={port}",
                "--read-only-port=0",
                "--healthz-port=0",
                f"--root-dir={root}",
                "--container-runtime=docker",
                "--docker-endpoint=unix:///var/run/docker.sock",
                "--network-plugin=cni",
                f"--cni-bin-dir={bin_dir}",
                f"--cni-conf-dir={self.workdir / 'cni' / 'net.d'}",
                f"--cni-cache-dir={self.workdir / 'cni' / 'cache'}",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
                f"--cluster-dns={self.node_ip}",
                f"--cluster-domain={CLUSTER_DOMAIN}",
                f"--resolv-conf={resolv}",
                "--cgroup-driver=cgroupfs",
                "--cgroups-per-qos=false",
                "--enforce-node-allocatable=",
                "--fail-swap-on=false",
                # Images here are built, never pulled: garbage collection must not remove them.
                "--image-gc-high-threshold=100",
                "--image-gc-low-threshold=99",
                "--eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%",
                "--serialize-image-pulls=false",
                "--logtostderr=true",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        healthz, metrics = _free_ports(2)
        self._spawn(
            "kube-proxy",
            [
                str(self.cp.bins["kube-proxy"]),
                f"--kubeconfig={self._component_kubeconfig()}",
                f"--hostname-override={NODE_NAME}",
                f"--bind-address={self.node_ip}",
                f"--cluster-cidr={self.pod_cidr}",
                "--proxy-mode=iptables",
                # The sandbox's conntrack sysctls may not be writable: leave them as they are.
                "--conntrack-max-per-core=0",
                f"--healthz-bind-address=127.0.0.1:{healthz}",
                f"--metrics-bind-address=127.0.0.1:{metrics}",
                "--logtostderr=true",
                "--v=1",
            ],
        )

    def _wait_ready(self, began: float) -> None:
        deadline = began + self.ready_timeout
        last = "no Node object yet"
        while True:
            for name, proc in self._procs.items():
                code = proc.poll()
                if code is not None:
                    raise NodeError(
                        f"{name} exited with code {code} while the node started\n"
                        f"{_tail(self.log(name))}"
                    )
            last = self._readiness()
            if not last:
                return
            if time.monotonic() > deadline:
                raise NodeError(
                    f"node {NODE_NAME} not Ready within {self.ready_timeout:.0f}s: {last}\n"
                    f"{self.logs_tail()}"
                )
            time.sleep(0.5)

    def _readiness(self) -> str:
        """'' once the node is Ready and the default namespace has its ServiceAccount."""
        status, body = self.cp.request("GET", f"/api/v1/nodes/{NODE_NAME}", timeout=5)
        if status != 200 or not isinstance(body, dict):
            return f"GET node: HTTP {status}"
        conditions = {c["type"]: c for c in body.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        if ready.get("status") != "True":
            return f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message')})"
        status, body = self.cp.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        if status != 200:
            return "no default ServiceAccount yet"
        secrets = body.get("secrets") if isinstance(body, dict) else None
        return "" if secrets else "the default ServiceAccount has no token yet"

    # -- helpers for tests -------------------------------------------------------------------

    def add_host_path_volume(self, name: str, size: str = "1Gi", owner: int = 999) -> Path:
        """A PersistentVolume without a storage class (binds claims that name none)."""
        path = self.workdir / "volumes" / name
        path.mkdir(parents=True)
        os.chown(path, owner, owner)
        path.chmod(0o700)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(pv), check=True)
        return path


def _unmount_below(root: Path) -> None:
    """Unmount everything mounted below ``root`` (deepest first)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        _run(["umount", "-l", target], check=False)
