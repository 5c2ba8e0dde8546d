"""The manifests we ship, against a real kube-apiserver 1.20.2 (no node: objects are stored,
validated, defaulted and authorized for real, but no pod runs; tests/e2e/cluster runs them).

The quickstart is rendered as users render it, with the host's current kubectl (kustomize v5),
through the test overlay that gives 1.20 what it lacks (a policy/v1beta1 PodDisruptionBudget)
and the local images, then applied with the 1.20 kubectl: once, first time, no retry. The two
Jobs' commands (`kubebots init-credentials`, `kubebots create-bots`) run as host processes with
their ServiceAccounts' tokens, so the real authorizer judges what they do.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

from tests.deploy.render import render
from tests.e2e.harness.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "tests" / "e2e" / "overlays" / "quickstart-1.20"
EXAMPLE_BOTS = ROOT / "deploy" / "quickstart" / "bots"
NS = "kubebots-system"
KUBEBOTS = str(Path(sys.executable).with_name("kubebots"))
CLUSTER_KINDS = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def as_yaml(objects: list[dict[str, object]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def applied(stdout: str) -> dict[str, str]:
    """`kubectl apply` output -> {kind.group/name: created|configured|unchanged}."""
    result: dict[str, str] = {}
    for line in stdout.splitlines():
        name, _, verb = line.rpartition(" ")
        result[name] = verb
    return result


def versions(cp: ControlPlane, manifests: str) -> dict[str, str]:
    """{kind/namespace/name: resourceVersion} of the objects in ``manifests``."""
    listed = json.loads(
        cp.kubectl("get", "-f", "-", "-o", "json", input=manifests, check=True).stdout
    )
    return {
        f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o["metadata"][
            "resourceVersion"
        ]
        for o in listed["items"]
    }


def can_i(cp: ControlPlane, sa: str, *args: str) -> bool:
    proc = cp.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{NS}:{sa}")
    return proc.stdout.strip() == "yes"


def test_the_quickstart_applies_first_time_and_again_on_kubernetes_1_20() -> None:
    rendered = render(OVERLAY)
    assert rendered.stderr == ""
    objects = rendered.objects
    assert not [o for o in objects if o["kind"] in {"ClusterKopfPeering", "Bot"}]
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1beta1"  # 1.20 has no policy/v1 PDB

    with ControlPlane() as cp:
        # What a server-side dry run can check before anything exists: the cluster-scoped part.
        cluster = as_yaml([o for o in objects if o["kind"] in CLUSTER_KINDS])
        dry = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=cluster)
        assert dry.returncode == 0, dry.stderr
        assert "customresourcedefinition.apiextensions.k8s.io/bots.kubebots.io" in dry.stdout

        # The real thing: one apply of everything, first time, no retry.
        first = cp.kubectl("apply", "-f", "-", input=rendered.text, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        verbs = applied(first.stdout)
        assert len(verbs) == len(objects)
        assert set(verbs.values()) == {"created"}
        for name in (
            "namespace/kubebots-system",
            "deployment.apps/kubebots-operator",
            "deployment.apps/kubebots-runtime",
            "statefulset.apps/kubebots-postgres",
            "service/kubebots-postgres",
            "job.batch/kubebots-init-credentials",
            "poddisruptionbudget.policy/kubebots-runtime",
            "configmap/kubebots-example-bots",
            "job.batch/kubebots-example-bots",
            "role.rbac.authorization.k8s.io/kubebots-example-bots",
            "clusterrole.rbac.authorization.k8s.io/kubebots-example-bots",
        ):
            assert verbs[name] == "created", name

        # Applying again (a user re-running the quick start) changes nothing and fails nothing,
        # the Job (whose pod template is immutable) included; a server-side dry run agrees.
        dry = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered.text)
        assert dry.returncode == 0, dry.stderr
        before = versions(cp, rendered.text)
        assert len(before) == len(objects)
        again = cp.kubectl("apply", "-f", "-", input=rendered.text, timeout=120)
        assert again.returncode == 0, again.stderr
        verbs = applied(again.stdout)
        # Client-side apply always patches a StatefulSet's volumeClaimTemplates (the apiserver
        # adds defaults to the list it compares); the patch is a no-op, as checked below.
        assert verbs.pop("statefulset.apps/kubebots-postgres") in {"unchanged", "configured"}
        assert set(verbs.values()) == {"unchanged"}, again.stdout
        assert versions(cp, rendered.text) == before  # nothing stored changed

        # What the apiserver stored is what was rendered.
        sts = json.loads(
            cp.kubectl("-n", NS, "get", "statefulset", "kubebots-postgres", "-o", "json").stdout
        )
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert "storageClassName" not in claim["spec"]
        assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "kubebots-e2e/postgres:15"
        )

        # RBAC as the real authorizer sees it.
        assert can_i(cp, "kubebots-operator", "create", "clusterkopfpeerings.kopf.dev")
        assert can_i(cp, "kubebots-operator", "patch", "clusterkopfpeerings.kopf.dev")
        assert not can_i(cp, "kubebots-operator", "delete", "clusterkopfpeerings.kopf.dev")
        assert can_i(cp, "kubebots-runtime", "get", "secrets", "-n", "default")
        assert not can_i(cp, "kubebots-runtime", "list", "secrets", "-n", "default")
        job_sa = "kubebots-init-credentials"
        assert can_i(cp, job_sa, "create", "secrets", "-n", NS)
        for name in ("kubebots-postgres", "kubebots-store", "kubebots-api-keys"):
            assert can_i(cp, job_sa, "get", f"secrets/{name}", "-n", NS)
        assert not can_i(cp, job_sa, "get", "secrets/other", "-n", NS)
        assert not can_i(cp, job_sa, "list", "secrets", "-n", NS)
        assert not can_i(cp, job_sa, "update", "secrets/kubebots-store", "-n", NS)
        assert not can_i(cp, job_sa, "create", "secrets", "-n", "default")
        bots_sa = "kubebots-example-bots"
        for verb in ("get", "create"):
            assert can_i(cp, bots_sa, verb, "bots.kubebots.io", "-n", "default")
            assert not can_i(cp, bots_sa, verb, "bots.kubebots.io", "-n", NS)
        for verb in ("list", "watch", "update", "patch", "delete"):
            assert not can_i(cp, bots_sa, verb, "bots.kubebots.io", "-n", "default")
        assert can_i(cp, bots_sa, "get", "customresourcedefinitions/bots.kubebots.io")
        assert not can_i(cp, bots_sa, "get", "customresourcedefinitions/kopfpeerings.kopf.dev")
        assert not can_i(cp, bots_sa, "list", "customresourcedefinitions")
        assert not can_i(cp, bots_sa, "get", "secrets", "-n", "default")

        workdir = Path(cp.workdir)
        check_create_bots_as_its_service_account(cp, workdir)
        check_init_credentials_as_its_service_account(cp, workdir)
        check_bots(cp)


def service_account_env(cp: ControlPlane, workdir: Path, sa: str) -> dict[str, str]:
    """An environment in which kubebots reaches the apiserver as the ServiceAccount ``sa`` of
    kubebots-system (a kubeconfig with its token: no pod here)."""
    token = cp.service_account_token(NS, sa)
    kubeconfig = workdir / f"{sa}.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)},
                    }
                ],
                "users": [{"name": "job", "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "job"}}],
                "current-context": "e2e",
            }
        )
    )
    kubeconfig.chmod(0o600)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KUBEBOTS_", "KUBERNETES_SERVICE_")) and k.lower() != "http_proxy"
    }
    return env | {"KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1,localhost"}


def check_create_bots_as_its_service_account(cp: ControlPlane, workdir: Path) -> None:
    """`kubebots create-bots` as the Job kubebots-example-bots runs it, with only its
    ServiceAccount's rights: the example Bot is created once, and a re-run keeps the user's
    edits. (The e2e cluster scenarios run it as the Job.)"""
    env = service_account_env(cp, workdir, "kubebots-example-bots")

    def run(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBEBOTS, "create-bots", "--wait-crd", "60", *map(str, paths)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    first = run(EXAMPLE_BOTS)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout == "Bot default/hello: created\n"
    bot = json.loads(cp.kubectl("-n", "default", "get", "bot", "hello", "-o", "json").stdout)
    assert bot["spec"] == yaml.safe_load((EXAMPLE_BOTS / "hello.yaml").read_text())["spec"]
    assert "labels" not in bot["metadata"]  # as written, nothing added

    # The user edits the Bot; the Job runs again (a re-apply after `delete job`): kept.
    edit = '{"spec": {"systemPrompt": "Edited by the user."}}'
    cp.kubectl("-n", "default", "patch", "bot", "hello", "--type=merge", "-p", edit, check=True)
    edited = json.loads(cp.kubectl("-n", "default", "get", "bot", "hello", "-o", "json").stdout)
    again = run(EXAMPLE_BOTS)
    assert again.returncode == 0, again.stderr
    assert (again.stdout, again.stderr) == ("Bot default/hello: exists, kept as it is\n", "")
    now = json.loads(cp.kubectl("-n", "default", "get", "bot", "hello", "-o", "json").stdout)
    assert now["metadata"]["resourceVersion"] == edited["metadata"]["resourceVersion"]
    assert now["spec"]["systemPrompt"] == "Edited by the user."

    # Outside the namespace its Role covers, the real authorizer refuses, and the command says
    # what to grant.
    elsewhere = workdir / "elsewhere.yaml"
    elsewhere.write_text(
        (EXAMPLE_BOTS / "hello.yaml").read_text().replace("namespace: default", f"namespace: {NS}")
    )
    refused = run(elsewhere)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith(f"create-bots: Bot {NS}/hello: HTTP 403 Forbidden: ")
    assert refused.stderr.rstrip().endswith(
        f"(grant `get` and `create` on bots.kubebots.io in namespace {NS})"
    )
    assert cp.kubectl("-n", NS, "get", "bots", "-o", "name", check=True).stdout == ""


def check_init_credentials_as_its_service_account(cp: ControlPlane, workdir: Path) -> None:
    """`kubebots init-credentials` with only the Job's ServiceAccount's rights (a host process
    here; the e2e cluster scenarios run it as the Job)."""
    env = service_account_env(cp, workdir, "kubebots-init-credentials")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBEBOTS, "init-credentials", "--namespace", NS],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines() == [
        "Secret kubebots-system/kubebots-postgres: created (keys: password)",
        "Secret kubebots-system/kubebots-store: created (keys: url, conversations-url)",
        "Secret kubebots-system/kubebots-api-keys: created"
        " (keys: admin-key, keys.yaml, client-key)",
    ]
    data = {
        name: {
            k: base64.b64decode(v).decode()
            for k, v in json.loads(
                cp.kubectl("-n", NS, "get", "secret", name, "-o", "json", check=True).stdout
            )["data"].items()
        }
        for name in ("kubebots-postgres", "kubebots-store", "kubebots-api-keys")
    }
    password = data["kubebots-postgres"]["password"]
    url = urlsplit(data["kubebots-store"]["url"])
    assert unquote(url.password or "") == password
    assert url.hostname == "kubebots-postgres.kubebots-system.svc"
    generated = [
        password,
        data["kubebots-store"]["url"],
        data["kubebots-api-keys"]["admin-key"],
        data["kubebots-api-keys"]["client-key"],
    ]
    for value in generated:
        assert len(value) >= 32
        assert value not in first.stdout + first.stderr  # names only, never a value

    second = run()
    assert second.returncode == 0, second.stderr
    assert [line.rsplit(": ", 1)[1] for line in second.stdout.splitlines()] == [
        "exists, kept as it is"
    ] * 3
    assert (
        base64.b64decode(
            cp.kubectl(
                "-n", NS, "get", "secret", "kubebots-postgres", "-o", "jsonpath={.data.password}"
            ).stdout
        ).decode()
        == password
    )


def check_bots(cp: ControlPlane) -> None:
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/bots.kubebots.io",
        "--timeout=60s",
        check=True,
    )
    bots = [*sorted((ROOT / "examples" / "bots").glob("*.yaml")), EXAMPLE_BOTS / "hello.yaml"]
    for path in bots:
        ok = cp.kubectl("apply", "--dry-run=server", "-f", str(path))
        assert ok.returncode == 0, (path, ok.stderr)

    bad_enum = (
        (ROOT / "examples" / "bots" / "support.yaml")
        .read_text()
        .replace("provider: openai", "provider: anthropic")
    )
    rejected = cp.kubectl("apply", "-f", "-", input=bad_enum)
    assert rejected.returncode != 0
    assert "spec.llm.provider" in rejected.stderr

    typo = (
        (ROOT / "examples" / "bots" / "support.yaml")
        .read_text()
        .replace("maxTokens:", "maxTokenz:")
    )
    # kubectl 1.20 neither validates nor prunes unknown fields of a CRD with preserved
    # unknown fields: the typo reaches the operator, which refuses it by its path.
    cp.kubectl("apply", "-f", "-", input=typo, check=True)
    kept = cp.kubectl(
        "get", "bot", "support", "-o", "jsonpath={.spec.llm.maxTokenz}", check=True
    ).stdout
    assert kept == "512"
    cp.kubectl("delete", "bot", "support", check=True)

    # bot/hello: created by `kubebots create-bots` above.
    header = cp.kubectl("get", "bots", "-A", check=True).stdout.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "READY", "REASON", "MODEL", "SERVED", "AGE"]
    short = cp.kubectl("get", "bot", "hello", "-o", "name", check=True).stdout.strip()
    assert short == "bot.kubebots.io/hello"
