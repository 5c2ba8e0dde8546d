"""A tool's request headers, resolved when the bot is built. Values are never logged or stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import ConfigurationError
from ..schema.tools import ToolHeader
from ..secrets import SecretResolver


async def resolve_headers(
    headers: Sequence[ToolHeader],
    *,
    field: str,
    bot_id: str,
    env: Mapping[str, str],
    secrets: SecretResolver | None,
) -> dict[str, str]:
    """``headers`` as a dict: each one's ``value``, environment variable (``valueFromEnv``, from
    ``env``) or Secret key (``secretRef``, through ``secrets``). ``field`` is the headers' path
    (``tools.http.1.headers``); a value that cannot be had raises :class:`ConfigurationError`
    naming ``<field>.<index>.secretRef`` or ``.valueFromEnv``, never a value."""
    resolved: dict[str, str] = {}
    for index, header in enumerate(headers):
        value = await _value(header, f"{field}.{index}", bot_id, env, secrets)
        if any(char in value for char in "\r\n\0"):
            raise _error(bot_id, f"{field}.{index}", "the value holds a line break or NUL")
        resolved[header.name] = value
    return resolved


async def _value(
    header: ToolHeader,
    where: str,
    bot_id: str,
    env: Mapping[str, str],
    secrets: SecretResolver | None,
) -> str:
    if header.value is not None:
        return header.value
    if header.value_from_env is not None:
        value = env.get(header.value_from_env)
        if not value:
            reason = f"environment variable {header.value_from_env} is not set"
            raise _error(bot_id, f"{where}.valueFromEnv", reason)
        return value
    ref = header.secret_ref
    if ref is None:  # the schema requires exactly one source
        raise _error(bot_id, where, "no value, valueFromEnv or secretRef")
    if secrets is None:
        raise _error(bot_id, f"{where}.secretRef", "no secret resolver is configured")
    try:
        value = await secrets.get(ref, bot_id=bot_id)
    except ConfigurationError:
        reason = f"Secret '{ref.name}' has no key '{ref.key}' (or is not readable)"
        raise _error(bot_id, f"{where}.secretRef", reason) from None
    if not value:
        raise _error(bot_id, f"{where}.secretRef", f"Secret '{ref.name}' key '{ref.key}' is empty")
    return value


def _error(bot_id: str, field: str, reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"bot '{bot_id}': {field}: {reason}", errors=[(field, reason)], bot_id=bot_id
    )
