"""A bot's :class:`Toolset` from its ``tools`` config: sources checked, headers resolved, shared
clients acquired, every source listed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial

from ..schema.tools import ToolsConfig
from ..secrets import SecretResolver
from .base import ToolSource
from .clients import ToolClients
from .egress import EgressPolicy
from .headers import resolve_headers
from .http_tool import HttpToolSource
from .mcp_source import McpToolSource
from .stats import ToolStats
from .toolset import Toolset


async def open_toolset(
    bot_id: str,
    config: ToolsConfig,
    *,
    env: Mapping[str, str],
    secrets: SecretResolver | None,
    egress: EgressPolicy,
    clients: ToolClients,
    stats: ToolStats,
    extra: Sequence[ToolSource] = (),
) -> Toolset | None:
    """The toolset of bot ``bot_id`` (None when it declares no tools and there is no ``extra``).

    A URL outside ``egress`` or a header that cannot be resolved raises
    :class:`~kubebots.runtime.errors.ConfigurationError` naming the field
    (``tools.mcp.0.url``, ``tools.http.1.headers.0.secretRef``); an
    MCP server that cannot be listed raises
    :class:`~kubebots.runtime.errors.ToolUnavailableError`. On failure everything acquired is
    given back (the ``extra`` sources are closed too)."""
    if not config.declared and not extra:
        return None
    sources: list[ToolSource] = []
    try:
        for index, server in enumerate(config.mcp):
            egress.check(server.url, field=f"tools.mcp.{index}.url", bot_id=bot_id)
        for index, tool in enumerate(config.http):
            egress.check(tool.url, field=f"tools.http.{index}.url", bot_id=bot_id)
        for index, server in enumerate(config.mcp):
            where = f"tools.mcp.{index}.headers"
            headers = await resolve_headers(
                server.headers, field=where, bot_id=bot_id, env=env, secrets=secrets
            )
            connection = clients.mcp.acquire(server.url, headers)
            release = partial(clients.mcp.release, connection)
            sources.append(McpToolSource(server, connection, release=release))
        for index, tool in enumerate(config.http):
            where = f"tools.http.{index}.headers"
            headers = await resolve_headers(
                tool.headers, field=where, bot_id=bot_id, env=env, secrets=secrets
            )
            client = clients.acquire_http()
            sources.append(
                HttpToolSource(tool, headers, client, egress, release=clients.release_http)
            )
    except BaseException:
        await asyncio.gather(*(s.close() for s in [*sources, *extra]), return_exceptions=True)
        raise
    return await Toolset.open([*sources, *extra], bot_id=bot_id, stats=stats)


class FactoryTools:
    """What a bot factory needs to give its bots tools: the egress policy, the stats their
    calls are counted in, the clients they share and extra sources per bot id."""

    def __init__(
        self,
        egress: EgressPolicy | None = None,
        stats: ToolStats | None = None,
        extra: Mapping[str, Sequence[ToolSource]] | None = None,
    ) -> None:
        self.egress = egress or EgressPolicy()
        self.stats = stats or ToolStats()
        self.clients = ToolClients()
        self.extra = dict(extra or {})

    async def open(
        self,
        bot_id: str,
        config: ToolsConfig,
        *,
        env: Mapping[str, str],
        secrets: SecretResolver | None,
    ) -> Toolset | None:
        """Bot ``bot_id``'s toolset (see :func:`open_toolset`)."""
        return await open_toolset(
            bot_id,
            config,
            env=env,
            secrets=secrets,
            egress=self.egress,
            clients=self.clients,
            stats=self.stats,
            extra=self.extra.get(bot_id, ()),
        )
