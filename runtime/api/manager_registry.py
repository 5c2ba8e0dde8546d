"""The guide's process-wide bot manager: ``init_bot_manager``/``get_bot_manager``/``reset``.

The guide's API is module functions with no app or manager argument, so the manager has to
live in module state. It is kept in one registry object (never a rebindable global), which is
the only module state of the API. Apps that own their manager (ours, :func:`.app.create_app`) set
``app.state.bot_manager`` instead, and :data:`BotManagerDep` prefers that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Generator
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from ..manager import BotManager, ConfigLoader
from .http_errors import BotManagerNotInitialisedError

log = logging.getLogger("kubebots.runtime.api")


class _Done:
    """An awaitable that is already finished (what ``reset_bot_manager`` returns off-loop)."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


class _ManagerRegistry:
    """Holds the singleton manager and the close tasks still running (so none is lost)."""

    def __init__(self) -> None:
        self.manager: BotManager | None = None
        self.closing: set[asyncio.Task[None]] = set()

    def close_soon(self, manager: BotManager) -> Awaitable[None]:
        """Close ``manager``: as a task when a loop runs (returned), else to completion now."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(manager.close())
            return _Done()
        task = asyncio.ensure_future(_close_manager(manager))
        self.closing.add(task)
        task.add_done_callback(self._closed)
        return task

    def _closed(self, task: asyncio.Task[None]) -> None:
        self.closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing the bot manager failed", exc_info=task.exception())


async def _close_manager(manager: BotManager) -> None:
    """Close ``manager``'s bots, even when the stopping event loop cancels us part-way.

    ``asyncio.run()`` (uvicorn's too) cancels every task once its main coroutine returns, which
    is what happens to a close the guide's shutdown hook schedules without awaiting. The loop
    keeps running until the cancelled tasks finish, so on that cancellation the bots still open
    are closed here, one by one. A bot whose own closing task was cancelled before it started
    cannot be closed any more; it is logged.
    """
    found = [await manager.get(bot_id) for bot_id in manager.list_bots()]
    bots = [bot for bot in found if bot is not None]
    try:
        await manager.close()
    except asyncio.CancelledError:
        for bot in bots:
            if bot.closed:
                continue
            try:
                await bot.close()
            except asyncio.CancelledError:
                log.warning("bot '%s' could not be closed: its event loop stopped", bot.bot_id)
        raise


_REGISTRY = _ManagerRegistry()


def init_bot_manager(config_loader: ConfigLoader | None = None, **kwargs: Any) -> BotManager:
    """Create the process-wide manager (``kwargs`` go to :class:`BotManager`) and return it.

    A manager set up before is replaced and closed (see :func:`reset_bot_manager`).
    """
    manager = BotManager(config_loader, **kwargs)
    previous, _REGISTRY.manager = _REGISTRY.manager, manager
    if previous is not None:
        _REGISTRY.close_soon(previous)
    return manager


def get_bot_manager() -> BotManager:
    """The process-wide manager; raises a 503 (also a ``RuntimeError``) before init."""
    manager = _REGISTRY.manager
    if manager is None:
        raise BotManagerNotInitialisedError()
    return manager


def reset_bot_manager() -> Awaitable[None]:
    """Forget the process-wide manager and close its bots.

    The guide calls this without ``await`` from an async shutdown hook, so inside a running
    event loop the close is scheduled as a task, which is returned: ``await reset_bot_manager()``
    waits for it. Without a running loop the close runs to completion before returning.
    """
    manager, _REGISTRY.manager = _REGISTRY.manager, None
    if manager is None:
        return _Done()
    return _REGISTRY.close_soon(manager)


async def _bot_manager_for(connection: HTTPConnection) -> BotManager:
    """The app's own manager (``app.state.bot_manager``) if it has one, else the singleton."""
    own = getattr(connection.app.state, "bot_manager", None)
    if isinstance(own, BotManager):
        return own
    return get_bot_manager()


#: Inject the bot manager into a route: ``manager: BotManagerDep``.
BotManagerDep = Annotated[BotManager, Depends(_bot_manager_for)]
