"""HTTP tools against a real HTTP server: URL templates, query and body, caps, errors."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from kubebots.runtime.errors import ToolError, ToolTimeoutError
from kubebots.runtime.schema.tools import HttpTool
from kubebots.runtime.testing.tool_servers import HttpToolServer
from kubebots.runtime.tools.clients import ToolClients
from kubebots.runtime.tools.egress import EgressPolicy
from kubebots.runtime.tools.http_tool import HttpToolSource

from .conftest import LOOPBACK

SECRET = "Bearer tool-s3cr3t-value"


def source(
    clients: ToolClients,
    headers: dict[str, str] | None = None,
    egress: EgressPolicy = LOOPBACK,
    **config: Any,
) -> HttpToolSource:
    tool = HttpTool.model_validate({"name": "t", **config})
    return HttpToolSource(
        tool, headers or {}, clients.acquire_http(), egress, release=clients.release_http
    )


async def test_the_spec_is_the_config(clients: ToolClients, http_server: HttpToolServer) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = source(
        clients,
        url=http_server.url + "/weather/{city}",
        description="Weather",
        parameters=params,
        requiresApproval=True,
        timeout=3,
    )
    (spec,) = await tool.list_tools()
    assert (spec.name, spec.description, spec.source) == ("t", "Weather", "http:t")
    assert spec.parameters == params and spec.requires_approval and spec.timeout == 3
    assert tool.label == "http:t"


async def test_placeholders_are_quoted_and_the_rest_goes_in_the_query(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url=http_server.url + "/weather/{city}", headers={"X-Client": "kb"})
    city = "São Paulo?units=imperial#x"  # no query or fragment injected through the path
    result = await tool.call("t", {"city": city, "units": "metric", "days": 3}, seconds=5)
    assert not result.is_error
    body = json.loads(result.content)
    assert body["city"] == city
    assert body["query"] == {"units": "metric", "days": "3"}
    (request,) = http_server.requests
    assert request.query == "units=metric&days=3"
    assert request.headers["x-client"] == "kb"


async def test_a_missing_placeholder_is_a_tool_error(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url=http_server.url + "/weather/{city}")
    with pytest.raises(ToolError, match="'city' is missing"):
        await tool.call("t", {"units": "metric"}, seconds=5)
    assert http_server.requests == []


async def test_post_sends_the_json_body_and_the_secret_header_arrives(
    clients: ToolClients, http_server: HttpToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tool = source(
        clients, url=http_server.url + "/notes", method="POST", headers={"Authorization": SECRET}
    )
    result = await tool.call("t", {"text": "remember", "tags": ["a"]}, seconds=5)
    assert json.loads(result.content) == {"stored": 1}
    assert http_server.notes == [{"text": "remember", "tags": ["a"]}]
    assert http_server.requests[0].headers["authorization"] == SECRET
    assert "s3cr3t" not in caplog.text


async def test_a_long_response_is_cut(clients: ToolClients, http_server: HttpToolServer) -> None:
    tool = source(clients, url=http_server.url + "/big", maxResponseBytes=1000)
    result = await tool.call("t", {}, seconds=5)
    assert result.content == "x" * 1000 + "\n[cut at 1000 bytes]"
    exact = await tool.call("t", {"size": 1000}, seconds=5)
    assert exact.content == "x" * 1000


async def test_non_2xx_is_an_error_result_with_status_and_body(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url=http_server.url + "/error")
    result = await tool.call("t", {}, seconds=5)
    assert result.is_error
    assert result.content == "HTTP 500 Internal Server Error: upstream broke"


async def test_redirects_are_not_followed(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url=http_server.url + "/redirect")
    result = await tool.call("t", {}, seconds=5)
    assert result.is_error and result.content.startswith("HTTP 302")
    assert [r.path for r in http_server.requests] == ["/redirect"]


async def test_a_slow_server_is_a_timeout(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url=http_server.url + "/slow", timeout=0.3)
    with pytest.raises(ToolTimeoutError, match=r"within 0\.3 seconds") as caught:
        await tool.call("t", {"seconds": 1}, seconds=5)
    assert "seconds=1" not in caught.value.message
    shorter = source(clients, url=http_server.url + "/slow", timeout=10)
    with pytest.raises(ToolTimeoutError, match=r"within 0\.2 seconds"):
        await shorter.call("t", {"seconds": 1}, seconds=0.2)  # what is left of the deadline


async def test_an_unreachable_server_is_a_tool_error_without_query_or_headers(
    clients: ToolClients,
) -> None:
    with HttpToolServer() as gone:
        url = gone.url
    tool = source(clients, url=url + "/weather/{city}", headers={"Authorization": SECRET})
    with pytest.raises(ToolError) as caught:
        await tool.call("t", {"city": "x", "q": "private-query"}, seconds=5)
    message = caught.value.message
    assert "127.0.0.1" in message and "ConnectError" in message
    assert "private-query" not in message and "s3cr3t" not in message


async def test_an_invalid_filled_url_is_a_tool_error(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    tool = source(clients, url="http://127.0.0.1:{port}/weather/x")
    with pytest.raises(ToolError, match=r"the request to 127\.0\.0\.1 failed"):
        await tool.call("t", {"port": "not-a-port"}, seconds=5)


async def test_the_final_url_is_checked_against_egress(
    clients: ToolClients, http_server: HttpToolServer
) -> None:
    url = "http://{host}:" + str(http_server.port) + "/weather/x"
    tool = source(clients, url=url, egress=EgressPolicy.parse("*.svc"))
    with pytest.raises(ToolError, match=r"'127\.0\.0\.1' is not in the runtime's tool egress"):
        await tool.call("t", {"host": "127.0.0.1"}, seconds=5)
    with pytest.raises(ToolError, match="is not in the runtime's tool egress"):
        await tool.call("t", {"host": "127.0.0.1:1@x"}, seconds=5)  # quoted: no userinfo trick
    assert http_server.requests == []


async def test_close_gives_the_shared_client_back_once(http_server: HttpToolServer) -> None:
    clients = ToolClients()
    one = source(clients, url=http_server.url + "/error")
    two = source(clients, url=http_server.url + "/error")
    assert clients.http_users == 2
    await one.close()
    await one.close()
    assert clients.http_users == 1
    client = clients.acquire_http()
    await clients.release_http()
    await two.close()
    assert clients.http_users == 0
    assert client.is_closed
    assert isinstance(client, httpx.AsyncClient)
