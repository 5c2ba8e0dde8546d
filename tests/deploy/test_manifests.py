"""What deploy/ renders to, as users render it (`kubectl kustomize`, the host's kustomize v5):
no warning, every file reached, a first `kubectl apply -k` that cannot fail on ordering, least
privilege RBAC, locked-down pods, and a quickstart whose pods find every Secret they need."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebots.operator import create_bots, credentials
from kubebots.runtime.cli import build_parser
from tests.deploy.render import ROOT, render
from tests.operator.support import FakeSecrets

DEPLOY = ROOT / "deploy"
NAMESPACE = "kubebots-system"
IMAGE = "ghcr.io/kubebots/kubebots"
POSTGRES_IMAGE = "postgres:17"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})
#: Every kustomization users can apply, and the e2e tests' overlays of them.
KUSTOMIZATIONS = sorted(
    p.parent
    for p in [
        *DEPLOY.rglob("kustomization.yaml"),
        ROOT / "crds" / "kustomization.yaml",
        *(ROOT / "tests" / "e2e" / "overlays").rglob("kustomization.yaml"),
    ]
)
#: Fields kustomize v5 deprecates (it warns) or that v2-era kustomizations used.
DEPRECATED_FIELDS = {
    "bases",
    "commonLabels",
    "patchesStrategicMerge",
    "patchesJson6902",
    "vars",
    "imageTags",
    "crds",
}
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
}
E2E_OVERLAY = ROOT / "tests" / "e2e" / "overlays" / "quickstart-1.20"
#: The example Bots' Job, its ConfigMap, and where the Bots go.
EXAMPLE_BOTS_JOB = "kubebots-example-bots"
EXAMPLE_BOTS_DIR = DEPLOY / "quickstart" / "bots"
BOTS_NAMESPACE = "default"
E2E_IMAGES = {
    f"{IMAGE}:0.1.0": "kubebots-e2e/kubebots:dev",
    POSTGRES_IMAGE: "kubebots-e2e/postgres:15",
}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@cache
def rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    return tuple(render(directory).objects)


def default() -> tuple[dict[str, Any], ...]:
    return rendered(DEPLOY / "default")


def quickstart() -> tuple[dict[str, Any], ...]:
    return rendered(DEPLOY / "quickstart")


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in objects if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def pod_templates(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    assert not workload["spec"]["template"]["spec"].get("initContainers")
    result: dict[str, Any] = containers[0]
    return result


def env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def rules(role: dict[str, Any]) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """{(group, resource, resourceNames): verbs}."""
    granted: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        names = tuple(sorted(rule.get("resourceNames", [])))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource, names), set()).update(rule["verbs"])
    return granted


# -- kustomize -----------------------------------------------------------------------------


def test_there_are_kustomizations_and_manifests() -> None:
    assert {rel(k) for k in KUSTOMIZATIONS} >= {
        "crds",
        "deploy/default",
        "deploy/quickstart",
        "tests/e2e/overlays/quickstart-1.20",
    }
    assert len(YAML_FILES) >= 12


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_each_kustomization_renders_without_a_warning(directory: Path) -> None:
    result = render(directory)
    assert result.stderr == ""  # kustomize prints deprecation warnings there
    assert result.objects
    for obj in result.objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"]["name"], obj


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_each_kustomization_lists_local_files_and_directories_only(directory: Path) -> None:
    (k,) = [d for d in yaml.safe_load_all((directory / "kustomization.yaml").read_text()) if d]
    assert not set(k) & DEPRECATED_FIELDS, set(k) & DEPRECATED_FIELDS
    assert k["resources"]
    for entry in k["resources"]:
        assert "://" not in entry and not entry.startswith(("github.com", "git@")), entry
        target = directory / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), entry


def reached_from(directory: Path) -> set[Path]:
    """The files a kustomization reads: its resources (recursively) and generators' files."""
    (k,) = [d for d in yaml.safe_load_all((directory / "kustomization.yaml").read_text()) if d]
    reached: set[Path] = set()
    for entry in k["resources"]:
        target = (directory / entry).resolve()
        reached |= reached_from(target) if target.is_dir() else {target}
    for generator in k.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            target = (directory / entry.rpartition("=")[2]).resolve()
            assert target.is_file(), entry
            reached.add(target)
    return reached


def test_every_manifest_is_reached_from_the_quickstart_and_all_but_its_own_from_default() -> None:
    manifests = {
        p.resolve()
        for p in YAML_FILES
        if p.name != "kustomization.yaml" and not {"argocd", "monitoring"} & set(p.parts)
    }
    assert manifests - reached_from(DEPLOY / "quickstart") == set()
    own = {p.resolve() for p in (DEPLOY / "quickstart").rglob("*.yaml")} - {
        (DEPLOY / "quickstart" / "kustomization.yaml").resolve()
    }
    assert manifests - own == reached_from(DEPLOY / "default") - {
        (ROOT / "crds" / "bots.kubebots.io.yaml").resolve()
    }
    assert (ROOT / "crds" / "bots.kubebots.io.yaml").resolve() in reached_from(DEPLOY / "default")


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_no_object_needs_a_crd_of_the_same_apply(directory: Path) -> None:
    # kubectl maps every object before it sends any: on a fresh cluster a custom resource next
    # to its CRD fails with `no matches for kind` (why no ClusterKopfPeering and no Bot here).
    objects = rendered(directory)
    defined = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"])
        for crd in objects
        if crd["kind"] == "CustomResourceDefinition"
    }
    used = {(obj["apiVersion"].split("/")[0], obj["kind"]) for obj in objects}
    assert not defined & used
    assert not [o for o in objects if o["apiVersion"].startswith(("kopf.dev/", "kubebots.io/"))]


def test_the_quickstart_is_default_plus_postgres_the_credentials_and_the_example_bots() -> None:
    base = {key(o): o for o in default()}
    full = {key(o): o for o in quickstart()}
    for k, obj in base.items():
        assert full[k] == obj, k  # deploy/default's objects, unchanged
    assert set(full) - set(base) == {
        ("Service", NAMESPACE, "kubebots-postgres"),
        ("StatefulSet", NAMESPACE, "kubebots-postgres"),
        ("ServiceAccount", NAMESPACE, "kubebots-init-credentials"),
        ("Role", NAMESPACE, "kubebots-init-credentials"),
        ("RoleBinding", NAMESPACE, "kubebots-init-credentials"),
        ("Job", NAMESPACE, "kubebots-init-credentials"),
        ("ConfigMap", NAMESPACE, EXAMPLE_BOTS_JOB),
        ("ServiceAccount", NAMESPACE, EXAMPLE_BOTS_JOB),
        ("Role", BOTS_NAMESPACE, EXAMPLE_BOTS_JOB),
        ("RoleBinding", BOTS_NAMESPACE, EXAMPLE_BOTS_JOB),
        ("ClusterRole", "", EXAMPLE_BOTS_JOB),
        ("ClusterRoleBinding", "", EXAMPLE_BOTS_JOB),
        ("Job", NAMESPACE, EXAMPLE_BOTS_JOB),
    }
    # Nothing twice, nothing else: 14 objects of deploy/default, 13 of the quickstart's own.
    assert (len(default()), len(quickstart())) == (len(base), len(full)) == (14, 27)


@pytest.mark.parametrize("directory", [DEPLOY / "default", DEPLOY / "quickstart"], ids=rel)
def test_every_object_is_labelled_part_of_kubebots_but_no_selector_is(directory: Path) -> None:
    for obj in rendered(directory):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubebots", key(obj)
        selector = (obj.get("spec") or {}).get("selector") or {}
        assert "app.kubernetes.io/part-of" not in selector.get("matchLabels", selector), key(obj)
        template = (obj.get("spec") or {}).get("template")
        if template:  # pods carry it too (includeTemplates), e.g. for `kubectl get pods -l`
            assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubebots"


@pytest.mark.parametrize("directory", [DEPLOY / "default", DEPLOY / "quickstart"], ids=rel)
def test_namespaced_objects_are_in_kubebots_system(directory: Path) -> None:
    elsewhere = []
    for obj in rendered(directory):
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], key(obj)
        elif obj["metadata"].get("namespace") != NAMESPACE:
            elsewhere.append(key(obj))
    # But the example Bots' rights, in the namespace of the Bots they create.
    expected = {
        DEPLOY / "default": [],
        DEPLOY / "quickstart": [
            ("Role", BOTS_NAMESPACE, EXAMPLE_BOTS_JOB),
            ("RoleBinding", BOTS_NAMESPACE, EXAMPLE_BOTS_JOB),
        ],
    }
    assert elsewhere == expected[directory]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_no_secret_and_no_literal_credential_is_shipped(directory: Path) -> None:
    objects = rendered(directory)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for where, pod in pod_templates(objects):
        for c in pod["containers"]:
            for variable in env(c).values():
                if variable["name"].endswith(("_KEY", "_STORE", "_URL", "PASSWORD")):
                    assert "value" not in variable, (where, variable["name"])
    assert "password:" not in render(directory).text.lower()


# -- RBAC ----------------------------------------------------------------------------------


def test_operator_rbac_is_exactly_what_kopf_and_the_operator_need() -> None:
    assert rules(find(default(), "ClusterRole", "kubebots-operator")) == {
        ("kubebots.io", "bots", ()): {"get", "list", "watch", "patch", "update"},
        ("kubebots.io", "bots/status", ()): {"get", "patch", "update"},
        ("kubebots.io", "bots/finalizers", ()): {"update"},
        ("", "events", ()): {"create", "patch"},
        ("", "secrets", ()): {"get", "list", "watch"},
        ("", "namespaces", ()): {"list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions", ()): {"get", "list", "watch"},
        # The operator creates its ClusterKopfPeering `kubebots` when it is missing.
        ("kopf.dev", "clusterkopfpeerings", ()): {"get", "list", "watch", "patch", "create"},
        ("kopf.dev", "kopfpeerings", ()): {"get", "list", "watch", "patch"},
    }


def test_runtime_rbac_only_gets_secrets() -> None:
    assert rules(find(default(), "ClusterRole", "kubebots-runtime")) == {
        ("", "secrets", ()): {"get"}
    }


def test_the_credentials_job_may_read_its_three_secrets_and_create_secrets_only() -> None:
    role = find(quickstart(), "Role", "kubebots-init-credentials")
    names = (credentials.API_KEYS_SECRET, credentials.POSTGRES_SECRET, credentials.STORE_SECRET)
    assert rules(role) == {
        ("", "secrets", tuple(sorted(names))): {"get"},
        ("", "secrets", ()): {"create"},
    }


def test_the_example_bots_job_may_get_and_create_bots_in_default_and_read_the_bot_crd() -> None:
    objects = quickstart()
    role = find(objects, "Role", EXAMPLE_BOTS_JOB)
    assert role["metadata"]["namespace"] == BOTS_NAMESPACE
    assert rules(role) == {("kubebots.io", "bots", ()): {"get", "create"}}
    cluster_role = find(objects, "ClusterRole", EXAMPLE_BOTS_JOB)
    assert rules(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", (create_bots.CRD_NAME,)): {"get"}
    }
    # That CRD is the one of kind Bot the quickstart installs.
    crd = find(objects, "CustomResourceDefinition", create_bots.CRD_NAME)
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("kubebots.io", "Bot")
    subject = [{"kind": "ServiceAccount", "name": EXAMPLE_BOTS_JOB, "namespace": NAMESPACE}]
    for binding_kind, role_kind, namespace in (
        ("RoleBinding", "Role", BOTS_NAMESPACE),
        ("ClusterRoleBinding", "ClusterRole", None),
    ):
        binding = find(objects, binding_kind, EXAMPLE_BOTS_JOB)
        assert binding["metadata"].get("namespace") == namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": EXAMPLE_BOTS_JOB,
        }
        assert binding["subjects"] == subject
    # Nothing else is bound to its ServiceAccount.
    bound = [
        key(o)
        for o in objects
        if o["kind"] in {"RoleBinding", "ClusterRoleBinding"}
        and any(s["name"] == EXAMPLE_BOTS_JOB for s in o["subjects"])
    ]
    assert len(bound) == 2
    job = find(objects, "Job", EXAMPLE_BOTS_JOB)
    find(objects, "ServiceAccount", EXAMPLE_BOTS_JOB)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == EXAMPLE_BOTS_JOB


def test_no_wildcards_in_any_role() -> None:
    for obj in quickstart():
        if obj["kind"] in {"Role", "ClusterRole"}:
            for rule in obj["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "kubebots-operator"),
        ("Deployment", "kubebots-runtime"),
        ("Job", "kubebots-init-credentials"),
    ],
)
def test_each_workload_runs_as_its_bound_service_account(kind: str, name: str) -> None:
    objects = quickstart()
    workload = find(objects, kind, name)
    find(objects, "ServiceAccount", name)
    assert workload["spec"]["template"]["spec"]["serviceAccountName"] == name
    binding_kind, role_kind = (
        ("RoleBinding", "Role") if kind == "Job" else ("ClusterRoleBinding", "ClusterRole")
    )
    binding = find(objects, binding_kind, name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role_kind,
        "name": name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]


def test_postgres_needs_no_api_access() -> None:
    pod = find(quickstart(), "StatefulSet", "kubebots-postgres")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


# -- pods ----------------------------------------------------------------------------------


def quickstart_pods() -> list[tuple[str, dict[str, Any]]]:
    return list(pod_templates(quickstart()))


def test_the_quickstart_runs_five_workloads() -> None:
    assert sorted(where for where, _ in quickstart_pods()) == [
        "Deployment/kubebots-operator",
        "Deployment/kubebots-runtime",
        "Job/kubebots-example-bots",
        "Job/kubebots-init-credentials",
        "StatefulSet/kubebots-postgres",
    ]


@pytest.mark.parametrize(
    "workload",
    [
        "Deployment/kubebots-operator",
        "Deployment/kubebots-runtime",
        "Job/kubebots-example-bots",
        "Job/kubebots-init-credentials",
        "StatefulSet/kubebots-postgres",
    ],
)
def test_pods_meet_the_restricted_pod_security_standard(workload: str) -> None:
    # The namespace enforces `restricted` (Kubernetes >= 1.23): a pod short of it is refused.
    namespace = find(quickstart(), "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = dict(quickstart_pods())[workload]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    # Service links would put KUBEBOTS_*_PORT-like variables next to the KUBEBOTS_* settings.
    assert pod["enableServiceLinks"] is False
    for volume in pod.get("volumes", []):
        assert set(volume) & {"emptyDir", "secret", "configMap", "persistentVolumeClaim"}, volume
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sc
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    assert c["imagePullPolicy"] == "IfNotPresent"
    # Writable places are emptyDirs (or the database's own volume).
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize(
    "workload", ["Deployment/kubebots-operator", "Deployment/kubebots-runtime"]
)
def test_the_store_url_comes_from_the_secret(workload: str) -> None:
    (c,) = dict(quickstart_pods())[workload]["containers"]
    assert env(c)["KUBEBOTS_STORE"]["valueFrom"] == {
        "secretKeyRef": {"name": "kubebots-store", "key": "url"}
    }


def test_operator_deployment() -> None:
    operator = find(default(), "Deployment", "kubebots-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    c = container(operator)
    args = c["args"]
    assert args[:2] == ["operator", "-A"]
    assert args[args.index("--liveness") + 1] == "http://0.0.0.0:8080/healthz"
    # The operator creates this ClusterKopfPeering itself; only the CRDs are shipped.
    assert args[args.index("--peering") + 1] == "kubebots"
    assert not [o for o in quickstart() if o["kind"] == "ClusterKopfPeering"]
    probe = c["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8080


def test_runtime_deployment() -> None:
    runtime = find(default(), "Deployment", "kubebots-runtime")
    spec = runtime["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    c = container(runtime)
    assert c["args"] == ["serve"]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
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
    # Only keys.yaml: the plaintext client-key of the quickstart never reaches the runtime.
    assert [item["path"] for item in secret["items"]] == [keys_file.name]
    assert [item["key"] for item in secret["items"]] == ["keys.yaml"]


def test_the_service_selects_the_runtime_pods_only() -> None:
    objects = quickstart()
    service = find(objects, "Service", "kubebots-runtime")
    runtime = find(objects, "Deployment", "kubebots-runtime")
    selector = service["spec"]["selector"]
    runtime_labels = runtime["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= runtime_labels.items()
    for where, _ in pod_templates(objects):
        if where != "Deployment/kubebots-runtime":
            kind, name = where.split("/")
            labels = find(objects, kind, name)["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= labels.items(), where
    assert runtime["spec"]["selector"]["matchLabels"].items() <= runtime_labels.items()
    (port,) = service["spec"]["ports"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert port["port"] == 80
    ports = {p["name"]: p["containerPort"] for p in container(runtime)["ports"]}
    assert ports.get(port["targetPort"], port["targetPort"]) == 8000


def test_the_pdb_is_policy_v1_and_covers_the_runtime_pods() -> None:
    pdb = find(default(), "PodDisruptionBudget", "kubebots-runtime")
    runtime = find(default(), "Deployment", "kubebots-runtime")
    assert pdb["apiVersion"] == "policy/v1"  # policy/v1beta1 is gone from Kubernetes 1.25 on
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= runtime["spec"]["template"]["metadata"]["labels"].items()
    assert pdb["spec"]["minAvailable"] < runtime["spec"]["replicas"]


def test_the_kopf_peering_crds_are_installed() -> None:
    names = {d["metadata"]["name"] for d in default() if d["kind"] == "CustomResourceDefinition"}
    assert names == {"bots.kubebots.io", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_default_pins_the_image_of_both_deployments() -> None:
    for name in ("kubebots-operator", "kubebots-runtime"):
        assert container(find(default(), "Deployment", name))["image"] == f"{IMAGE}:0.1.0"


def test_the_quickstart_runs_one_kubebots_image_and_the_official_postgres() -> None:
    images = {where: pod["containers"][0]["image"] for where, pod in quickstart_pods()}
    assert images == {
        "Deployment/kubebots-operator": f"{IMAGE}:0.1.0",
        "Deployment/kubebots-runtime": f"{IMAGE}:0.1.0",
        "Job/kubebots-example-bots": f"{IMAGE}:0.1.0",
        "Job/kubebots-init-credentials": f"{IMAGE}:0.1.0",
        "StatefulSet/kubebots-postgres": POSTGRES_IMAGE,
    }


# -- the quickstart's PostgreSQL and credentials ---------------------------------------------


def test_postgres_statefulset() -> None:
    objects = quickstart()
    sts = find(objects, "StatefulSet", "kubebots-postgres")
    spec = sts["spec"]
    assert spec["replicas"] == 1
    c = container(sts)
    assert c["image"] == POSTGRES_IMAGE
    variables = env(c)
    # The role, database and Service are those of the URL init-credentials writes.
    assert variables["POSTGRES_USER"]["value"] == credentials.POSTGRES_USER
    assert variables["POSTGRES_DB"]["value"] == credentials.POSTGRES_DB
    assert variables["POSTGRES_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": credentials.POSTGRES_SECRET, "key": "password"}
    }
    assert variables["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"
    pod = spec["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (999, 999)
    assert c["securityContext"]["runAsUser"] == 999
    # The data volume: a claim from the cluster's default StorageClass, PGDATA inside it.
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/postgresql/data"] == claim["metadata"]["name"]
    assert variables["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    # What the read-only root filesystem leaves writable: socket/lock dir and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/var/run/postgresql"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe[0] == "pg_isready"
    assert probe[probe.index("-h") + 1] == "127.0.0.1"  # TCP: not the init-time socket server
    assert probe[probe.index("-U") + 1] == credentials.POSTGRES_USER
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    service = find(objects, "Service", credentials.POSTGRES_SERVICE)
    assert spec["serviceName"] == service["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == credentials.POSTGRES_PORT
    assert ports[port["targetPort"]] == 5432
    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for where, pod_spec in pod_templates(objects):
        if where != "StatefulSet/kubebots-postgres":
            kind, name = where.split("/")
            other = find(objects, kind, name)["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= other.items(), where
            assert pod_spec


def test_the_credentials_job() -> None:
    job = find(quickstart(), "Job", "kubebots-init-credentials")
    assert 1 <= job["spec"]["backoffLimit"] <= 10
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    c = container(job)
    assert c["args"] == ["init-credentials", "--namespace", "$(POD_NAMESPACE)"]
    assert env(c)["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


# -- the quickstart's example Bots -------------------------------------------------------------


def example_bots_configmap() -> dict[str, Any]:
    return find(quickstart(), "ConfigMap", EXAMPLE_BOTS_JOB)


def test_the_example_bots_configmap_holds_the_files_of_bots_unchanged() -> None:
    configmap = example_bots_configmap()
    assert configmap["metadata"]["labels"]["app.kubernetes.io/component"] == "example-bots"
    assert "binaryData" not in configmap
    files = sorted(EXAMPLE_BOTS_DIR.iterdir())
    assert [p.name for p in files] == ["hello.yaml"]
    assert configmap["data"] == {p.name: p.read_text() for p in files}


def test_the_example_bots_are_valid_and_created_in_the_namespace_the_job_may_write(
    tmp_path: Path,
) -> None:
    # What the Job reads: the ConfigMap's keys as files of its mounted directory.
    for name, text in example_bots_configmap()["data"].items():
        (tmp_path / name).write_text(text)
    bots = create_bots.load_bots([tmp_path])  # the runtime's schema, as the command checks
    assert [(b.namespace, b.name) for b in bots] == [(BOTS_NAMESPACE, "hello")]
    role = find(quickstart(), "Role", EXAMPLE_BOTS_JOB)
    assert {b.namespace for b in bots} == {role["metadata"]["namespace"]}


def test_the_example_bots_job() -> None:
    job = find(quickstart(), "Job", EXAMPLE_BOTS_JOB)
    assert 1 <= job["spec"]["backoffLimit"] <= 10
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert pod.get("automountServiceAccountToken", True) is True  # it calls the API
    c = container(job)
    assert c["args"][:3] == ["create-bots", "--wait-crd", "300"]
    (directory,) = c["args"][3:]
    mount = {m["mountPath"]: m for m in c["volumeMounts"]}[directory]
    assert mount["readOnly"] is True
    assert "subPath" not in mount
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert volume["configMap"] == {"name": example_bots_configmap()["metadata"]["name"]}
    assert not c.get("env") and not c.get("envFrom")  # no Secret, no setting: only the files
    # The command is the one registered, and it reads the arguments the Job gives.
    args = build_parser(load=["create-bots"]).parse_args(c["args"])
    assert args.handler is create_bots.run_create_bots
    assert (args.paths, args.wait_crd) == ([directory], 300.0)


def secret_references(pod: dict[str, Any]) -> set[tuple[str, str, bool]]:
    """(Secret, key, optional) for every env secretKeyRef and Secret volume item."""
    found: set[tuple[str, str, bool]] = set()
    for c in pod["containers"]:
        for variable in c.get("env", []):
            ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                found.add((ref["name"], ref["key"], bool(ref.get("optional"))))
    for volume in pod.get("volumes", []):
        secret = volume.get("secret")
        if secret:
            for item in secret.get("items", []):
                found.add((secret["secretName"], item["key"], bool(secret.get("optional"))))
    return found


def test_every_secret_a_quickstart_pod_needs_is_one_init_credentials_creates() -> None:
    fake = FakeSecrets()
    credentials.init_credentials(fake, NAMESPACE)
    created = {(name, k) for (_, name), data in fake.secrets.items() for k in data}
    needed = set()
    for where, pod in quickstart_pods():
        for name, k, optional in secret_references(pod):
            if not optional:
                assert (name, k) in created, (where, name, k)
                needed.add((name, k))
    # The optional ones the Job provides too; kubebots-llm is the user's (an LLM key).
    optional = {
        (name, k) for _, pod in quickstart_pods() for name, k, opt in secret_references(pod) if opt
    }
    assert optional - created == {("kubebots-llm", "openai-api-key")}
    assert needed == {
        ("kubebots-store", "url"),
        ("kubebots-api-keys", "keys.yaml"),
        ("kubebots-postgres", "password"),
    }


# -- the e2e test node's overlay ---------------------------------------------------------------


def test_the_e2e_overlay_differs_from_the_quickstart_only_in_the_pdb_and_the_images() -> None:
    overlay = copy.deepcopy(rendered(E2E_OVERLAY))
    assert len(overlay) == len(quickstart())
    images: set[str] = set()
    for ours, theirs in zip(quickstart(), overlay, strict=True):
        assert key(ours) == key(theirs)
        if ours["kind"] == "PodDisruptionBudget":
            assert (ours["apiVersion"], theirs["apiVersion"]) == ("policy/v1", "policy/v1beta1")
            theirs["apiVersion"] = ours["apiVersion"]
        for (_, pod), (_, pod_theirs) in zip(
            pod_templates((ours,)), pod_templates((theirs,)), strict=True
        ):
            for c, c_theirs in zip(pod["containers"], pod_theirs["containers"], strict=True):
                assert E2E_IMAGES[c["image"]] == c_theirs["image"]
                images.add(c_theirs["image"])
                assert c_theirs["imagePullPolicy"] == "IfNotPresent"
                c_theirs["image"] = c["image"]
        assert ours == theirs, key(ours)
    assert images == set(E2E_IMAGES.values())
    assert not [i for i in images if i.endswith(":latest") or ":" not in i]


# -- examples --------------------------------------------------------------------------------

EXAMPLE_BOTS = [
    *sorted((ROOT / "examples" / "bots").glob("*.yaml")),
    ROOT / "examples" / "cluster" / "private-llm.yaml",
    ROOT / "examples" / "cluster" / "tools.yaml",
    EXAMPLE_BOTS_DIR / "hello.yaml",
]


@pytest.mark.parametrize("path", EXAMPLE_BOTS, ids=rel)
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


def test_the_quickstart_bot_needs_no_llm_key_and_stores_in_the_quickstart_postgres() -> None:
    (bot,) = [d for d in yaml.safe_load_all((EXAMPLE_BOTS[-1]).read_text()) if d]
    assert (bot["metadata"]["name"], bot["metadata"]["namespace"]) == ("hello", "default")
    assert bot["spec"]["llm"]["provider"] == "echo"
    storage = bot["spec"]["conversationStorage"]
    assert storage["backend"] == "postgres"
    runtime = container(find(quickstart(), "Deployment", "kubebots-runtime"))
    assert env(runtime)[storage["urlEnv"]]["valueFrom"]["secretKeyRef"] == {
        "name": credentials.STORE_SECRET,
        "key": "conversations-url",
        "optional": True,
    }
