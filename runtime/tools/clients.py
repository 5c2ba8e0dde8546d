"""The HTTP client and MCP sessions a :class:`~kubebots.runtime.factory.BotFactory`'s bots share.

Bots built by one factory share one ``httpx.AsyncClient`` for their HTTP tools (its connection
pool is per host) and one MCP session per endpoint; each is opened by its first user and closed
when its last user (a tool source, closed with its bot) gives it back.
"""

from __future__ import annotations

import httpx

from .mcp_connection import McpConnections

#: Connections kept open per host between tool calls (the pool's keep-alive limit).
KEEPALIVE_CONNECTIONS = 20


class ToolClients:
    """Reference-counted clients of the tools of every bot of a factory."""

    def __init__(self, mcp: McpConnections | None = None) -> None:
        #: MCP sessions by endpoint (url and headers)
        self.mcp = mcp or McpConnections()
        self._http: httpx.AsyncClient | None = None
        self._http_users = 0

    @property
    def http_users(self) -> int:
        """Tool sources holding the shared HTTP client (0: it is closed)."""
        return self._http_users

    def acquire_http(self) -> httpx.AsyncClient:
        """The shared HTTP client (opened by the first user); give it back with
        :meth:`release_http`. Redirects are never followed."""
        if self._http is None:
            limits = httpx.Limits(max_keepalive_connections=KEEPALIVE_CONNECTIONS)
            self._http = httpx.AsyncClient(follow_redirects=False, limits=limits)
        self._http_users += 1
        return self._http

    async def release_http(self) -> None:
        """One user is done with the HTTP client; the last one closes it."""
        self._http_users = max(0, self._http_users - 1)
        if self._http_users == 0 and self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    async def close(self) -> None:
        """Close everything still open (the bots using it should be closed first)."""
        self._http_users = 0
        client, self._http = self._http, None
        try:
            if client is not None:
                await client.aclose()
        finally:
            await self.mcp.close()
