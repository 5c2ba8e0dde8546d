"""Real tool servers on loopback ports, started per test (their state is the test's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kubebots.runtime.testing.tool_servers import HttpToolServer, McpToolServer
from kubebots.runtime.tools.clients import ToolClients
from kubebots.runtime.tools.egress import EgressPolicy

#: The loopback allowed: the tests' servers listen there.
LOOPBACK = EgressPolicy.parse("127.0.0.1")


@pytest.fixture
def mcp_server() -> Iterator[McpToolServer]:
    with McpToolServer() as server:
        yield server


@pytest.fixture
def http_server() -> Iterator[HttpToolServer]:
    with HttpToolServer() as server:
        yield server


@pytest.fixture
async def clients() -> AsyncIterator[ToolClients]:
    held = ToolClients()
    try:
        yield held
    finally:
        await held.close()
