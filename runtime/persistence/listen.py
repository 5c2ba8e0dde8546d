"""``LISTEN`` on a dedicated connection that reconnects by itself, for stores that cache.

A :class:`Listener` holds one autocommit connection of its own (outside any pool), listens on one
channel and hands every notification's payload to ``on_notify``. ``on_state`` learns ``True``
once ``LISTEN`` has run (from then on no notification committed later is missed) and ``False``
as soon as the connection is lost or the listener closes: a cache kept valid by the
notifications is trusted only between the two. A lost connection is retried with a short,
growing backoff; while the connection idles, a trivial query every ``ping`` seconds finds one
that died without a word (a server that vanished from the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import psycopg
from psycopg import sql

from .postgres import Conn

#: Reconnect delays (seconds): the first, and the cap it doubles towards.
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: How often (seconds) an idle listening connection is checked with a query.
PING: Final = 5.0

_log = logging.getLogger(__name__)


class Listener:
    """Listens on ``channel`` over connections from ``connect`` until :meth:`close`.

    ``describe`` turns a driver error into a message without credentials (for the log).
    Callbacks run on the event loop and must not raise.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Conn]],
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_state: Callable[[bool], None],
        describe: Callable[[psycopg.Error], str],
        ping: float = PING,
    ) -> None:
        self._connect = connect
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._on_notify = on_notify
        self._on_state = on_state
        self._describe = describe
        self._ping = ping
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        """Start listening in the background (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listen {self._listen!r}")

    async def close(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set(False)

    def _set(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._on_state(connected)

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            conn: Conn | None = None
            try:
                conn = await self._connect()
                await conn.execute(self._listen)
                self._set(True)
                delay = BACKOFF_MIN
                while True:
                    async for note in conn.notifies(timeout=self._ping):
                        self._on_notify(note.payload)
                    await conn.execute("SELECT 1")
            except psycopg.Error as exc:
                self._set(False)
                _log.warning("listener: %s; reconnecting in %.2fs", self._describe(exc), delay)
            finally:
                self._set(False)
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(2 * delay, BACKOFF_MAX)
