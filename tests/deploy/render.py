"""Rendering kustomizations with the host's current kubectl (`kubectl kustomize`, kustomize v5).

Users render deploy/ with a current kubectl, so the tests do too: the manifest tests here and the
e2e tests (whose 1.20 node's own kubectl embeds kustomize v2.0.3, which cannot read what users
apply). A missing or too old kubectl fails the test with what to install; it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
#: The oldest kustomize (embedded in kubectl) that reads deploy/ as users do.
MIN_KUSTOMIZE_MAJOR = 5
INSTALL_HINT = (
    "install a current kubectl (1.27 or later: kustomize v5 built in) on PATH, e.g. the `kubectl`"
    " Debian package of the Google Cloud SDK or of the Kubernetes project's apt repository"
    " (`apt-get install kubectl`), or set KUBEBOTS_HOST_KUBECTL to its path"
)


class HostKubectlError(AssertionError):
    """No usable host kubectl: the message says what to install."""


@dataclass(frozen=True)
class Rendered:
    """What `kubectl kustomize DIR` printed."""

    directory: Path
    text: str
    stderr: str

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The objects, parsed anew at each call (callers may change them)."""
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return [d for d in yaml.load_all(self.text, Loader=loader) if d is not None]


@cache
def host_kubectl() -> str:
    """The host's kubectl (``$KUBEBOTS_HOST_KUBECTL``, else ``kubectl`` on PATH): kustomize v5+."""
    exe = os.environ.get("KUBEBOTS_HOST_KUBECTL") or shutil.which("kubectl")
    if not exe or not os.access(exe, os.X_OK):
        raise HostKubectlError(f"no kubectl found to render deploy/: {INSTALL_HINT}")
    proc = subprocess.run(
        [exe, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        info = json.loads(proc.stdout)
        kustomize = str(info["kustomizeVersion"])
        major = int(kustomize.lstrip("v").split(".")[0])
    except (ValueError, KeyError, TypeError):
        raise HostKubectlError(
            f"{exe} did not report its kustomize version ({proc.stderr.strip()!r}): {INSTALL_HINT}"
        ) from None
    if major < MIN_KUSTOMIZE_MAJOR:
        raise HostKubectlError(f"{exe} embeds kustomize {kustomize}, too old: {INSTALL_HINT}")
    return exe


@cache
def render(directory: Path) -> Rendered:
    """`kubectl kustomize DIRECTORY` with the host kubectl (once per directory and process);
    AssertionError if it fails."""
    proc = subprocess.run(
        [host_kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"kubectl kustomize {directory} exited {proc.returncode}:\n{proc.stderr}"
        )
    return Rendered(directory, proc.stdout, proc.stderr)
