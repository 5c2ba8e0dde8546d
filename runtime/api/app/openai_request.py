"""The ``/v1/chat/completions`` request: its model, and the checks OpenAI makes of it.

Every argument OpenAI knows is accepted, validated by OpenAI's rules, or refused with a 400
naming its ``param`` when kubebots cannot honour it (:data:`UNSUPPORTED`); unknown arguments are
refused too (:func:`check_arguments`). :func:`invalid` is the 400 every check raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...llm.request_settings import REQUEST_SETTINGS
from ..http_errors import ValidationError

#: OpenAI request arguments kubebots does not support, and the values that ask for nothing.
UNSUPPORTED: Final[Mapping[str, tuple[Any, ...]]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None,),
    "logit_bias": (None, {}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "functions": (None,),
    "function_call": (None,),
    "web_search_options": (None,),
    "store": (None, False),
    "reasoning_effort": (None,),
    "verbosity": (None,),
    "service_tier": (None, "auto", "default"),
}
#: OpenAI request arguments that ask nothing of the model and are accepted without effect.
NO_EFFECT: Final = frozenset({"metadata", "prompt_cache_key", "safety_identifier"})
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class InFunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=1_000_000)


class InToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: InFunctionCall


class InMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # SDKs echo replies back (refusal, annotations)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[InToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, min_length=1, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str | None = Field(default=None, max_length=100_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDefinition


class ToolName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: ToolName


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: Name
    description: str | None = Field(default=None, max_length=100_000)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only then")
        return self


class CompletionRequest(BaseModel):
    """OpenAI's chat completion request. Arguments not declared here are checked by
    :func:`check_arguments` (refused unless they ask for nothing)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=253)
    messages: list[InMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Number | None = Field(default=None, ge=0.0, le=2.0)
    top_p: Number | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, strict=True)
    presence_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Number | None = Field(default=None, ge=-2.0, le=2.0)
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = Field(default=None, max_length=256)

    def requested_settings(self) -> dict[str, Any]:
        """The upstream settings the client set (OpenAI's names and JSON values)."""
        return self.model_dump(
            include=set(REQUEST_SETTINGS), exclude_none=True, by_alias=True, mode="json"
        )


def invalid(param: str, message: str) -> ValidationError:
    field = f"body.{param}"
    return ValidationError(
        message, detail={"param": param, "errors": [{"field": field, "reason": message}]}
    )


def check_arguments(body: CompletionRequest) -> None:
    """Refuse what the model cannot be asked (400 naming the ``param``)."""
    for name, value in (body.model_extra or {}).items():
        if name in NO_EFFECT:
            continue
        if name not in UNSUPPORTED:
            raise invalid(name, f"Unrecognized request argument supplied: {name}")
        if value not in UNSUPPORTED[name]:
            only = " (only n=1 is)" if name == "n" else ""
            raise invalid(name, f"'{name}' is not supported by kubebots{only}")
    if isinstance(body.stop, list) and len(body.stop) > 4:
        raise invalid("stop", "'stop' may hold at most 4 sequences")
    if body.tool_choice is not None and not body.tools:
        raise invalid("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if body.parallel_tool_calls is not None and not body.tools:
        raise invalid(
            "parallel_tool_calls",
            "'parallel_tool_calls' is only allowed when 'tools' are specified",
        )
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise invalid(
            "max_completion_tokens", "set one of 'max_tokens' and 'max_completion_tokens'"
        )
