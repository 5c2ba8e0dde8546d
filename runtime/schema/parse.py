"""Turning untrusted input into a :class:`BotConfig`, with errors that name fields, never values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigurationError
from .bot import BotConfig


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field.path, reason)`` pairs, in camelCase, without the offending input values."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        # Discriminated unions add the tag as a path element (conversationStorage.sqlite.path).
        path = ".".join(loc) or "(root)"
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown field (check its spelling)"
        out.append((path, reason.removeprefix("Value error, ")))
    return out


def describe(errors: list[tuple[str, str]]) -> str:
    return "; ".join(f"{path}: {reason}" for path, reason in errors)


def parse_bot_config(data: Any, *, bot_id: str | None = None) -> BotConfig:
    """Validate ``data`` (a mapping in camelCase or snake_case) into a :class:`BotConfig`.

    Raises :class:`ConfigurationError` naming every bad field; unknown keys are errors.
    """
    if isinstance(data, BotConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            f"bot configuration must be a mapping, got {type(data).__name__}", bot_id=bot_id
        )
    try:
        return BotConfig.model_validate(dict(data))
    except ValidationError as exc:
        errors = field_errors(exc)
        prefix = f"invalid configuration for bot '{bot_id}'" if bot_id else "invalid configuration"
        raise ConfigurationError(
            f"{prefix}: {describe(errors)}", errors=errors, bot_id=bot_id
        ) from None
