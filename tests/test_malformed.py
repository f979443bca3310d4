"""Malformed messages both ways: queries whose sections do not parse as their counts say get
FORMERR from dnsfw and never reach an upstream; upstream replies that do not parse become
SERVFAIL with EDE 23 (Network Error) and are never cached.

dnsfw runs as a subprocess in front of the test upstream (``tests.kit.upstream``), queried
over real sockets on 127.0.0.1 with hand-made bytes and with dnspython.
"""

from __future__ import annotations

import random
import socket
import struct
import time

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample
from tests.kit.upstream import BROKEN_REPLIES, Faults, Upstream

# PLUGINS (the firewall or nothing) in front of a cache and the upstream
CHAIN = """\
.:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$HTTP
    $PLUGINS
    cache
    forward . $UPSTREAM {
        read_timeout 300ms
    }
}
"""

# no rule decides on the names asked: every answer's CNAME/DNAME targets are inspected
INSPECTING_FIREWALL = """\
firewall {
    list bad domains ads.example
    group main 10 {
        rule block-bad 10 BLOCK bad redirection inspect
    }
}"""

HEADER = struct.Struct("!HHHHHH")
QUESTION = b"\x05gmail\x03com\x00\x00\x01\x00\x01"  # gmail.com A IN, 27 bytes with the header
QEND = 12 + len(QUESTION)
A_FIXED = struct.pack("!HHIH", 1, 1, 300, 4)  # type A, class IN, TTL, RDLENGTH 4
BARE_OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def query(an: int = 0, ns: int = 0, ar: int = 0, records: bytes = b"") -> bytes:
    return HEADER.pack(0xBEEF, 0x0100, 1, an, ns, ar) + QUESTION + records


MALFORMED_QUERIES = {
    # the example: gmail.com A, ANCOUNT 100, no records
    "issue-ancount-100": bytes.fromhex("00010100000100640000000005676d61696c03636f6d0000010001"),
    "ancount-lies": query(an=1),
    "nscount-lies": query(ns=1),
    "arcount-lies": query(ar=1),
    "arcount-lies-after-opt": query(ar=2, records=BARE_OPT),
    "rdlength-past-end": query(ar=1, records=b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x40"),
    "a-rdlength-past-end": query(an=1, records=b"\xc0\x0c" + A_FIXED[:-2] + b"\x00\x09\x01\x02"),
    "owner-pointer-loop": query(
        ar=1, records=struct.pack("!H", 0xC000 | QEND) + A_FIXED + bytes(4)
    ),
    # points at the record's own TYPE field (a 0 byte: the root name), after the pointer
    "owner-pointer-ahead": query(
        an=1, records=struct.pack("!H", 0xC000 | (QEND + 2)) + A_FIXED + bytes(4)
    ),
    "two-opt-records": query(ar=2, records=BARE_OPT + BARE_OPT),
    "opt-in-answer": query(an=1, records=BARE_OPT),
    "edns-option-past-opt": query(ar=1, records=BARE_OPT[:-2] + b"\x00\x04\x00\x0a\x00\x08"),
}


def metric(port: int, name: str, **labels: str) -> float:
    return sample(get(port, "/metrics")[2], name, **labels)


def exchange(port: int, data: bytes, tcp: bool) -> bytes | None:
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", conn.recv(2))[0]
            reply = b""
            while len(reply) < size:
                reply += conn.recv(size - len(reply))
            return reply
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3)
        udp.sendto(data, ("127.0.0.1", port))
        return udp.recv(65535)


def test_malformed_queries_get_formerr_and_never_reach_the_upstream(dnsfw, upstream: Upstream):
    http = free_port()
    fw = dnsfw(corefile(CHAIN, HTTP=http, PLUGINS="", UPSTREAM=upstream.address))
    seen_before = len(upstream.seen)
    sent = 0
    for name, data in MALFORMED_QUERIES.items():
        for tcp in (False, True):
            reply = exchange(fw.port, data, tcp)
            sent += 1
            assert reply is not None, name
            assert reply[:2] == data[:2], name
            assert reply[2] & 0x80 and reply[3] & 0x0F == dns.rcode.FORMERR, (name, tcp)
            dns.message.from_wire(reply)  # the FORMERR itself parses
    assert upstream.unparsed == [] and len(upstream.seen) == seen_before
    assert metric(http, "dnsfw_malformed_queries_total") == sent
    # bytes after the last record are ignored (as miekg/dns does) and never forwarded
    for tcp in (False, True):
        reply = exchange(fw.port, query(ar=1, records=BARE_OPT) + b"junk", tcp)
        assert reply is not None and reply[3] & 0x0F == dns.rcode.NOERROR
        assert dns.message.from_wire(reply).answer
    assert upstream.unparsed == []
    assert [s.name for s in upstream.seen[seen_before:]] == ["gmail.com."]
    assert metric(http, "dnsfw_malformed_queries_total") == sent
    assert metric(http, "coredns_panics_total") == 0


def _fuzzed(rng: random.Random, seeds: list[bytes]) -> bytes:
    """A valid query with a few structural mutations: bytes and counts changed, compression
    pointers planted, the message cut short or extended."""
    packet = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(packet))
        if op == 0:
            packet[pos] = rng.randrange(256)
        elif op == 1:
            packet[rng.choice((7, 9, 11))] = rng.randrange(4)  # ANCOUNT, NSCOUNT, ARCOUNT
        elif op == 2 and pos + 1 < len(packet):
            packet[pos : pos + 2] = struct.pack("!H", 0xC000 | rng.randrange(len(packet) + 4))
        elif op == 3:
            del packet[rng.randrange(12, len(packet) + 1) :]
        elif op == 4:
            packet += rng.randbytes(rng.randrange(1, 24))
        else:
            packet[pos] ^= 0xC0
    packet[2] &= 0x07  # a query (QR clear), opcode QUERY: the cases that reach the checks
    return bytes(packet)


def test_fuzzed_queries_get_parseable_replies_and_no_malformed_one_is_forwarded(
    dnsfw, upstream: Upstream
):
    http = free_port()
    fw = dnsfw(corefile(CHAIN, HTTP=http, PLUGINS="", UPSTREAM=upstream.address))
    rng = random.Random(2211)
    seeds = []
    for name in ("gmail.com.", "www.example.com.", "a.example.", "x.w.example.com."):
        for rdtype in ("A", "AAAA", "MX", "TXT"):
            seeds.append(dns.message.make_query(name, rdtype).to_wire())
            seeds.append(dns.message.make_query(name, rdtype, use_edns=0).to_wire())
            cookie = dns.edns.GenericOption(65001, rng.randbytes(8))  # opaque to every parser
            seeds.append(
                dns.message.make_query(name, rdtype, use_edns=0, options=[cookie]).to_wire()
            )
    replies: list[bytes] = []
    deadline = time.monotonic() + 60
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setblocking(False)
        for i in range(20_000):
            udp.sendto(_fuzzed(rng, seeds), ("127.0.0.1", fw.port))
            if i % 100 == 99:
                time.sleep(0.01)  # let dnsfw drain its socket buffer
                replies += _drain(udp)
            assert time.monotonic() < deadline, "fuzzing took too long"
        time.sleep(1.0)  # answers of queries that wait on the upstream (read_timeout 300ms)
        replies += _drain(udp)
    assert fw.proc.poll() is None, fw.stderr
    assert len(replies) > 10_000
    for reply in replies:
        dns.message.from_wire(reply)  # raises if a reply does not parse
    assert metric(http, "coredns_panics_total") == 0
    assert metric(http, "dnsfw_malformed_queries_total") > 0
    # what dnsfw forwarded, the upstream could read: no broken name, pointer or section
    structural = {"BadPointer", "BadLabelType", "TrailingJunk", "BadEDNS", "ShortHeader"}
    assert [reason for reason, _ in upstream.unparsed if reason in structural] == []
    assert fw.query("after.fuzz.example.com.").rcode() == dns.rcode.NXDOMAIN


def _drain(udp: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(udp.recv(65535))
        except BlockingIOError:
            return got


@pytest.mark.parametrize("firewall", [False, True], ids=["cache", "firewall+cache"])
def test_broken_upstream_replies_get_servfail_with_ede_23_and_are_not_cached(
    dnsfw, upstream: Upstream, firewall: bool
):
    http = free_port()
    plugins = INSPECTING_FIREWALL if firewall else ""
    fw = dnsfw(corefile(CHAIN, HTTP=http, PLUGINS=plugins, UPSTREAM=upstream.address))
    for kind in BROKEN_REPLIES:
        name = f"{kind.replace('_', '-')}.w.example.com."
        upstream.faults = Faults(broken=kind, only_names=frozenset({name}))
        for tcp in (False, True):
            reply = fw.query(name, "A", tcp=tcp, use_edns=0)
            assert reply.rcode() == dns.rcode.SERVFAIL, (kind, tcp)
            assert [(o.otype, o.code) for o in reply.options] == [(dns.edns.EDE, 23)], kind
        # nothing was cached: the second query went to the upstream again
        assert [s.name for s in upstream.seen].count(name) == 2, kind
    to = upstream.address
    assert metric(http, "dnsfw_forward_malformed_replies_total", to=to) == 2 * len(BROKEN_REPLIES)
    assert metric(http, "coredns_panics_total") == 0
    # the upstream mends: the same names are answered (and cached) again
    upstream.faults = Faults()
    name = "owner-loop.w.example.com."
    assert fw.query(name, "A").rcode() == dns.rcode.NOERROR
    assert fw.query(name, "A").rcode() == dns.rcode.NOERROR
    assert [s.name for s in upstream.seen].count(name) == 3
