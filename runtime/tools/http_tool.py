"""One HTTP endpoint offered to the model as a function (a Bot's ``tools.http`` entry)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..errors import ConfigurationError, ToolError, ToolTimeoutError
from ..schema.tools import HttpTool
from .base import ToolResult, ToolSpec
from .egress import EgressPolicy

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_QUERY_METHODS = frozenset({"GET", "DELETE"})


def placeholders(template: str) -> list[str]:
    """The ``{names}`` of a URL template, in order."""
    return _PLACEHOLDER.findall(template)


def _text(value: Any) -> str:
    """An argument as URL text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def cut(data: bytes, limit: int) -> str:
    """``data`` as text, cut at ``limit`` bytes with a note saying so."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    return data[:limit].decode("utf-8", errors="ignore") + f"\n[cut at {limit} bytes]"


class HttpToolSource:
    """The tool ``config`` (label ``http:<name>``): the URL template's ``{placeholders}`` are
    filled from the call's arguments (URL-encoded, slashes too); the other arguments go in the
    query (GET, DELETE) or as the JSON body. The final URL is checked against ``egress``;
    redirects are not followed (a 3xx is an error result). At most ``maxResponseBytes`` of the
    response are read. A non-2xx answer is a result with ``is_error`` (status and cut body);
    a request that fails raises :class:`ToolError` naming only the host.

    ``client`` is shared: :meth:`close` calls ``release`` (once) instead of closing it;
    ``headers`` are the resolved header values."""

    def __init__(
        self,
        config: HttpTool,
        headers: Mapping[str, str],
        client: httpx.AsyncClient,
        egress: EgressPolicy,
        *,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.label = f"http:{config.name}"
        self._headers = dict(headers)
        self._client = client
        self._egress = egress
        self._release = release

    async def list_tools(self) -> list[ToolSpec]:
        config = self.config
        spec = ToolSpec(
            name=config.name,
            description=config.description,
            parameters=config.parameters,
            requires_approval=config.requires_approval,
            source=self.label,
            timeout=config.timeout,
        )
        return [spec]

    def request_of(self, arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL and the httpx keywords (``params`` or ``json``) of a call with ``arguments``."""
        config = self.config
        names = placeholders(config.url)
        missing = [name for name in names if arguments.get(name) is None]
        if missing:
            raise ToolError(
                f"{config.name}: argument {missing[0]!r} is missing (it is part of the URL)"
            )
        url = _PLACEHOLDER.sub(lambda m: quote(_text(arguments[m.group(1)]), safe=""), config.url)
        rest = {key: value for key, value in arguments.items() if key not in names}
        if config.method in _QUERY_METHODS:
            params = [(key, _text(value)) for key, value in rest.items() if value is not None]
            return url, {"params": params} if params else {}
        return url, {"json": rest}

    async def call(self, name: str, arguments: Mapping[str, Any], *, seconds: float) -> ToolResult:
        config = self.config
        if name != config.name:
            raise ToolError(f"unknown tool {name!r}")
        url, payload = self.request_of(arguments)
        host = urlsplit(url).hostname or "(none)"
        try:
            self._egress.check(url, field=f"tools.http.{config.name}.url")
        except ConfigurationError:
            raise ToolError(
                f"{config.name}: host {host!r} is not in the runtime's tool egress allow-list"
            ) from None
        limit = min(config.timeout, seconds) if seconds > 0 else config.timeout
        try:
            async with self._client.stream(
                config.method,
                url,
                headers=self._headers,
                timeout=limit,
                follow_redirects=False,
                **payload,
            ) as response:
                body = await _read_at_most(response, config.max_response_bytes)
        except httpx.TimeoutException:
            raise ToolTimeoutError(
                f"{config.name}: {host} did not answer within {limit:g} seconds"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError) as exc:
            raise ToolError(
                f"{config.name}: the request to {host} failed ({type(exc).__name__})"
            ) from None
        text = cut(body, config.max_response_bytes)
        if response.is_success:
            return ToolResult(text)
        status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        return ToolResult(f"{status}: {text}" if text else status, is_error=True)

    async def close(self) -> None:
        """Give the shared client back (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            await release()


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of the body (one more tells that it was longer)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)[: limit + 1]
