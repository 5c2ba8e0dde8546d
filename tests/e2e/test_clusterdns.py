"""The harness's cluster DNS over real sockets: a fake source, then the real apiserver.

Queries are built and replies decoded by the small codec below (independent of the server's own
parser), sent over UDP/TCP to a server on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.harness.clusterdns import ApiServerSource, ClusterDNS
from tests.e2e.harness.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
A, SOA, AAAA, ANY, TXT = 1, 6, 28, 255, 16
NOERROR, FORMERR, NXDOMAIN, NOTIMP = 0, 1, 3, 4
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
SEARCH = ("{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local")

Addr = tuple[str, int]


# -- a tiny DNS codec for the tests ---------------------------------------------------------------


def encode_name(name: str) -> bytes:
    labels = [label.encode() for label in name.strip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def encode_query(name: str, qtype: int = A, qid: int = 0x4242, flags: int = RD) -> bytes:
    return (
        struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, 1)
    )


def decode_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    for _ in range(128):
        length = msg[pos]
        if length >= 0xC0:
            end = pos + 2 if end is None else end
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        labels.append(msg[pos + 1 : pos + 1 + length].decode())
        pos += 1 + length
    raise AssertionError("pointer loop in a reply")


@dataclass
class Record:
    name: str
    rtype: int
    ttl: int
    rdata: bytes
    offset: int  # where the rdata starts in the message (for names inside it)

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_address(self.rdata))


@dataclass
class Reply:
    raw: bytes
    qid: int
    flags: int
    question: list[tuple[str, int]] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def ips(self) -> list[str]:
        return sorted(r.ip for r in self.answers if r.rtype in (A, AAAA))

    def soa(self) -> tuple[str, str, str, tuple[int, ...]]:
        """owner, mname, rname, (serial, refresh, retry, expire, minimum) of the authority SOA."""
        (rec,) = self.authority
        assert rec.rtype == SOA
        mname, pos = decode_name(self.raw, rec.offset)
        rname, pos = decode_name(self.raw, pos)
        return rec.name, mname, rname, struct.unpack("!IIIII", self.raw[pos : pos + 20])


def decode(msg: bytes) -> Reply:
    qid, flags, qd, an, ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    reply = Reply(msg, qid, flags)
    pos = 12
    for _ in range(qd):
        name, pos = decode_name(msg, pos)
        reply.question.append((name, struct.unpack("!H", msg[pos : pos + 2])[0]))
        pos += 4
    for section, count in ((reply.answers, an), (reply.authority, ns)):
        for _ in range(count):
            name, pos = decode_name(msg, pos)
            rtype, rclass, ttl, size = struct.unpack("!HHIH", msg[pos : pos + 10])
            assert rclass == 1
            section.append(Record(name, rtype, ttl, msg[pos + 10 : pos + 10 + size], pos + 10))
            pos += 10 + size
    assert pos == len(msg), "trailing bytes in the reply"
    return reply


def udp_exchange(addr: Addr, payload: bytes, timeout: float = 2.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, addr)
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def tcp_exchange(addr: Addr, payloads: Sequence[bytes], timeout: float = 2.0) -> list[bytes]:
    """Send every query on one connection (pipelined), then read as many replies."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(b"".join(struct.pack("!H", len(p)) + p for p in payloads))
        stream = s.makefile("rb")
        replies = []
        for _ in payloads:
            (size,) = struct.unpack("!H", stream.read(2))
            replies.append(stream.read(size))
        return replies


def ask(addr: Addr, name: str, qtype: int = A) -> Reply:
    qid = secrets.randbelow(0x10000)
    raw = udp_exchange(addr, encode_query(name, qtype, qid))
    assert raw is not None, f"no reply for {name}"
    reply = decode(raw)
    assert reply.qid == qid and reply.flags & QR
    return reply


def resolve(addr: Addr, name: str, namespace: str, ndots: int = 5) -> tuple[list[str], Reply]:
    """A pod's stub resolver (glibc's order): the search list, the name as is first or last."""
    search = [f"{name}.{suffix.format(ns=namespace)}" for suffix in SEARCH]
    if name.endswith("."):
        candidates = [name]
    elif name.count(".") >= ndots:
        candidates = [name, *search]
    else:
        candidates = [*search, name]
    tried = []
    for candidate in candidates:
        tried.append(candidate.rstrip("."))
        reply = ask(addr, candidate)
        if reply.rcode == NOERROR and reply.answers:
            break
    return tried, reply


# -- a source that is a real implementation, in memory ------------------------------------------


def service(ns: str, name: str, cluster_ip: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80}], **spec},
    }


def endpoints(ns: str, name: str, *subsets: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "subsets": list(subsets)}


def addr(ip: str, hostname: str | None = None) -> dict[str, Any]:
    return {"ip": ip, **({"hostname": hostname} if hostname else {})}


class MemorySource:
    def __init__(self) -> None:
        self.services: list[Mapping[str, Any]] = []
        self.endpoints: list[Mapping[str, Any]] = []
        self.error: Exception | None = None

    def list_services(self) -> list[Mapping[str, Any]]:
        if self.error is not None:
            raise self.error
        return list(self.services)

    def list_endpoints(self) -> list[Mapping[str, Any]]:
        return list(self.endpoints)


def cluster_source() -> MemorySource:
    src = MemorySource()
    src.services = [
        service("default", "kubernetes", "10.0.0.1"),
        service("kubebots-system", "kubebots-postgres", "10.0.0.20"),
        service("default", "web", "10.0.0.30", clusterIPs=["10.0.0.30", "fd00::30"]),
        service("kubebots-system", "pg", "None"),
        service("kubebots-system", "pg-all", "None", publishNotReadyAddresses=True),
        service("kubebots-system", "nobody", "None"),
        service("big", "many", "None"),
        service("default", "external", "", type="ExternalName", externalName="example.com"),
    ]
    pg_subsets = (
        {
            "addresses": [addr("10.1.0.5", "pg-0"), addr("10.1.0.6", "pg-1")],
            "notReadyAddresses": [addr("10.1.0.7", "pg-2")],
            "ports": [{"port": 5432}],
        },
        # the same pods again for a second port: one address each in the answer
        {"addresses": [addr("10.1.0.5", "pg-0")], "ports": [{"port": 9187}]},
    )
    src.endpoints = [
        endpoints("kubebots-system", "pg", *pg_subsets),
        endpoints("kubebots-system", "pg-all", *pg_subsets),
        endpoints("big", "many", {"addresses": [addr(f"10.1.1.{i}") for i in range(1, 61)]}),
        # endpoints of a ClusterIP Service are not what it resolves to
        endpoints("kubebots-system", "kubebots-postgres", {"addresses": [addr("10.1.0.9")]}),
    ]
    return src


@pytest.fixture
def source() -> MemorySource:
    return cluster_source()


@pytest.fixture
def dns(source: MemorySource) -> Iterator[ClusterDNS]:
    with ClusterDNS(source, host="127.0.0.1", port=0) as server:
        yield server


# -- answers ------------------------------------------------------------------------------------


def test_a_record_of_a_cluster_ip_service(dns: ClusterDNS) -> None:
    reply = ask(dns.address, "kubebots-postgres.kubebots-system.svc.cluster.local")
    assert reply.rcode == NOERROR
    assert reply.flags & AA and reply.flags & RD  # authoritative, RD echoed
    assert reply.question == [("kubebots-postgres.kubebots-system.svc.cluster.local", A)]
    assert [(r.name, r.rtype, r.ttl, r.ip) for r in reply.answers] == [
        ("kubebots-postgres.kubebots-system.svc.cluster.local", A, 5, "10.0.0.20")
    ]
    assert reply.authority == []
    # case-insensitive, and the question's case is echoed (0x20 randomisation)
    mixed = ask(dns.address, "KubeBots-Postgres.KUBEBOTS-system.Svc.cluster.LOCAL.")
    assert mixed.ips == ["10.0.0.20"]
    assert mixed.answers[0].name == "KubeBots-Postgres.KUBEBOTS-system.Svc.cluster.LOCAL"
    assert ask(dns.address, "kubernetes.default.svc.cluster.local").ips == ["10.0.0.1"]


def test_dual_stack_service_answers_a_and_aaaa(dns: ClusterDNS) -> None:
    name = "web.default.svc.cluster.local"
    assert ask(dns.address, name).ips == ["10.0.0.30"]
    assert ask(dns.address, name, AAAA).ips == ["fd00::30"]
    assert ask(dns.address, name, ANY).ips == ["10.0.0.30", "fd00::30"]


def test_headless_service_answers_ready_endpoints_and_pod_hostnames(dns: ClusterDNS) -> None:
    reply = ask(dns.address, "pg.kubebots-system.svc.cluster.local")
    assert reply.rcode == NOERROR and reply.flags & AA
    assert reply.ips == ["10.1.0.5", "10.1.0.6"]  # not 10.1.0.7 (not ready), 10.1.0.5 once
    assert ask(dns.address, "pg-all.kubebots-system.svc.cluster.local").ips == [
        "10.1.0.5",
        "10.1.0.6",
        "10.1.0.7",
    ]
    assert ask(dns.address, "pg-1.pg.kubebots-system.svc.cluster.local").ips == ["10.1.0.6"]
    assert ask(dns.address, "pg-2.pg.kubebots-system.svc.cluster.local").rcode == NXDOMAIN
    assert ask(dns.address, "pg-2.pg-all.kubebots-system.svc.cluster.local").ips == ["10.1.0.7"]
    # a headless Service without ready endpoints exists, with no address
    empty = ask(dns.address, "nobody.kubebots-system.svc.cluster.local")
    assert (empty.rcode, empty.answers) == (NOERROR, [])


@pytest.mark.parametrize(
    ("name", "namespace", "answered_by"),
    [
        ("kubebots-postgres", "kubebots-system", 0),
        ("kubebots-postgres.kubebots-system", "e2e-abc", 1),
        ("kubebots-postgres.kubebots-system.svc", "e2e-abc", 2),
        # 4 dots < ndots:5: the search list first (three NXDOMAIN), then the name as is
        ("kubebots-postgres.kubebots-system.svc.cluster.local", "e2e-abc", 3),
        ("kubebots-postgres.kubebots-system.svc.cluster.local.", "e2e-abc", 0),
    ],
)
def test_search_path_expansion(
    dns: ClusterDNS, name: str, namespace: str, answered_by: int
) -> None:
    tried, reply = resolve(dns.address, name, namespace)
    assert reply.ips == ["10.0.0.20"]
    assert len(tried) == answered_by + 1, tried
    assert tried[-1] == "kubebots-postgres.kubebots-system.svc.cluster.local"


def test_short_name_of_another_namespace_is_not_found(dns: ClusterDNS) -> None:
    tried, reply = resolve(dns.address, "kubebots-postgres", "e2e-abc")
    assert len(tried) == 4
    assert (reply.rcode, reply.answers) == (NXDOMAIN, [])


def test_unknown_service_is_nxdomain_with_the_soa(dns: ClusterDNS) -> None:
    reply = ask(dns.address, "nope.kubebots-system.svc.cluster.local")
    assert reply.rcode == NXDOMAIN and reply.flags & AA
    assert reply.answers == []
    owner, mname, rname, (_serial, *_timers, minimum) = reply.soa()
    assert (owner, mname, rname) == (
        "cluster.local",
        "ns.dns.cluster.local",
        "hostmaster.cluster.local",
    )
    assert reply.authority[0].ttl == 5 and minimum == 5  # negative answers are cached 5 s
    # a namespace without Services, and names under a Service that has no hostnames
    assert ask(dns.address, "web.nowhere.svc.cluster.local").rcode == NXDOMAIN
    assert ask(dns.address, "x.kubebots-postgres.kubebots-system.svc.cluster.local").rcode == (
        NXDOMAIN
    )


def test_other_types_and_intermediate_names_are_noerror_without_answers(dns: ClusterDNS) -> None:
    for name, qtype in [
        ("kubebots-postgres.kubebots-system.svc.cluster.local", AAAA),
        ("kubebots-postgres.kubebots-system.svc.cluster.local", TXT),
        ("kubebots-system.svc.cluster.local", A),  # empty non-terminals exist
        ("svc.cluster.local", A),
        ("cluster.local", A),
        ("external.default.svc.cluster.local", A),  # ExternalName: no CNAME support
    ]:
        reply = ask(dns.address, name, qtype)
        assert (reply.rcode, reply.answers) == (NOERROR, []), name
        assert reply.flags & AA
        assert reply.soa()[0] == "cluster.local"  # NODATA is cached as well
    apex = ask(dns.address, "cluster.local", SOA)
    assert [r.rtype for r in apex.answers] == [SOA]


def test_outside_names_fail_fast(dns: ClusterDNS) -> None:
    began = time.monotonic()
    reply = ask(dns.address, "api.openai.com")
    assert reply.rcode == NXDOMAIN
    assert not reply.flags & AA and reply.answers == reply.authority == []
    assert ask(dns.address, "api.openai.com", AAAA).rcode == NXDOMAIN
    # what a pod's resolver does with it: three search suffixes, then the name; all refused fast
    tried, reply = resolve(dns.address, "api.openai.com", "kubebots-system")
    assert tried == [
        "api.openai.com.kubebots-system.svc.cluster.local",
        "api.openai.com.svc.cluster.local",
        "api.openai.com.cluster.local",
        "api.openai.com",
    ]
    assert reply.rcode == NXDOMAIN
    assert time.monotonic() - began < 1.0


def test_tcp_pipelined_queries_and_udp_truncation(dns: ClusterDNS) -> None:
    # 60 A records do not fit in 512 bytes: UDP answers TC with no records, TCP answers them all
    truncated = ask(dns.address, "many.big.svc.cluster.local")
    assert truncated.flags & TC and truncated.answers == []
    assert truncated.question == [("many.big.svc.cluster.local", A)]
    replies = [
        decode(raw)
        for raw in tcp_exchange(
            dns.address,
            [
                encode_query("many.big.svc.cluster.local", qid=1),
                encode_query("kubebots-postgres.kubebots-system.svc.cluster.local", qid=2),
                encode_query("nope.default.svc.cluster.local", qid=3),
            ],
        )
    ]
    assert [r.qid for r in replies] == [1, 2, 3]
    assert not replies[0].flags & TC
    assert replies[0].ips == sorted(f"10.1.1.{i}" for i in range(1, 61))
    assert len(replies[0].raw) > 512
    assert replies[1].ips == ["10.0.0.20"]
    assert replies[2].rcode == NXDOMAIN


def test_compression_pointer_in_a_query(dns: ClusterDNS) -> None:
    # "web" then a pointer to "default.svc.cluster.local", stored after the question
    header = struct.pack("!HHHHHH", 7, RD, 1, 0, 0, 0)
    query = (
        header
        + b"\x03web\xc0\x16"
        + struct.pack("!HH", A, 1)
        + encode_name("default.svc.cluster.local")
    )
    assert len(header) + 6 + 4 == 0x16
    raw = udp_exchange(dns.address, query)
    assert raw is not None
    reply = decode(raw)
    assert reply.question == [("web.default.svc.cluster.local", A)]
    assert reply.ips == ["10.0.0.30"]


def _header(qid: int = 9, flags: int = RD, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, 0, 0, 0)


MALFORMED = {
    "empty": (b"", None),
    "short-header": (b"\x12\x34\x01", None),
    "a-response": (
        _header(flags=QR) + encode_name("web.default.svc.cluster.local") + b"\0\1\0\1",
        None,
    ),
    "no-question": (_header(), FORMERR),
    "name-past-end": (_header() + b"\x03web", FORMERR),
    "no-type-class": (_header() + encode_name("web.default.svc.cluster.local"), FORMERR),
    "pointer-loop": (_header() + b"\x01a\xc0\x0c\0\1\0\1", FORMERR),
    "truncated-pointer": (_header() + b"\xc0", FORMERR),
    "label-type-01": (_header() + b"\x41" + b"a" * 65 + b"\0\0\1\0\1", FORMERR),
    "name-over-255": (_header() + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1", FORMERR),
    "two-questions": (
        _header(qd=2) + encode_name("web.default.svc.cluster.local") + b"\0\1\0\1",
        FORMERR,
    ),
    "opcode-status": (
        _header(flags=2 << 11) + encode_name("web.default.svc.cluster.local") + b"\0\1\0\1",
        NOTIMP,
    ),
}


@pytest.mark.parametrize(("packet", "expected"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_do_not_kill_the_server(
    dns: ClusterDNS, packet: bytes, expected: int | None
) -> None:
    raw = udp_exchange(dns.address, packet, timeout=0.3 if expected is None else 2.0)
    if expected is None:
        assert raw is None
    else:
        assert raw is not None
        reply = decode(raw)
        assert (reply.qid, reply.rcode, reply.flags & QR) == (9, expected, QR)
        assert reply.question == [] and reply.answers == []
    # garbage over TCP: a short frame, then a connection that closes mid-frame
    with socket.create_connection(dns.address, timeout=2) as s:
        s.sendall(struct.pack("!H", len(packet)) + packet)
        if expected is not None:
            assert decode(s.recv(65535)[2:]).rcode == expected
    with socket.create_connection(dns.address, timeout=2) as s:
        s.sendall(b"\x01\x00abc")
    assert ask(dns.address, "web.default.svc.cluster.local").ips == ["10.0.0.30"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_answer_never_raises_on_arbitrary_bytes(junk: bytes, name: bytes) -> None:
    server = ClusterDNS(cluster_source(), port=0)
    server.poll_once()
    for packet in (junk, _header() + name + b"\0\1\0\1", _header() + junk):
        reply = server.answer(packet)
        assert reply is None or 12 <= len(reply) <= 512


def test_new_service_is_answered_within_a_second(dns: ClusterDNS, source: MemorySource) -> None:
    name = "fresh.kubebots-system.svc.cluster.local"
    assert ask(dns.address, name).rcode == NXDOMAIN
    source.services = [*source.services, service("kubebots-system", "fresh", "10.0.0.77")]
    began = time.monotonic()
    while (reply := ask(dns.address, name)).rcode != NOERROR:
        assert time.monotonic() - began < 1.0, "the new Service was not answered within 1 s"
        time.sleep(0.05)
    assert reply.ips == ["10.0.0.77"]
    source.services = source.services[:-1]
    time.sleep(0.8)
    assert ask(dns.address, name).rcode == NXDOMAIN


def test_source_failures_keep_the_snapshot_and_log_once(
    dns: ClusterDNS, source: MemorySource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clusterdns")
    source.error = ConnectionRefusedError("apiserver down")
    for _ in range(3):
        dns.poll_once()
    assert ask(dns.address, "web.default.svc.cluster.local").ips == ["10.0.0.30"]
    source.error = None
    dns.poll_once()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "apiserver down" in messages[0] and "works again" in messages[1]


# -- against the real apiserver ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        yield plane


def create(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = cp.request("POST", path, body)
    assert status == 201, created
    return dict(created)


def test_real_apiserver_source(cp: ControlPlane) -> None:
    ns = "dns-e2e"
    create(cp, "/api/v1/namespaces", {"metadata": {"name": ns}})
    base = f"/api/v1/namespaces/{ns}"
    db = create(
        cp, f"{base}/services", {"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}}
    )
    create(
        cp,
        f"{base}/services",
        {"metadata": {"name": "pg"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}},
    )
    # no controller-manager in this control plane: the Endpoints are written by hand
    create(
        cp,
        f"{base}/endpoints",
        {
            "metadata": {"name": "pg"},
            "subsets": [
                {"addresses": [{"ip": "10.1.0.5", "hostname": "pg-0"}], "ports": [{"port": 5432}]}
            ],
        },
    )
    source = ApiServerSource(cp.server, cp.token, cp.ca_file)
    with ClusterDNS(source, host="127.0.0.1", port=0) as dns:
        assert ask(dns.address, f"db.{ns}.svc.cluster.local").ips == [db["spec"]["clusterIP"]]
        assert ask(dns.address, "kubernetes.default.svc.cluster.local").ips == ["10.0.0.1"]
        assert ask(dns.address, f"pg.{ns}.svc.cluster.local").ips == ["10.1.0.5"]
        assert ask(dns.address, f"pg-0.pg.{ns}.svc.cluster.local").ips == ["10.1.0.5"]
        _, reply = resolve(dns.address, "db", ns)
        assert reply.ips == [db["spec"]["clusterIP"]]

        began = time.monotonic()
        late = create(
            cp,
            f"{base}/services",
            {"metadata": {"name": "late"}, "spec": {"ports": [{"port": 80}]}},
        )
        while (reply := ask(dns.address, f"late.{ns}.svc.cluster.local")).rcode != NOERROR:
            assert time.monotonic() - began < 1.5, "the new Service was not answered in time"
            time.sleep(0.05)
        assert reply.ips == [late["spec"]["clusterIP"]]


def _free_udp_tcp_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both UDP and TCP")


@pytest.mark.parametrize("token_ok", [True, False])
def test_command_line(cp: ControlPlane, tmp_path: Path, token_ok: bool) -> None:
    token_file = tmp_path / "token"
    token_file.write_text((cp.token if token_ok else "wrong") + "\n")
    port = _free_udp_tcp_port()
    log_path = tmp_path / "clusterdns.log"
    argv = [
        sys.executable,
        "-m",
        "tests.e2e.harness.clusterdns",
        f"--server={cp.server}",
        f"--token-file={token_file}",
        f"--ca-file={cp.ca_file}",
        f"--listen=127.0.0.1:{port}",
    ]
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy")}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while udp_exchange(("127.0.0.1", port), encode_query("cluster.local"), 0.2) is None:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
        for _ in range(10):  # queries are not logged
            reply = ask(("127.0.0.1", port), "kubernetes.default.svc.cluster.local")
        time.sleep(1.2)  # a couple of polls: a failing source logs once, not per poll
        if token_ok:
            assert reply.ips == ["10.0.0.1"]
        else:
            assert reply.rcode == NXDOMAIN  # no snapshot yet: only the domain's skeleton
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    lines = log_path.read_text().splitlines()
    assert code == 0, lines
    # one line when it starts, one when it stops, one per (distinct) error
    failures = [line for line in lines if "HTTP Error 401" in line]
    assert len(lines) == 2 + len(failures), lines
    assert len(failures) == (0 if token_ok else 1), lines
    assert "serving cluster.local on 127.0.0.1" in lines[-2]
    assert "stopped" in lines[-1]
