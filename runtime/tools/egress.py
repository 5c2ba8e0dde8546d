"""Where tools may send requests: the runtime's egress allow-list for tool URLs.

A tool URL is written by whoever may edit a Bot, and the runtime sends requests (with the
Bot's secret headers) wherever it points; so a URL must name a host the runtime's operator
allowed. The cluster's own service names are always allowed:

* ``*.svc``, ``*.svc.cluster.local``, ``*.cluster.local`` (``weather.tools.svc``);
* a bare single-label name starting with a letter (``weather``, ``files-mcp``): in a pod it
  resolves through the namespace's search path (``weather.<namespace>.svc.cluster.local``)
  first. ``localhost`` is not one of them: the runtime's own loopback (its admin port) must be
  allowed explicitly.

The runtime's setting adds to that (comma-separated): host names (``api.weather.com``),
wildcards (``*.example.com``: any name below ``example.com``, not ``example.com`` itself),
IP addresses and CIDRs (``127.0.0.1``, ``10.0.0.0/8``, ``::1``), and ``*`` (anything).

IP literals match only addresses and CIDRs, in any spelling the resolver accepts
(``2130706433`` and ``0x7f.1`` are ``127.0.0.1``), so a wildcard never admits one. Names are
not resolved here: DNS is trusted as the cluster's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigurationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Always allowed: the cluster's own domains (``<service>.<namespace>.svc[.cluster.local]``).
CLUSTER_DOMAINS = ("*.svc", "*.svc.cluster.local", "*.cluster.local")

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_WILDCARD = re.compile(rf"^\*(\.{_LABEL})+$")
_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _as_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any spelling a resolver accepts, else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:  # inet_aton accepts the legacy forms: "127.1", "0x7f.0.0.1", "2130706433"
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Hosts (``hosts``: exact names and ``*.suffix`` patterns, lower case) and networks tool
    URLs may reach, on top of the cluster's own domains; ``anything``: no restriction."""

    hosts: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    anything: bool = False

    @classmethod
    def parse(cls, text: str | None) -> EgressPolicy:
        """The policy of a comma-separated setting (empty or None: the cluster's domains only).
        An entry that is no host name, wildcard, address or CIDR raises ``ValueError``."""
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        anything = False
        for raw in (text or "").split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry == "*":
                anything = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not (_HOST.match(entry) or _WILDCARD.match(entry)):
                raise ValueError(
                    f"egress allow-list entry {entry!r} is no host name, *.domain, IP or CIDR"
                )
            hosts.append(entry)
        return cls(tuple(hosts), tuple(networks), anything)

    def allows_host(self, host: str) -> bool:
        """Whether requests may go to ``host`` (a URL's host name, any case)."""
        if self.anything:
            return True
        host = host.lower().rstrip(".")
        address = _as_address(host)
        if address is not None:
            return any(address in network for network in self.networks)
        if host != "localhost" and _SERVICE_NAME.match(host):
            return True
        return any(_matches(pattern, host) for pattern in (*CLUSTER_DOMAINS, *self.hosts))

    def allows(self, url: str) -> bool:
        """Whether ``url`` (http or https) names an allowed host."""
        parts = urlsplit(url)
        return (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (self.allows_host(parts.hostname or ""))
        )

    def check(self, url: str, *, field: str, bot_id: str | None = None) -> None:
        """Raise :class:`ConfigurationError` about ``field`` when ``url`` is not allowed; the
        message names the host, never the path or query."""
        if self.allows(url):
            return
        host = urlsplit(url).hostname or "(none)"
        reason = f"host {host!r} is not in the runtime's tool egress allow-list"
        prefix = f"bot '{bot_id}': " if bot_id is not None else ""
        raise ConfigurationError(
            f"{prefix}{field}: {reason}", errors=[(field, reason)], bot_id=bot_id
        )


def _matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern
