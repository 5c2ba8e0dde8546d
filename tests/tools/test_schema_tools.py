"""The ``tools`` section of a Bot: camel and snake case, credentials only by reference."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubebots.runtime.schema import parse_bot_config
from kubebots.runtime.schema.tools import ToolsConfig

MCP = {"name": "files", "url": "http://files-mcp.tools.svc:8000/mcp"}
HTTP = {"name": "weather", "url": "http://weather.tools.svc/w/{city}"}


def tools(data: dict[str, Any]) -> ToolsConfig:
    return ToolsConfig.model_validate(data)


def test_camel_and_snake_case_read_the_same() -> None:
    camel = tools(
        {
            "mcp": [
                {
                    **MCP,
                    "allowedTools": ["read"],
                    "toolPrefix": "fs_",
                    "maxResponseBytes": 100,
                    "requiresApproval": True,
                    "approvalRequiredTools": ["read"],
                    "headers": [{"name": "Authorization", "secretRef": {"name": "s", "key": "k"}}],
                }
            ],
            "http": [{**HTTP, "maxResponseBytes": 10, "requiresApproval": True}],
            "maxToolSteps": 3,
            "deadlineSeconds": 9,
        }
    )
    snake = tools(
        {
            "mcp": [
                {
                    **MCP,
                    "allowed_tools": ["read"],
                    "tool_prefix": "fs_",
                    "max_response_bytes": 100,
                    "requires_approval": True,
                    "approval_required_tools": ["read"],
                    "headers": [{"name": "Authorization", "secret_ref": {"name": "s", "key": "k"}}],
                }
            ],
            "http": [{**HTTP, "max_response_bytes": 10, "requires_approval": True}],
            "max_tool_steps": 3,
            "deadline_seconds": 9,
        }
    )
    assert camel == snake
    assert camel.mcp[0].tool_prefix == "fs_" and camel.max_tool_steps == 3
    assert camel.declared and not ToolsConfig().declared


def test_a_bot_config_carries_its_tools() -> None:
    config = parse_bot_config({"tools": {"http": [HTTP]}}, bot_id="b")
    assert config.tools.http[0].name == "weather"
    assert config.tools.http[0].method == "GET"


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key", "X-Auth-Token", "Cookie"])
def test_an_inline_credential_header_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        tools({"http": [{**HTTP, "headers": [{"name": name, "value": "hunter2-inline"}]}]})
    assert "secretRef or valueFromEnv" in str(caught.value)


def test_a_header_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        tools({"http": [{**HTTP, "headers": [{"name": "X-Client"}]}]})
    with pytest.raises(ValidationError, match="exactly one"):
        tools(
            {
                "http": [
                    {**HTTP, "headers": [{"name": "X-Client", "value": "a", "valueFromEnv": "B"}]}
                ]
            }
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@files-mcp.tools.svc/mcp",
        "http://files-mcp.tools.svc/mcp?api_key=hunter2",
        "http://files-mcp.tools.svc/mcp?token=hunter2",
    ],
)
def test_credentials_in_urls_are_refused_without_their_value(url: str) -> None:
    for kind, entry in (("mcp", {**MCP, "url": url}), ("http", {**HTTP, "url": url})):
        with pytest.raises(ValidationError) as caught:
            tools({kind: [entry]})
        assert "must not hold credentials" in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"mcp names must be unique \(repeated: files\)"):
        tools({"mcp": [MCP, {**MCP, "url": "http://other.tools.svc/mcp"}]})
    with pytest.raises(ValidationError, match=r"http names must be unique \(repeated: weather\)"):
        tools({"http": [HTTP, HTTP]})


def test_names_methods_and_schemas_are_checked() -> None:
    with pytest.raises(ValidationError):
        tools({"mcp": [{**MCP, "name": "Not_A_Label"}]})
    with pytest.raises(ValidationError):
        tools({"http": [{**HTTP, "name": "has space"}]})
    with pytest.raises(ValidationError):
        tools({"http": [{**HTTP, "method": "TRACE"}]})
    with pytest.raises(ValidationError, match="type object"):
        tools({"http": [{**HTTP, "parameters": {"type": "array"}}]})
    with pytest.raises(ValidationError):
        tools({"http": [{**HTTP, "url": "file:///etc/passwd"}]})
