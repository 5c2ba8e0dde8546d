"""kubebots in real pods: the quickstart applied to a real single node, from the built image.

One node and one quickstart per test session (building the images and the node takes minutes the
first time on a machine, seconds after). The scenarios run in file order and leave the system
as they found it: every pod Ready, every Bot Ready.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from tests.e2e.harness.images import Built, ensure_images
from tests.e2e.harness.node import Node
from tests.e2e.harness.quickstart import Quickstart


@pytest.fixture(scope="session")
def images() -> Mapping[str, Built]:
    """host-setup.sh (Debian packages, the docker daemon), then every image (cached)."""
    return ensure_images()


@pytest.fixture(scope="session")
def node(images: Mapping[str, Built]) -> Iterator[Node]:
    with Node() as n:
        yield n


@pytest.fixture(scope="session")
def cluster(node: Node) -> Quickstart:
    """`kubectl apply -k` of the quickstart (once, no retry), then every pod Ready."""
    qs = Quickstart.deploy(node)
    print(
        f"\n[cluster] node started in {node.startup_seconds:.1f}s; quickstart applied in"
        f" {qs.apply_seconds:.1f}s, all pods Ready {qs.ready_seconds:.1f}s after the apply"
    )
    return qs
