"""One adapter per side with the same small interface; imported only by the worker subprocess.

Each adapter opens its library's ``BotManager`` (optionally with an async config loader
``bot_id -> dict``) and exposes the library's own ``get_or_create(bot_id, config)`` as a bound
method, so a timed call costs exactly one library call (no adapter frame in between).
``dataknobs_bots`` is imported inside :meth:`DataknobsBots.open`, never at module import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, Protocol

from ..backends import MEMORY_CONFIG

Config = dict[str, Any]
Loader = Callable[[str], Awaitable[Config]]
GetOrCreate = Callable[..., Awaitable[Any]]  # (bot_id, config=None) -> bot

#: The echo provider and in-memory conversation storage, in each library's config dialect.
KUBEBOTS_CONFIG: Config = MEMORY_CONFIG
DATAKNOBS_CONFIG: Config = {
    "llm": {"provider": "echo", "model": "echo"},
    "conversation_storage": {"backend": "memory"},
}


class Subject(Protocol):
    """What every measure needs from a side."""

    name: str
    config: Config  # echo + memory storage
    get_or_create: GetOrCreate  # the manager's own bound method, set by ``open``

    def version(self) -> str: ...
    async def open(self, loader: Loader | None = None) -> None: ...
    def context(self, conversation_id: str) -> Any: ...
    async def chat(self, bot: Any, text: str, context: Any) -> str: ...
    def bot_count(self) -> int: ...
    def builds(self) -> int | None:
        """Bots the manager constructed, if the library counts them (else ``None``)."""
        ...

    async def close(self) -> None: ...


CLIENT_ID = "bench-client"


class _Side:
    """What both adapters do the same way: contexts, a chat turn, the bot count."""

    _manager: Any = None
    _context_type: Any = None

    def context(self, conversation_id: str) -> Any:
        return self._context_type(conversation_id=conversation_id, client_id=CLIENT_ID)

    async def chat(self, bot: Any, text: str, context: Any) -> str:
        reply: str = await bot.chat(text, context)
        return reply

    def bot_count(self) -> int:
        count: int = self._manager.get_bot_count()
        return count


class Kubebots(_Side):
    """Ours: ``kubebots.runtime.BotManager``; ``close()`` closes every cached bot."""

    name = "kubebots"
    config = KUBEBOTS_CONFIG

    def version(self) -> str:
        return version("kubebots")

    async def open(self, loader: Loader | None = None) -> None:
        from kubebots.runtime import BotContext, BotManager

        self._context_type = BotContext
        self._manager = BotManager(loader)
        self.get_or_create: GetOrCreate = self._manager.get_or_create

    def builds(self) -> int | None:
        builds: int = self._manager.stats.builds
        return builds

    async def close(self) -> None:
        await self._manager.close()


class DataknobsBots(_Side):
    """The peer: ``dataknobs_bots.BotManager`` (deprecated upstream; the warning is silenced).

    Its ``clear_all()`` only forgets the bots, so ``close()`` first closes each cached bot.
    It keeps no build counter: :meth:`builds` is ``None``.
    """

    name = "dataknobs-bots"
    config = DATAKNOBS_CONFIG

    def version(self) -> str:
        return version("dataknobs-bots")

    async def open(self, loader: Loader | None = None) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from dataknobs_bots import BotContext, BotManager

            self._manager = BotManager(config_loader=loader)
        self._context_type = BotContext
        self.get_or_create: GetOrCreate = self._manager.get_or_create

    def builds(self) -> int | None:
        return None

    async def close(self) -> None:
        for bot_id in self._manager.list_bots():
            bot = await self._manager.get(bot_id)
            if bot is not None:
                await bot.close()
        await self._manager.clear_all()


def make(name: str) -> Subject:
    """The adapter for ``name`` (one of ``bench.peers.SUBJECTS``)."""
    if name == Kubebots.name:
        return Kubebots()
    if name == DataknobsBots.name:
        return DataknobsBots()
    raise ValueError(f"unknown subject {name!r}")
