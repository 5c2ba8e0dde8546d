"""The ``tools`` section: MCP servers and HTTP tools the runtime runs for the model."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from ._base import ENV_NAME_PATTERN, SchemaModel
from .llm import SecretKeyRef
from .urls import HTTP_SECRET_PARAMS, url_credentials

#: A tool's name as the model sees it (OpenAI's function-name rule).
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: A source's name: a DNS label (it appears in metrics, logs and the Bot's status).
SOURCE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_URL_PATTERN = r"^https?://[^\s]+$"
#: Header names whose value is a credential: only from a Secret or an environment variable.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)

MAX_TOOL_SOURCES = 32


class ToolHeader(SchemaModel):
    """One request header: a plain value (never for a credential), or the value of a Secret's
    key (secretRef) or of an environment variable of the runtime (valueFromEnv)."""

    name: str = Field(
        min_length=1, max_length=256, pattern=_HEADER_NAME_PATTERN, description="Header name."
    )
    value: str | None = Field(
        default=None, max_length=8192, description="A plain value (never a credential)."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret (in the Bot's namespace) and key holding the value."
    )
    value_from_env: str | None = Field(
        default=None,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Name of the runtime's environment variable holding the value.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [self.value, self.secret_ref, self.value_from_env]
        if sum(v is not None for v in given) != 1:
            raise ValueError("set exactly one of value, secretRef and valueFromEnv")
        secretish = self.name.lower() in CREDENTIAL_HEADERS or any(
            word in self.name.lower() for word in ("token", "secret", "key", "auth")
        )
        if self.value is not None and secretish:
            raise ValueError(
                f"header {self.name} carries a credential: give it by secretRef or valueFromEnv"
            )
        return self


def _no_url_credentials(value: str) -> str:
    found = url_credentials(value, secret_params=HTTP_SECRET_PARAMS)
    if found:
        raise ValueError(
            f"must not hold credentials ({', '.join(found)}); give them as headers by "
            "secretRef or valueFromEnv"
        )
    return value


class McpServerTool(SchemaModel):
    """A remote MCP server over streamable HTTP whose tools the model may call."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=SOURCE_NAME_PATTERN,
        description="The server's name in status, metrics and logs (a DNS label).",
    )
    url: str = Field(
        max_length=2048,
        pattern=_URL_PATTERN,
        description="Streamable HTTP endpoint, e.g. http://files-mcp.tools.svc:8000/mcp.",
    )
    headers: list[ToolHeader] = Field(
        default_factory=list, max_length=32, description="Headers sent with every request."
    )
    allowed_tools: list[str] | None = Field(
        default=None,
        max_length=256,
        description="The server's tools the model is offered (unset: all of them).",
    )
    tool_prefix: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Prepended to each tool's name as the model sees it (avoids clashes).",
    )
    timeout: float = Field(default=30.0, gt=0.0, le=600.0, description="Seconds per call.")
    max_response_bytes: int = Field(
        default=65_536, ge=1, le=10_000_000, description="Longer results are cut."
    )
    requires_approval: bool = Field(
        default=False, description="Every call of this server's tools waits for approval."
    )
    approval_required_tools: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Tools of this server whose calls wait for the client's approval.",
    )

    _url = field_validator("url")(classmethod(lambda cls, v: _no_url_credentials(v)))


class HttpTool(SchemaModel):
    """One HTTP endpoint offered to the model as a function.

    The URL template's {placeholders} are filled from the call's arguments (URL-encoded);
    the other arguments go in the query (GET, DELETE) or as the JSON body (POST, PUT, PATCH).
    """

    name: str = Field(pattern=TOOL_NAME_PATTERN, description="The function name.")
    description: str = Field(
        default="", max_length=4096, description="What the function does, as the model reads it."
    )
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="GET", description="HTTP method."
    )
    url: str = Field(max_length=2048, pattern=_URL_PATTERN, description="URL template.")
    headers: list[ToolHeader] = Field(
        default_factory=list, max_length=32, description="Headers sent with every call."
    )
    timeout: float = Field(default=10.0, gt=0.0, le=600.0, description="Seconds per call.")
    max_response_bytes: int = Field(
        default=65_536, ge=1, le=10_000_000, description="Longer responses are cut."
    )
    requires_approval: bool = Field(
        default=False, description="Calls wait for the client's approval (side effects)."
    )

    _url = field_validator("url")(classmethod(lambda cls, v: _no_url_credentials(v)))

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError("must be a JSON Schema of type object")
        return value


class ToolsConfig(SchemaModel):
    """What the model may call, run by the runtime's tool loop."""

    mcp: list[McpServerTool] = Field(
        default_factory=list,
        max_length=MAX_TOOL_SOURCES,
        description="MCP servers (streamable HTTP) whose tools the model may call.",
    )
    http: list[HttpTool] = Field(
        default_factory=list,
        max_length=MAX_TOOL_SOURCES,
        description="HTTP endpoints offered to the model as functions.",
    )
    max_tool_steps: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Model replies with tool calls one turn may run; then it must answer.",
    )
    deadline_seconds: float = Field(
        default=120.0, gt=0.0, le=3600.0, description="A turn's whole tool loop, in seconds."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for kind, names in (
            ("mcp", [s.name for s in self.mcp]),
            ("http", [t.name for t in self.http]),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} names must be unique (repeated: {', '.join(dup)})")
        return self

    @property
    def declared(self) -> bool:
        return bool(self.mcp or self.http)
