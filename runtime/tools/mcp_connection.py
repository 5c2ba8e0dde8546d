"""One MCP session per endpoint (streamable HTTP), shared by every bot that uses it.

The ``mcp`` SDK's client is an async context manager whose anyio task group must be entered and
left by the same task, so each :class:`McpConnection` holds its session open in a background
task of its own; callers in any task send requests through it. When the session breaks (the
server restarted, the network dropped it), the call that finds it broken reconnects once.

The SDK is imported when the first connection opens, not when the runtime starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio

from ..errors import ToolError, ToolTimeoutError

if TYPE_CHECKING:
    from mcp import Client
    from mcp_types import CallToolResult, Tool

log = logging.getLogger("kubebots.runtime.tools.mcp")

_T = TypeVar("_T")
#: Seconds to open a session (connect and handshake) before a request gives up.
CONNECT_TIMEOUT = 30.0
#: Seconds a closing session may take to say goodbye before it is cancelled.
CLOSE_TIMEOUT = 5.0
#: The most pages of ``tools/list`` read from one server.
MAX_LIST_PAGES = 32

#: ``(url, headers)``: sessions are shared by endpoint and credentials.
EndpointKey = tuple[str, tuple[tuple[str, str], ...]]


def endpoint_key(url: str, headers: Mapping[str, str]) -> EndpointKey:
    return url, tuple(sorted(headers.items()))


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpConnection:
    """The session with the MCP server at ``url``, sending ``headers`` (values never logged).
    Opened at the first request; :meth:`close` ends it."""

    def __init__(
        self, url: str, headers: Mapping[str, str], *, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.url = url
        self.host = urlsplit(url).hostname or "(none)"
        self._headers = dict(headers)
        self._connect_timeout = connect_timeout
        self.key = endpoint_key(url, headers)
        self._opening = asyncio.Lock()
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Client] | None = None
        self._stop = asyncio.Event()
        self._closed = False
        #: sessions opened so far (a reconnect opens another)
        self.sessions_opened = 0

    async def list_tools(self, *, seconds: float) -> list[Tool]:
        """Every tool the server offers (all pages)."""

        async def listing(client: Client) -> list[Tool]:
            tools: list[Tool] = []
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
            return tools

        return await self._request(listing, seconds)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any], *, seconds: float
    ) -> CallToolResult:
        """Call the server's tool ``name`` within ``seconds``."""

        async def calling(client: Client) -> CallToolResult:
            return await client.call_tool(name, dict(arguments), read_timeout_seconds=seconds)

        return await self._request(calling, seconds)

    async def _request(self, send: Callable[[Client], Awaitable[_T]], seconds: float) -> _T:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            async with asyncio.timeout(seconds):
                client = await self._session()
                try:
                    return await send(client)
                except MCPError as exc:
                    if exc.code != CONNECTION_CLOSED:
                        raise
                    log.info("MCP session with %s broke; reconnecting", self.host)
                    await self._drop(client)
                    return await send(await self._session())
        except TimeoutError:
            raise ToolTimeoutError(
                f"MCP server {self.host} did not answer within {seconds:g} seconds"
            ) from None
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise ToolTimeoutError(
                    f"MCP server {self.host} did not answer within {seconds:g} seconds"
                ) from None
            raise ToolError(f"MCP server {self.host} answered an error: {exc.message}") from None
        except (ValueError, RuntimeError, OSError, anyio.BrokenResourceError) as exc:
            # an answer that breaks the protocol (pydantic's ValidationError is a ValueError),
            # a transport that failed underneath: the type only, the SDK's text may quote URLs
            raise ToolError(f"MCP server {self.host} failed ({type(exc).__name__})") from None

    async def _session(self) -> Client:
        """The open session, opening one if there is none (or it ended)."""
        async with self._opening:
            if self._closed:
                raise ToolError(f"the MCP connection to {self.host} is closed")
            if self._task is None or self._task.done() or self._ready is None:
                await self._end_task()
                self._ready = self._start()
            ready = self._ready
            try:
                async with asyncio.timeout(self._connect_timeout):
                    self._client = await asyncio.shield(ready)
            except TimeoutError:
                await self._end_task(cancel=True)
                if ready.done() and not ready.cancelled():
                    ready.exception()  # retrieved: the timeout is the reason given
                raise ToolError(f"MCP server {self.host}: no session within the time") from None
            except ToolError:
                await self._end_task()
                raise
            return self._client

    def _start(self) -> asyncio.Future[Client]:
        """Start the task that opens and holds a session; its future gets the session."""
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            self._hold(ready, self._stop), name=f"mcp-session:{self.host}"
        )
        self.sessions_opened += 1
        return ready

    async def _hold(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Open the session, hand it out through ``ready``, keep it until ``stop`` is set.
        A session that cannot be opened sets ``ready``'s exception (a :class:`ToolError` naming
        the failure's type only: the SDK's messages may quote URLs)."""
        import httpx2
        from mcp import Client, MCPError
        from mcp.client.streamable_http import streamable_http_client

        failures = (ExceptionGroup, MCPError, httpx2.HTTPError, OSError, RuntimeError, ValueError)
        http = httpx2.AsyncClient(headers=self._headers, timeout=httpx2.Timeout(30.0, read=300.0))
        failure = "closed"
        try:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, cache=None) as client:
                ready.set_result(client)
                await stop.wait()
        except failures as exc:  # connect, handshake, HTTP status, transport crash
            failure = type(_first_leaf(exc)).__name__
            log.debug("MCP session with %s ended (%s)", self.host, failure)
        finally:
            await http.aclose()
            if not ready.done():
                reason = f"cannot open a session ({failure})"
                ready.set_exception(ToolError(f"MCP server {self.host}: {reason}"))

    async def _drop(self, client: Client) -> None:
        """End the session ``client`` belongs to (if it is still the current one)."""
        async with self._opening:
            if self._client is client:
                await self._end_task()

    async def _end_task(self, *, cancel: bool = False) -> None:
        task, self._task, self._client = self._task, None, None
        if task is None:
            return
        self._stop.set()
        if not cancel:
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        if not task.done():  # a server that does not let go: cancel the session
            task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, Exception):
            log.warning("MCP session with %s failed: %s", self.host, type(outcome).__name__)

    async def close(self) -> None:
        """End the session (idempotent)."""
        async with self._opening:
            self._closed = True
            await self._end_task()


class McpConnections:
    """Sessions shared by endpoint (url and headers): :meth:`acquire` hands out the endpoint's
    connection (counting its users), :meth:`release` closes it when its last user is gone."""

    def __init__(self, factory: Callable[[str, Mapping[str, str]], McpConnection] | None = None):
        self._factory = factory or McpConnection
        self._held: dict[EndpointKey, tuple[McpConnection, int]] = {}

    def acquire(self, url: str, headers: Mapping[str, str]) -> McpConnection:
        key = endpoint_key(url, headers)
        held = self._held.get(key)
        if held is None:
            connection = self._factory(url, headers)
            self._held[key] = (connection, 1)
            return connection
        self._held[key] = (held[0], held[1] + 1)
        return held[0]

    async def release(self, connection: McpConnection) -> None:
        key = connection.key
        held = self._held.get(key)
        if held is None or held[0] is not connection:
            return
        if held[1] > 1:
            self._held[key] = (connection, held[1] - 1)
            return
        del self._held[key]
        await connection.close()

    def __len__(self) -> int:
        return len(self._held)

    async def close(self) -> None:
        """Close every connection (their users' sources are closed with their bots first)."""
        held, self._held = list(self._held.values()), {}
        await asyncio.gather(*(c.close() for c, _ in held), return_exceptions=True)
