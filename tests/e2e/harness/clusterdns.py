"""A small cluster DNS for the e2e single-node cluster (no CoreDNS, no image pulls).

It answers, authoritatively and over UDP and TCP (RFC 1035 wire format), for the cluster domain:

* ``<svc>.<ns>.svc.<domain>``: A/AAAA = the Service's ClusterIP(s); for a headless Service
  (``clusterIP: None``) the ready addresses of its Endpoints (plus the not-ready ones when
  ``publishNotReadyAddresses``);
* ``<hostname>.<svc>.<ns>.svc.<domain>``: an Endpoints address with a ``hostname`` behind a
  headless Service (StatefulSet pods);
* any other type for a known name, and the empty non-terminals (``<ns>.svc.<domain>``...):
  NOERROR with no answers; an unknown name in the domain: NXDOMAIN. Both carry the zone's SOA in
  the authority section so that resolvers cache the negative answer for ``ttl`` seconds.

Names outside the domain get NXDOMAIN at once: there is no network to forward to, and unlike
REFUSED (which musl ignores, waiting for another server until its timeout) NXDOMAIN ends every
stub resolver's search quickly. Over UDP an answer longer than 512 bytes is replaced by an empty
one with the TC bit (the client retries over TCP); EDNS is not implemented (an OPT record in a
query is ignored, as RFC 6891 allows). Queries that cannot be parsed get FORMERR when their header
can be read, and are dropped otherwise; responses sent to the server are dropped.

The data are a snapshot of the apiserver's Services and Endpoints, re-listed every ``interval``
seconds (0.5 by default, so a new Service resolves within about a second). Where they come from
is a :class:`ClusterSource`: :class:`ApiServerSource` lists them over HTTPS with a bearer token;
tests pass an in-memory one. When listing fails the last snapshot keeps being served.

Threads rather than asyncio: the harness and its callers are synchronous, the stdlib HTTP client
blocks anyway, and every answer is computed from the in-memory snapshot in microseconds, so one
thread serving UDP, one thread per TCP connection and one polling thread is the plainest design;
``socketserver`` supplies binding, the serve loops and a clean shutdown.

    with ClusterDNS(ApiServerSource(cp.server, cp.token, cp.ca_file), port=0) as dns:
        host, port = dns.address

    python -m tests.e2e.harness.clusterdns --server https://10.0.2.15:6443 \\
        --token-file token --ca-file ca.crt --listen 10.0.2.15:53
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import socketserver
import ssl
import struct
import threading
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Protocol, Self, cast

log = logging.getLogger("clusterdns")

DEFAULT_DOMAIN = "cluster.local"
DEFAULT_TTL = 5
DEFAULT_INTERVAL = 0.5
UDP_LIMIT = 512  # RFC 1035 4.2.1, without EDNS
TCP_LIMIT = 65535
TCP_IDLE_TIMEOUT = 10.0

# RR types and classes, response codes and header flags (RFC 1035 4.1.1)
A, SOA, AAAA, ANY = 1, 6, 28, 255
CLASS_IN, CLASS_ANY = 1, 255
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100

#: A domain name as its lower-cased labels, e.g. ``(b"web", b"default", b"svc", b"cluster", ...)``.
Name = tuple[bytes, ...]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_POINTER_JUMPS = 64


# -- data ----------------------------------------------------------------------------------------


class ClusterSource(Protocol):
    """Where the Services and Endpoints come from: their API objects, as JSON-like mappings."""

    def list_services(self) -> Sequence[Mapping[str, Any]]: ...

    def list_endpoints(self) -> Sequence[Mapping[str, Any]]: ...


class ApiServerSource:
    """Lists ``/api/v1/services`` and ``/api/v1/endpoints`` over HTTPS with a bearer token."""

    def __init__(
        self,
        server: str,
        token: str,
        ca_file: str | os.PathLike[str],
        *,
        timeout: float = 5.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=os.fspath(ca_file))

    def __repr__(self) -> str:
        return f"ApiServerSource({self.server!r})"

    def _items(self, path: str) -> list[Mapping[str, Any]]:
        req = urllib.request.Request(self.server + path)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
            body = json.load(resp)
        return list(body.get("items") or [])

    def list_services(self) -> list[Mapping[str, Any]]:
        return self._items("/api/v1/services")

    def list_endpoints(self) -> list[Mapping[str, Any]]:
        return self._items("/api/v1/endpoints")


def to_name(text: str) -> Name:
    return tuple(label.encode("ascii").lower() for label in text.strip(".").split(".") if label)


def _ips(values: Iterable[object]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for value in values:
        try:
            found.append(ipaddress.ip_address(str(value)))
        except ValueError:  # "", None, "None": no address
            continue
    return found


@dataclass(frozen=True)
class Zone:
    """The answers of one snapshot: addresses by name, and every name that exists."""

    domain: Name
    addresses: Mapping[Name, tuple[IPAddress, ...]]
    names: frozenset[Name]

    @classmethod
    def build(
        cls,
        domain: Name,
        services: Iterable[Mapping[str, Any]],
        endpoints: Iterable[Mapping[str, Any]],
    ) -> Zone:
        by_service: dict[tuple[str, str], Mapping[str, Any]] = {}
        for ep in endpoints:
            meta = ep.get("metadata") or {}
            by_service[(str(meta.get("namespace")), str(meta.get("name")))] = ep
        found: dict[Name, list[IPAddress]] = {}
        for svc in services:
            meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            try:
                base = (*to_name(f"{name}.{ns}.svc"), *domain)
            except UnicodeError:
                continue
            if len(base) != len(domain) + 3:
                continue  # no name or namespace, or dots in them
            found.setdefault(base, [])
            if spec.get("clusterIP") != "None":
                found[base] += _ips(spec.get("clusterIPs") or [spec.get("clusterIP")])
                continue
            keys = ["addresses"] + (
                ["notReadyAddresses"] if spec.get("publishNotReadyAddresses") else []
            )
            subsets = (by_service.get((ns, name)) or {}).get("subsets") or []
            for address in (a for s in subsets for k in keys for a in s.get(k) or []):
                ips = _ips([address.get("ip")])
                found[base] += ips
                hostname = address.get("hostname")
                if hostname and ips:
                    found.setdefault((str(hostname).encode().lower(), *base), []).extend(ips)
        names = {domain, (b"svc", *domain)}
        for fqdn in found:  # with the empty non-terminals between a name and the domain
            names.update(fqdn[i:] for i in range(len(fqdn) - len(domain)))
        addresses = {n: tuple(dict.fromkeys(ips)) for n, ips in found.items()}
        return cls(domain, addresses, frozenset(names))


# -- wire format ---------------------------------------------------------------------------------


class FormatError(ValueError):
    """The query cannot be parsed."""


def read_name(msg: bytes, pos: int) -> tuple[list[bytes], int]:
    """The labels of the name at ``pos`` (following compression pointers) and where it ends."""
    labels: list[bytes] = []
    end, jumps, size = -1, 0, 1
    while True:
        if pos >= len(msg):
            raise FormatError("name runs past the end of the message")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise FormatError("truncated compression pointer")
            jumps += 1
            if jumps > MAX_POINTER_JUMPS:
                raise FormatError("compression pointer loop")
            end = pos + 2 if end < 0 else end
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length & 0xC0:
            raise FormatError(f"unsupported label type {length:#x}")
        if length == 0:
            return labels, (pos + 1 if end < 0 else end)
        label = msg[pos + 1 : pos + 1 + length]
        size += length + 1
        if len(label) < length or size > 255:
            raise FormatError("label runs past the end, or name longer than 255 bytes")
        labels.append(label)
        pos += 1 + length


class _Writer:
    """A DNS message being written, with name compression."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._offsets: dict[Name, int] = {}

    def name(self, labels: Sequence[bytes]) -> None:
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])
            if suffix in self._offsets:
                self.buf += struct.pack("!H", 0xC000 | self._offsets[suffix])
                return
            if len(self.buf) < 0x4000:
                self._offsets[suffix] = len(self.buf)
            self.buf += bytes([len(labels[i])]) + labels[i]
        self.buf.append(0)

    def record(self, name: Sequence[bytes], rtype: int, ttl: int, rdata: bytes) -> None:
        self.name(name)
        self.buf += struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def _plain_name(labels: Sequence[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


# -- the server ----------------------------------------------------------------------------------


class ClusterDNS:
    """The DNS server: ``start()`` binds UDP and TCP on ``host:port`` and starts serving.

    ``port=0`` picks a port free for both protocols; ``address`` is the bound ``(host, port)``.
    """

    def __init__(
        self,
        source: ClusterSource,
        *,
        host: str = "127.0.0.1",
        port: int = 53,
        domain: str = DEFAULT_DOMAIN,
        ttl: int = DEFAULT_TTL,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.source = source
        self.host, self.port = host, port
        self.domain = to_name(domain)
        self.ttl = ttl
        self.interval = interval
        self.zone = Zone(self.domain, {}, frozenset({self.domain, (b"svc", *self.domain)}))
        self._soa = self._soa_rdata()
        self._stopping = threading.Event()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Load a first snapshot (a failure is logged), bind, and serve in background threads."""
        if self._servers:
            raise RuntimeError("the DNS server is already started")
        self._stopping.clear()
        self.poll_once()
        udp, tcp = self._bind()
        self._servers = [udp, tcp]
        self._threads = [
            threading.Thread(target=udp.serve_forever, args=(0.1,), name="dns-udp", daemon=True),
            threading.Thread(target=tcp.serve_forever, args=(0.1,), name="dns-tcp", daemon=True),
            threading.Thread(target=self._poll, name="dns-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "serving %s on %s:%d (udp+tcp), %d names, source %r",
            b".".join(self.domain).decode(),
            self.host,
            self.port,
            len(self.zone.addresses),
            self.source,
        )

    def _bind(self) -> tuple[_UDPServer, _TCPServer]:
        for _ in range(20):
            udp = _UDPServer((self.host, self.port), self)
            try:
                tcp = _TCPServer((self.host, udp.server_address[1]), self)
            except OSError as exc:
                udp.server_close()
                if self.port or exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self.port = int(udp.server_address[1])
            return udp, tcp
        raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")

    def stop(self) -> None:
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers, self._threads = [], []

    def _poll(self) -> None:
        while not self._stopping.wait(self.interval):
            self.poll_once()

    def poll_once(self) -> None:
        """Re-list the source now; on failure log (once per distinct error) and keep the zone."""
        try:
            self.zone = Zone.build(
                self.domain, self.source.list_services(), self.source.list_endpoints()
            )
        except Exception as exc:  # any failure of the source: keep serving the last snapshot
            error = f"{type(exc).__name__}: {exc}"
            if error != self._last_error:
                log.warning(
                    "listing Services/Endpoints failed (serving the last snapshot): %s", error
                )
            self._last_error = error
            return
        if self._last_error is not None:
            log.info("listing Services/Endpoints works again: %d names", len(self.zone.addresses))
            self._last_error = None

    # -- answers -----------------------------------------------------------------------------

    def _soa_rdata(self) -> bytes:
        mname = _plain_name((b"ns", b"dns", *self.domain))
        rname = _plain_name((b"hostmaster", *self.domain))
        # serial, refresh, retry, expire, minimum (the negative-caching TTL, RFC 2308)
        return mname + rname + struct.pack("!IIIII", 1, 7200, 1800, 86400, self.ttl)

    def answer(self, query: bytes, limit: int = UDP_LIMIT) -> bytes | None:
        """The response to one query message, at most ``limit`` bytes; None to send nothing."""
        if len(query) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        if flags & QR:
            return None  # a response: answering it could start a loop
        opcode = flags & 0x7800
        header_flags = QR | opcode | (flags & RD)
        if opcode != 0:
            return struct.pack("!HHHHHH", qid, header_flags | NOTIMP, 0, 0, 0, 0)
        try:
            if qdcount != 1:
                raise FormatError(f"{qdcount} questions")
            labels, pos = read_name(query, 12)
            if pos + 4 > len(query):
                raise FormatError("truncated question")
            qtype, qclass = struct.unpack("!HH", query[pos : pos + 4])
        except FormatError:
            return struct.pack("!HHHHHH", qid, header_flags | FORMERR, 0, 0, 0, 0)
        name = tuple(label.lower() for label in labels)
        in_domain = name[-len(self.domain) :] == self.domain
        out = _Writer()
        out.buf += bytes(12)
        out.name(labels)
        out.buf += struct.pack("!HH", qtype, qclass)
        question_end = len(out.buf)
        if not in_domain:
            rcode, answers, authority = NXDOMAIN, 0, 0  # nowhere to forward it to
        elif qclass not in (CLASS_IN, CLASS_ANY):
            rcode, answers, authority = REFUSED, 0, 0
        else:
            header_flags |= AA
            rcode, answers, authority = self._lookup(name, labels, qtype, out)
        if len(out.buf) > limit:
            header_flags |= TC
            answers = authority = 0
            del out.buf[question_end:]
        struct.pack_into("!HHHHHH", out.buf, 0, qid, header_flags | rcode, 1, answers, authority, 0)
        return bytes(out.buf)

    def _lookup(
        self, name: Name, labels: list[bytes], qtype: int, out: _Writer
    ) -> tuple[int, int, int]:
        """Write the records for a name in the domain; return ``(rcode, answers, authority)``."""
        zone = self.zone
        if name not in zone.names:
            out.record(self.domain, SOA, self.ttl, self._soa)
            return NXDOMAIN, 0, 1
        answers = 0
        if name == self.domain and qtype in (SOA, ANY):
            out.record(labels, SOA, self.ttl, self._soa)
            answers += 1
        for ip in zone.addresses.get(name, ()):
            rtype = A if ip.version == 4 else AAAA
            if qtype in (rtype, ANY):
                out.record(labels, rtype, self.ttl, ip.packed)
                answers += 1
        if answers:
            return NOERROR, answers, 0
        out.record(self.domain, SOA, self.ttl, self._soa)  # NODATA, cached as negative too
        return NOERROR, 0, 1


# -- socketserver glue ---------------------------------------------------------------------------


class _UDPServer(socketserver.UDPServer):
    max_packet_size = TCP_LIMIT

    def __init__(self, address: tuple[str, int], dns: ClusterDNS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns = dns
        super().__init__(address, _UDPHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error answering %s over UDP", client_address)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], dns: ClusterDNS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.dns = dns
        super().__init__(address, _TCPHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error answering %s over TCP", client_address)


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = cast(_UDPServer, self.server).dns.answer(data, UDP_LIMIT)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.StreamRequestHandler):
    timeout = TCP_IDLE_TIMEOUT

    def handle(self) -> None:
        dns = cast(_TCPServer, self.server).dns
        try:
            while True:  # RFC 7766: several length-prefixed queries per connection
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                data = self.rfile.read(struct.unpack("!H", head)[0])
                reply = dns.answer(data, TCP_LIMIT)
                if reply is None:
                    return
                self.wfile.write(struct.pack("!H", len(reply)) + reply)
        except OSError:  # idle timeout, reset by the client
            return


# -- command line --------------------------------------------------------------------------------


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.harness.clusterdns",
        description="Cluster DNS for the e2e cluster: Services and Endpoints from the apiserver.",
    )
    parser.add_argument("--server", required=True, help="apiserver URL, https://HOST:PORT")
    parser.add_argument("--token-file", required=True, help="file holding a bearer token")
    parser.add_argument("--ca-file", required=True, help="the apiserver's CA certificate")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 53), help="HOST:PORT")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="poll period")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s clusterdns %(message)s")

    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    host, port = args.listen
    dns = ClusterDNS(
        ApiServerSource(args.server, token, args.ca_file),
        host=host,
        port=port,
        domain=args.domain,
        ttl=args.ttl,
        interval=args.interval,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        dns.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    done.wait()
    dns.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
