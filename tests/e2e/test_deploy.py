"""The manifests we ship, against a real kube-apiserver 1.20.2 and its kubectl."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_and_crd_install_and_validate() -> None:
    with ControlPlane() as cp:
        rendered = cp.kubectl("kustomize", str(ROOT / "deploy" / "default"), check=True).stdout
        assert "kind: ClusterKopfPeering" in rendered
        # A fresh cluster learns the peering kind from its CRD first (deploy/README.md).
        cp.kubectl("apply", "-f", str(ROOT / "deploy" / "peering" / "crds.yaml"), check=True)
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/clusterkopfpeerings.kopf.dev",
            "--timeout=60s",
            check=True,
        )
        dry = cp.kubectl("apply", "--dry-run=client", "-k", str(ROOT / "deploy" / "default"))
        assert dry.returncode == 0, dry.stderr
        assert "customresourcedefinition.apiextensions.k8s.io/bots.kubebots.io" in dry.stdout
        assert "deployment.apps/kubebots-operator" in dry.stdout

        cp.kubectl("apply", "-f", str(ROOT / "crds" / "bots.kubebots.io.yaml"), check=True)
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/bots.kubebots.io",
            "--timeout=60s",
            check=True,
        )
        for path in sorted((ROOT / "examples" / "bots").glob("*.yaml")):
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

        cp.kubectl("apply", "-f", str(ROOT / "examples" / "bots" / "support.yaml"), check=True)
        header = cp.kubectl("get", "bots", "-A", check=True).stdout.splitlines()[0].split()
        assert header == ["NAMESPACE", "NAME", "READY", "MODEL", "SERVED", "AGE"]
        short = cp.kubectl("get", "bot", "support", "-o", "name", check=True).stdout.strip()
        assert short == "bot.kubebots.io/support"
