"""A request's upstream settings, bounded by its Bot (``llm.allowRequestOverrides``, ``maxTokens``).

The ``/v1`` route validates what a client sends (types and ranges, OpenAI's rules) and hands
the settings it set here; :func:`bound_settings` applies the Bot's bounds:

* ``llm.allowRequestOverrides`` unset: every setting of :data:`REQUEST_SETTINGS` may be set; a
  list: only those (``[]``: none). A setting the Bot does not allow is refused, never dropped.
* ``llm.maxTokens`` is a ceiling: a larger ``max_tokens`` / ``max_completion_tokens`` is refused
  naming the ceiling (a client asking for more than it can get should know).

Refusals are :class:`RequestSettingsError`\\ s naming the ``param`` (the HTTP layer answers 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, get_args

from ..errors import KubebotsError
from ..schema.llm import LLMConfig, RequestSetting
from .base import Settings

#: Every setting a request may carry to the upstream (OpenAI's names), in the schema's order.
REQUEST_SETTINGS: Final[tuple[str, ...]] = get_args(RequestSetting)
#: The settings the Bot's ``maxTokens`` caps.
TOKEN_CEILINGS: Final = ("max_tokens", "max_completion_tokens")


class RequestSettingsError(KubebotsError, ValueError):
    """A request setting the Bot refuses; ``param`` is its name (OpenAI's ``param``)."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message, detail={"param": param})
        self.param = param


def bound_settings(requested: Mapping[str, Any], llm: LLMConfig) -> Settings:
    """``requested`` (validated settings the client set) if ``llm`` allows every one of them,
    else :class:`RequestSettingsError` for the first it refuses. A read-only mapping."""
    allowed = llm.allow_request_overrides
    for name, value in requested.items():
        if name not in REQUEST_SETTINGS:
            raise RequestSettingsError(f"'{name}' is not a request setting", param=name)
        if allowed is not None and name not in allowed:
            raise RequestSettingsError(
                f"this bot does not allow requests to set '{name}'", param=name
            )
        ceiling = llm.max_tokens
        if name in TOKEN_CEILINGS and ceiling is not None and value > ceiling:
            raise RequestSettingsError(
                f"'{name}' must be at most {ceiling} for this bot", param=name
            )
    return MappingProxyType(dict(requested))
