"""The e2e harness itself: a real kube-apiserver 1.20 + etcd that enforces RBAC.

Never skipped: when the binaries cannot be built or the control plane does not start, this fails
with the build output or the last lines of the etcd/apiserver logs. The first run on a machine
builds the binaries (about 5 minutes); later runs start in seconds.
"""

from __future__ import annotations

import json

from tests.e2e.harness.controlplane import K8S_VERSION, ControlPlane

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: e2e-settings
  namespace: x
data:
  greeting: hello
"""


def test_control_plane_serves_kubectl_and_enforces_rbac() -> None:
    with ControlPlane() as cp:
        version = cp.kubectl("version", "--short", check=True).stdout
        assert f"Client Version: v{K8S_VERSION}" in version
        assert f"Server Version: v{K8S_VERSION}" in version

        namespaces = cp.kubectl("get", "ns", "-o", "name", check=True).stdout.split()
        assert "namespace/default" in namespaces
        assert "namespace/kube-system" in namespaces

        cp.kubectl("create", "namespace", "x", check=True)
        assert cp.kubectl("get", "ns", "x", "-o", "name", check=True).stdout.strip() == (
            "namespace/x"
        )

        # kubectl apply works: client-side dry run stores nothing, the real apply does.
        dry = cp.kubectl("apply", "--dry-run=client", "-f", "-", input=CONFIGMAP, check=True)
        assert "configmap/e2e-settings created (dry run)" in dry.stdout
        assert cp.kubectl("-n", "x", "get", "configmap", "e2e-settings").returncode != 0
        cp.kubectl("apply", "-f", "-", input=CONFIGMAP, check=True)
        got = cp.kubectl("-n", "x", "get", "configmap", "e2e-settings", "-o", "json", check=True)
        assert json.loads(got.stdout)["data"] == {"greeting": "hello"}

        # A bare ServiceAccount, with a bound token from the TokenRequest API (kubectl 1.20 has
        # no `create token`): the raw POST through kubectl, then the same through urllib.
        cp.kubectl("-n", "x", "create", "serviceaccount", "bot", check=True)
        request = json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            }
        )
        raw = cp.kubectl(
            "create",
            "--raw",
            "/api/v1/namespaces/x/serviceaccounts/bot/token",
            "-f",
            "-",
            input=request,
            check=True,
        )
        sa_token = json.loads(raw.stdout)["status"]["token"]
        assert sa_token.count(".") == 2  # a JWT
        assert cp.service_account_token("x", "bot").count(".") == 2

        # The admin (system:masters) may do anything; the bare ServiceAccount may not.
        assert cp.kubectl("auth", "can-i", "list", "namespaces").stdout.strip() == "yes"
        denied = cp.kubectl("auth", "can-i", "list", "namespaces", token=sa_token)
        assert (denied.returncode, denied.stdout.strip()) == (1, "no")
        forbidden = cp.kubectl("get", "ns", token=sa_token)
        assert forbidden.returncode != 0
        assert "forbidden" in forbidden.stderr.lower()
        assert 'User "system:serviceaccount:x:bot" cannot list' in forbidden.stderr
        status, body = cp.request("GET", "/api/v1/namespaces", token=sa_token)
        assert status == 403, body
        assert body["reason"] == "Forbidden"

        # ...and the token really authenticates: a Role grant takes effect for it.
        role = "-n x create role cm-reader --verb=get,list --resource=configmaps"
        cp.kubectl(*role.split(), check=True)
        binding = "-n x create rolebinding bot-reads-cm --role=cm-reader --serviceaccount=x:bot"
        cp.kubectl(*binding.split(), check=True)
        allowed = cp.kubectl("-n", "x", "auth", "can-i", "list", "configmaps", token=sa_token)
        assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")
        listed = cp.kubectl("-n", "x", "get", "configmaps", "-o", "name", token=sa_token)
        assert "configmap/e2e-settings" in listed.stdout.split(), listed.stderr
        status, _ = cp.request("GET", "/api/v1/namespaces/x/secrets", token=sa_token)
        assert status == 403
        status, _ = cp.request("GET", "/api/v1/namespaces", token="not-a-token")
        assert status == 401
