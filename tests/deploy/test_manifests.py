"""The manifests under deploy/: they parse, the kustomizations hold together (for kustomize
v2.0.3, embedded in kubectl 1.20), RBAC is least privilege and the pods are locked down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAMESPACE = "kubebots-system"
IMAGE = "ghcr.io/kubebots/kubebots"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})
KUSTOMIZATIONS = [*sorted(DEPLOY.rglob("kustomization.yaml")), ROOT / "crds" / "kustomization.yaml"]
# What kustomize v2.0.3 understands (no `labels`, `components`, `replacements`, `patches`...).
KUSTOMIZE_V2_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "commonAnnotations",
    "resources",
    "bases",
    "crds",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patchesStrategicMerge",
    "patchesJson6902",
    "images",
    "vars",
    "configurations",
}


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in YAML_FILES:
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            yield path, doc


def find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def rules(cluster_role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in cluster_role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


OPERATOR = find("Deployment", "kubebots-operator")
RUNTIME = find("Deployment", "kubebots-runtime")


def test_there_are_manifests() -> None:
    assert len(YAML_FILES) >= 10


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict)
        if path.name != "kustomization.yaml":
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert doc["metadata"]["name"], path


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_lists_what_exists_in_kustomize_v2_terms(path: Path) -> None:
    (k,) = documents(path)
    assert set(k) <= KUSTOMIZE_V2_FIELDS, set(k) - KUSTOMIZE_V2_FIELDS
    listed = k.get("resources", []) + k.get("bases", []) + k.get("patchesStrategicMerge", [])
    assert listed, path
    for entry in listed:
        assert "://" not in entry and not entry.startswith(("github.com", "git@")), entry
    for entry in k.get("resources", []) + k.get("patchesStrategicMerge", []):
        # v2.0.3: `resources` are files, inside the kustomization's own directory.
        target = (path.parent / entry).resolve()
        assert target.is_file(), f"{path}: {entry} is not a file"
        assert target.parent == path.parent.resolve() or path.parent.resolve() in target.parents
    for entry in k.get("bases", []):
        assert (path.parent / entry / "kustomization.yaml").is_file(), f"{path}: base {entry}"


def test_every_manifest_is_reached_from_deploy_default() -> None:
    reached: set[Path] = set()

    def walk(directory: Path) -> None:
        (k,) = documents(directory / "kustomization.yaml")
        reached.update((directory / r).resolve() for r in k.get("resources", []))
        for base in k.get("bases", []):
            walk((directory / base).resolve())

    walk(DEPLOY / "default")
    unreached = {
        p.resolve()
        for p in YAML_FILES
        if p.name != "kustomization.yaml" and "argocd" not in p.parts
    } - reached
    assert not unreached
    assert (ROOT / "crds" / "bots.kubebots.io.yaml").resolve() in reached


def test_default_pins_the_image_of_both_deployments() -> None:
    (k,) = documents(DEPLOY / "default" / "kustomization.yaml")
    assert [i["name"] for i in k["images"]] == [IMAGE]
    for deployment in (OPERATOR, RUNTIME):
        assert container(deployment)["image"].split(":")[0] == IMAGE


def test_namespaced_objects_are_in_kubebots_system() -> None:
    cluster_kinds = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
        "ConfigMap",  # deploy/argocd: a patch for Argo CD's own namespace
    }
    for path, doc in manifests():
        if doc["kind"] not in cluster_kinds:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{path}: {doc['kind']}"
        elif doc["kind"] != "ConfigMap":
            assert "namespace" not in doc["metadata"], f"{path}: {doc['kind']}"


def test_operator_rbac_is_exactly_what_kopf_and_the_operator_need() -> None:
    assert rules(find("ClusterRole", "kubebots-operator")) == {
        ("kubebots.io", "bots"): {"get", "list", "watch", "patch", "update"},
        ("kubebots.io", "bots/status"): {"get", "patch", "update"},
        ("kubebots.io", "bots/finalizers"): {"update"},
        ("", "events"): {"create", "patch"},
        ("", "secrets"): {"get", "list", "watch"},
        ("", "namespaces"): {"list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
        ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
    }


def test_runtime_rbac_only_gets_secrets() -> None:
    assert rules(find("ClusterRole", "kubebots-runtime")) == {("", "secrets"): {"get"}}


def test_no_wildcards_in_any_role() -> None:
    for _, doc in manifests():
        if doc["kind"] in {"Role", "ClusterRole"}:
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], doc["metadata"]["name"]


@pytest.mark.parametrize("name", ["kubebots-operator", "kubebots-runtime"])
def test_each_deployment_runs_as_its_bound_service_account(name: str) -> None:
    deployment = find("Deployment", name)
    find("ServiceAccount", name)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
    binding = find("ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]


@pytest.mark.parametrize("deployment", [OPERATOR, RUNTIME], ids=["operator", "runtime"])
def test_pods_are_non_root_with_a_read_only_root_filesystem(deployment: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Service links would put KUBEBOTS_*_PORT-like variables next to the KUBEBOTS_* settings.
    assert pod["enableServiceLinks"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # Writable places are emptyDirs.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The config store URL comes from the Secret, never from a literal.
    assert env(c)["KUBEBOTS_STORE"]["valueFrom"] == {
        "secretKeyRef": {"name": "kubebots-store", "key": "url"}
    }
    for variable in env(c).values():
        if variable["name"].endswith(("_KEY", "_STORE", "_URL")):  # secrets: only by reference
            assert "value" not in variable, variable["name"]


def test_operator_deployment() -> None:
    spec = OPERATOR["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    c = container(OPERATOR)
    args = c["args"]
    assert args[:2] == ["operator", "-A"]
    assert args[args.index("--liveness") + 1] == "http://0.0.0.0:8080/healthz"
    assert (
        args[args.index("--peering") + 1]
        == find("ClusterKopfPeering", "kubebots")["metadata"]["name"]
    )
    probe = c["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8080


def test_runtime_deployment() -> None:
    spec = RUNTIME["spec"]
    assert spec["replicas"] == 2
    c = container(RUNTIME)
    assert c["args"] == ["serve"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[c[probe]["httpGet"]["port"]] == 8000
    variables = env(c)
    assert variables["KUBEBOTS_HOST"]["value"] == "0.0.0.0"
    assert variables["KUBEBOTS_PORT"]["value"] == "8000"
    assert variables["KUBEBOTS_SECRETS"]["value"] == "kubernetes"  # apiKeySecretRef via the API
    assert variables["KUBEBOTS_REPLICA_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    # The data dir (also the working directory: relative sqlite paths) is a writable emptyDir.
    data_dir = variables["KUBEBOTS_DATA_DIR"]["value"]
    assert c["workingDir"] == data_dir
    assert "emptyDir" in volumes[mounts[data_dir]["name"]]
    # The API keys file is in the mounted kubebots-api-keys Secret.
    keys_file = Path(variables["KUBEBOTS_API_KEYS_FILE"]["value"])
    mount = mounts[str(keys_file.parent)]
    assert mount["mountPath"] == "/etc/kubebots/keys"
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # a subPath mount never sees a rotated Secret
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "kubebots-api-keys"
    items = secret.get("items")
    assert not items or keys_file.name in [item["path"] for item in items]


def test_the_service_selects_the_runtime_pods_only() -> None:
    service = find("Service", "kubebots-runtime")
    selector = service["spec"]["selector"]
    runtime_labels = RUNTIME["spec"]["template"]["metadata"]["labels"]
    operator_labels = OPERATOR["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= runtime_labels.items()
    assert not selector.items() <= operator_labels.items()
    assert RUNTIME["spec"]["selector"]["matchLabels"].items() <= runtime_labels.items()
    (port,) = service["spec"]["ports"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert port["port"] == 80
    ports = {p["name"]: p["containerPort"] for p in container(RUNTIME)["ports"]}
    assert ports.get(port["targetPort"], port["targetPort"]) == 8000


def test_the_pdb_covers_the_runtime_pods() -> None:
    pdb = find("PodDisruptionBudget", "kubebots-runtime")
    assert pdb["apiVersion"] == "policy/v1beta1"  # Kubernetes 1.20 has no policy/v1
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= RUNTIME["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < RUNTIME["spec"]["replicas"]


def test_the_kopf_peering_crds_are_installed() -> None:
    names = {
        d["metadata"]["name"] for _, d in manifests() if d["kind"] == "CustomResourceDefinition"
    }
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names


EXAMPLES = [
    *sorted((ROOT / "examples" / "bots").glob("*.yaml")),
    ROOT / "examples" / "cluster" / "private-llm.yaml",
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_bots_validate(path: Path) -> None:
    exe = shutil.which("kubebots", path=str(Path(sys.executable).parent))
    assert exe
    result = subprocess.run(
        [exe, "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("KUBEBOTS_")},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
