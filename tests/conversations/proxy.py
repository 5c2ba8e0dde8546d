"""A loopback TCP proxy in front of PostgreSQL that counts round trips.

A round trip is what a client sends before the server answers: every burst of client bytes
that follows server bytes (or opens the connection) counts one, however TCP splits it.
Connections that ``LISTEN`` are left out (they idle waiting for notifications). Use a URL with
``sslmode=disable`` so the proxy sees the protocol in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit


class _Link:
    """One proxied connection: who spoke last, how many bursts the client sent."""

    def __init__(self) -> None:
        self.client_spoke_last = False
        self.round_trips = 0
        self.listens = False
        self.writers: list[asyncio.StreamWriter] = []

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class CountingProxy:
    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = target
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The target URL, through the proxy, without TLS."""
        parts = urlsplit(self._target)
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        netloc_new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        query = f"{parts.query}&sslmode=disable" if parts.query else "sslmode=disable"
        return urlunsplit((parts.scheme, netloc_new, parts.path, query, ""))

    @property
    def round_trips(self) -> int:
        """Round trips since :meth:`reset`, over every connection but the listening ones."""
        return sum(link.round_trips for link in self._links if not link.listens)

    def reset(self) -> None:
        for link in self._links:
            link.round_trips = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for link in self._links:
            link.close()  # the pumps see the end of their streams and return
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = _Link()
        link.writers.append(writer)
        self._links.append(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        link.writers.append(up_writer)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, client=True),
                self._pump(up_reader, writer, link, client=False),
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, client: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if client:
                    if not link.client_spoke_last:
                        link.round_trips += 1
                    link.client_spoke_last = True
                    link.listens = link.listens or b"LISTEN " in data
                else:
                    link.client_spoke_last = False
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
