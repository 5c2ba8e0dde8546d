"""Adapting the config loaders the guide allows into one async call.

Accepted shapes: a sync function (run in a worker thread so file or network reads never block
the event loop), an async function, an object with ``.load`` (sync or async) and an object with
an async ``__call__``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ..bot import BotVersion
from ..errors import ConfigurationError, KubebotsError, UnknownBotError
from ..schema import BotConfig, parse_bot_config


@dataclass(frozen=True, slots=True)
class VersionedConfig:
    """A loader result that also says which version of the config it is (store loaders)."""

    config: Mapping[str, Any] | BotConfig
    version: BotVersion


class SupportsLoad(Protocol):
    def load(self, bot_id: str) -> Any: ...


ConfigLoader: TypeAlias = Callable[[str], Any] | SupportsLoad
AsyncLoad: TypeAlias = Callable[[str], Awaitable[Any]]


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


def adapt_loader(loader: ConfigLoader) -> AsyncLoad:
    """One ``async (bot_id) -> raw config`` callable for any accepted loader shape."""
    target: Callable[[str], Any]
    load = getattr(loader, "load", None)
    if callable(load):
        target = load
    elif callable(loader):
        target = loader
    else:
        raise TypeError("config_loader must be callable or have a .load(bot_id) method")

    if _is_async(target):

        async def call_async(bot_id: str) -> Any:
            return await target(bot_id)

        return call_async

    async def call_in_thread(bot_id: str) -> Any:
        result = await asyncio.to_thread(target, bot_id)
        if inspect.isawaitable(result):
            result = await result
        return result

    return call_in_thread


async def load_config(load: AsyncLoad, bot_id: str) -> tuple[BotConfig, BotVersion | None]:
    """Run the loader and validate its result; errors name the bot and the bad field."""
    try:
        raw = await load(bot_id)
    except KubebotsError:
        raise
    except (LookupError, FileNotFoundError):
        raise UnknownBotError(
            f"no configuration for bot '{bot_id}'", detail={"bot_id": bot_id}
        ) from None
    except Exception as exc:
        raise ConfigurationError(
            f"config loader failed for bot '{bot_id}': {type(exc).__name__}: {_short(exc)}",
            bot_id=bot_id,
        ) from exc
    version: BotVersion | None = None
    if isinstance(raw, VersionedConfig):
        version = raw.version
        raw = raw.config
    if raw is None:
        raise UnknownBotError(f"no configuration for bot '{bot_id}'", detail={"bot_id": bot_id})
    if not isinstance(raw, Mapping | BotConfig):
        raise ConfigurationError(
            f"config loader for bot '{bot_id}' returned {type(raw).__name__}, not a mapping",
            bot_id=bot_id,
        )
    return parse_bot_config(raw, bot_id=bot_id), version


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 1] + "…"
