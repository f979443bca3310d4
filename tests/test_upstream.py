"""Tests of the upstream resolver fixture (tests/kit/upstream.py), over real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.kit.upstream import Faults, Seen, Upstream

SHORT = 0.25  # seconds to wait for an answer that must not come


@pytest.fixture
def up() -> Iterator[Upstream]:
    with Upstream() as upstream:
        yield upstream


def ask(
    up: Upstream, name: str, rdtype: str = "A", *, tcp: bool = False, **make: object
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **make)  # type: ignore[arg-type]
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, up.host, port=up.port, timeout=2)


def rdata(response: dns.message.Message) -> list[tuple[str, str, str]]:
    """(owner, type, rdata) of the answer section, rdata sorted within each rrset."""
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd)
        for rrset in response.answer
        for rd in sorted(r.to_text() for r in rrset)
    ]


def raw_udp(up: Upstream, wire: bytes, timeout: float = 2) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (up.host, up.port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def read_frame(sock: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    return exactly(struct.unpack("!H", exactly(2))[0])


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


# ---------------------------------------------------------------------------- answers


def test_positive_answer_flags_and_ttl(up: Upstream) -> None:
    response = ask(up, "example.com.")
    assert response.rcode() == dns.rcode.NOERROR
    assert rdata(response) == [("example.com.", "A", "93.184.216.34")]
    assert response.answer[0].ttl == 300
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RA
    assert response.flags & dns.flags.RD  # copied from the query
    assert not response.flags & dns.flags.AA
    assert not response.authority


def test_rd_is_copied_not_forced(up: Upstream) -> None:
    query = dns.message.make_query("example.com.", "A")
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, up.host, port=up.port, timeout=2)
    assert not response.flags & dns.flags.RD
    assert response.flags & dns.flags.RA


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("example.com.", "AAAA", ["2606:2800:220:1:248:1893:25c8:1946"]),
        ("example.com.", "MX", ["10 mail.example.com."]),
        ("example.com.", "TXT", ['"v=spf1 -all"']),
        ("mail.example.com.", "A", ["192.0.2.25"]),
        ("rr.example.com.", "A", ["192.0.2.10", "192.0.2.11", "192.0.2.12"]),
        (
            "gmail.com.",
            "MX",
            [
                "10 alt1.gmail-smtp-in.l.google.com.",
                "20 alt2.gmail-smtp-in.l.google.com.",
                "30 alt3.gmail-smtp-in.l.google.com.",
                "40 alt4.gmail-smtp-in.l.google.com.",
                "5 gmail-smtp-in.l.google.com.",
            ],
        ),
        ("gmail.com.", "A", ["142.250.196.101"]),
        ("gmail-smtp-in.l.google.com.", "A", ["142.250.157.26"]),
        ("alt4.gmail-smtp-in.l.google.com.", "A", ["74.125.126.26"]),
        (
            "yahoo.co.jp.",
            "MX",
            [f"10 mx{i}.mail.yahoo.co.jp." for i in (1, 2, 3, 5)],
        ),
        ("yahoo.co.jp.", "A", ["183.79.219.252"]),
        ("mx5.mail.yahoo.co.jp.", "A", ["182.22.12.117"]),
        ("2.amazon.pool.ntp.org.", "A", ["13.230.178.110"]),
        ("ssm.ap-northeast-1.amazonaws.com.", "AAAA", ["2406:da14:7ff:f800::50"]),
        ("logs.ap-northeast-1.amazonaws.com.", "A", ["52.119.221.80"]),
        ("ip-10-0-0-150.ap-northeast-1.compute.internal.", "A", ["10.0.0.150"]),
        (
            "controldomain1.aggregatelist.firewall.route53resolver.us-east-1.amazonaws.com.",
            "A",
            ["1.2.3.4"],
        ),
    ],
)
def test_default_zone_data(up: Upstream, name: str, rdtype: str, expected: list[str]) -> None:
    response = ask(up, name, rdtype)
    assert response.rcode() == dns.rcode.NOERROR
    assert rdata(response) == [(name, rdtype, rd) for rd in expected]


def test_cname_chain_across_three_zones(up: Upstream) -> None:
    response = ask(up, "a.example.")
    assert rdata(response) == [
        ("a.example.", "CNAME", "b.tracker.example."),
        ("b.tracker.example.", "CNAME", "c.cdn.example."),
        ("c.cdn.example.", "A", "198.51.100.7"),
    ]


@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("www.google.com.", "A", [("www3.l.google.com.", "A", "142.250.207.4")]),
        ("cdn-redirect.google.com.", "A", [("edge.akamaiedge.net.", "A", "203.0.113.9")]),
        ("mirrors.fedoraproject.org.", "A", [("wildcard.fedoraproject.org.", "A", "38.145.60.21")]),
        (
            "amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com.",
            "A",
            [("s3-r-w.dualstack.ap-northeast-1.amazonaws.com.", "A", "52.219.16.50")],
        ),
        (
            "chain1.example.com.",
            "A",
            [
                ("chain2.example.com.", "CNAME", "chain3.example.com."),
                ("chain3.example.com.", "CNAME", "www.example.com."),
                ("www.example.com.", "CNAME", "example.com."),
                ("example.com.", "A", "93.184.216.34"),
            ],
        ),
    ],
)
def test_cname_chains_end_at_the_target(
    up: Upstream, name: str, rdtype: str, expected: list[tuple[str, str, str]]
) -> None:
    response = ask(up, name, rdtype)
    records = rdata(response)
    assert records[0][:2] == (name, "CNAME")
    assert records[-len(expected) :] == expected


def test_cname_query_is_not_chased(up: Upstream) -> None:
    assert rdata(ask(up, "www.example.com.", "CNAME")) == [
        ("www.example.com.", "CNAME", "example.com.")
    ]


def test_cname_to_missing_name_is_nxdomain_with_the_chain(up: Upstream) -> None:
    response = ask(up, "dangling.example.com.")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert rdata(response) == [("dangling.example.com.", "CNAME", "gone.example.com.")]
    assert response.authority[0].name.to_text() == "example.com."


def test_cname_loop_is_servfail(up: Upstream) -> None:
    wire = raw_udp(up, dns.message.make_query("loop1.example.com.", "A").to_wire())
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert [r[0] for r in rdata(response)] == ["loop1.example.com.", "loop2.example.com."]
    assert struct.unpack("!H", wire[6:8])[0] == 2  # ANCOUNT: each CNAME once, loop not unrolled


def test_chain_longer_than_16_is_servfail(up: Upstream) -> None:
    links = "\n".join(f"c{i} CNAME c{i + 1}" for i in range(20)) + "\nc20 A 192.0.2.1"
    up.set_zones(f"$ORIGIN t.\n@ SOA ns hm 1 2 3 4 60\n{links}\n")
    response = ask(up, "c4.t.")  # 16 CNAMEs to c20: still answered
    assert response.rcode() == dns.rcode.NOERROR
    assert rdata(response)[-1] == ("c20.t.", "A", "192.0.2.1")
    response = ask(up, "c3.t.")  # 17 CNAMEs
    assert response.rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "zone"),
    [
        ("does-not-exist.example.com.", "A", dns.rcode.NXDOMAIN, "example.com."),
        ("example.invalid.", "A", dns.rcode.NXDOMAIN, "."),
        ("__cloud_init_expected_not_found__.", "AAAA", dns.rcode.NXDOMAIN, "."),
        (
            "2.amazon.pool.ntp.org.ap-northeast-1.compute.internal.",
            "A",
            dns.rcode.NXDOMAIN,
            "ap-northeast-1.compute.internal.",
        ),
        ("mail.example.com.", "AAAA", dns.rcode.NOERROR, "example.com."),
        ("yahoo.co.jp.", "AAAA", dns.rcode.NOERROR, "yahoo.co.jp."),
        ("ent.example.com.", "A", dns.rcode.NOERROR, "example.com."),  # empty non-terminal
        ("tracker.example.", "A", dns.rcode.NOERROR, "tracker.example."),  # apex without A
    ],
)
def test_negative_answers_carry_the_zone_soa(
    up: Upstream, name: str, rdtype: str, rcode: int, zone: str
) -> None:
    response = ask(up, name, rdtype)
    assert response.rcode() == rcode
    assert not response.answer
    [soa] = response.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == zone
    assert soa.ttl == 60  # capped at the SOA minimum


def test_wildcard(up: Upstream) -> None:
    assert rdata(ask(up, "x.w.example.com.")) == [("x.w.example.com.", "A", "192.0.2.77")]
    assert rdata(ask(up, "a.b.w.example.com.")) == [("a.b.w.example.com.", "A", "192.0.2.77")]
    nodata = ask(up, "x.w.example.com.", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    # w.example.com itself is an empty non-terminal, not covered by its own wildcard
    assert ask(up, "w.example.com.").rcode() == dns.rcode.NOERROR
    assert not ask(up, "w.example.com.").answer


def test_dname_synthesises_a_cname(up: Upstream) -> None:
    response = ask(up, "www.dname.example.")
    assert rdata(response) == [
        ("dname.example.", "DNAME", "example.com."),
        ("www.dname.example.", "CNAME", "www.example.com."),
        ("www.example.com.", "CNAME", "example.com."),
        ("example.com.", "A", "93.184.216.34"),
    ]
    assert rdata(ask(up, "dname.example.", "DNAME")) == [
        ("dname.example.", "DNAME", "example.com.")
    ]
    assert ask(up, "nope.dname.example.").rcode() == dns.rcode.NXDOMAIN


def test_short_ttl_and_any(up: Upstream) -> None:
    assert ask(up, "short-ttl.example.com.").answer[0].ttl == 2
    types = {
        dns.rdatatype.to_text(r.rdtype) for r in ask(up, "example.com.", "ANY", tcp=True).answer
    }
    assert {"SOA", "NS", "A", "AAAA", "MX", "TXT"} <= types


def test_refused_outside_all_zones_and_servfail_for_unreachable_target() -> None:
    zones = "$ORIGIN z.\n@ SOA ns hm 1 2 3 4 60\nout CNAME elsewhere.test.\n"
    with Upstream(zones) as upstream:
        assert ask(upstream, "example.com.").rcode() == dns.rcode.REFUSED
        response = ask(upstream, "out.z.")
        assert response.rcode() == dns.rcode.SERVFAIL
        assert rdata(response) == [("out.z.", "CNAME", "elsewhere.test.")]


def test_non_in_class_and_opcode(up: Upstream) -> None:
    chaos = dns.message.make_query("version.bind.", "TXT", "CH")
    assert dns.query.udp(chaos, up.host, port=up.port, timeout=2).rcode() == dns.rcode.REFUSED
    notify = dns.message.make_query("example.com.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.query.udp(notify, up.host, port=up.port, timeout=2).rcode() == dns.rcode.NOTIMP


# ---------------------------------------------------------------------------- EDNS and size


def test_edns_echo(up: Upstream) -> None:
    assert ask(up, "example.com.").edns == -1  # no OPT in, none out
    response = ask(up, "example.com.", use_edns=0, payload=4096)
    assert response.edns == 0 and response.payload == 1232
    assert not response.ednsflags & dns.flags.DO
    assert ask(up, "example.com.", want_dnssec=True).ednsflags & dns.flags.DO
    badvers = ask(up, "example.com.", use_edns=1)
    assert badvers.rcode() == dns.rcode.BADVERS and badvers.edns == 0


@pytest.mark.parametrize(
    ("name", "edns", "payload", "truncated"),
    [
        ("medium.example.com.", -1, 0, True),  # > 512 without EDNS
        ("medium.example.com.", 0, 1232, False),
        ("medium.example.com.", 0, 512, True),
        ("big.example.com.", 0, 1232, True),
        ("big.example.com.", 0, 4096, False),
    ],
)
def test_udp_truncation_honours_client_size(
    up: Upstream, name: str, edns: int, payload: int, truncated: bool
) -> None:
    response = ask(up, name, "TXT", use_edns=edns, payload=payload)
    assert bool(response.flags & dns.flags.TC) == truncated
    if truncated:
        assert not response.answer and not response.authority
        assert response.edns == edns  # OPT kept in a truncated reply
    else:
        assert len(response.to_wire()) <= max(payload, 512)
    full = ask(up, name, "TXT", tcp=True, use_edns=edns, payload=payload)
    assert not full.flags & dns.flags.TC
    assert len(full.answer[0]) == (12 if name.startswith("medium") else 40)


def test_answer_sizes_span_the_limits(up: Upstream) -> None:
    medium = len(ask(up, "medium.example.com.", "TXT", tcp=True).to_wire())
    big = len(ask(up, "big.example.com.", "TXT", tcp=True, use_edns=0).to_wire())
    assert 512 < medium < 1232 < big


# ---------------------------------------------------------------------------- faults


def test_fault_drop_udp_and_tcp(up: Upstream) -> None:
    up.faults.drop = True
    query = dns.message.make_query("example.com.", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, up.host, port=up.port, timeout=SHORT)
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, up.host, port=up.port, timeout=SHORT)
    up.faults.drop = False  # flipped while running
    assert ask(up, "example.com.").rcode() == dns.rcode.NOERROR


def test_fault_delay_holds_back_only_the_delayed_query(up: Upstream) -> None:
    up.faults = Faults(delay=1.0, only_names=frozenset({"mail.example.com."}))
    query = dns.message.make_query("mail.example.com.", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(query, up.host, port=up.port, timeout=SHORT)
    with socket.create_connection((up.host, up.port), timeout=3) as sock:
        slow = dns.message.make_query("mail.example.com.", "A")
        fast = dns.message.make_query("example.com.", "A")
        sock.sendall(frame(slow.to_wire()) + frame(fast.to_wire()))
        first = dns.message.from_wire(read_frame(sock))
        second = dns.message.from_wire(read_frame(sock))
    assert (first.id, second.id) == (fast.id, slow.id)  # out of order, as RFC 7766 allows
    assert rdata(second) == [("mail.example.com.", "A", "192.0.2.25")]


def test_fault_servfail(up: Upstream) -> None:
    up.faults.servfail = True
    response = ask(up, "example.com.", use_edns=0)
    assert response.rcode() == dns.rcode.SERVFAIL and not response.answer
    assert response.edns == 0
    assert ask(up, "example.com.", tcp=True).rcode() == dns.rcode.SERVFAIL


def test_fault_truncate_is_udp_only(up: Upstream) -> None:
    up.faults.truncate = True
    udp = ask(up, "example.com.")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask(up, "example.com.", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert rdata(tcp) == [("example.com.", "A", "93.184.216.34")]


def test_fault_garbage_keeps_the_id_and_never_parses(up: Upstream) -> None:
    up.faults.garbage = True
    query = dns.message.make_query("example.com.", "A")
    for _ in range(20):  # random content: check several
        reply = raw_udp(up, query.to_wire())
        assert reply is not None and struct.unpack("!H", reply[:2])[0] == query.id
        with pytest.raises(dns.exception.DNSException):
            dns.message.from_wire(reply)
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        sock.sendall(frame(query.to_wire()))
        with pytest.raises(dns.exception.DNSException):
            dns.message.from_wire(read_frame(sock))


def test_fault_wrong_id(up: Upstream) -> None:
    up.faults.wrong_id = True
    query = dns.message.make_query("example.com.", "A")
    reply = raw_udp(up, query.to_wire())
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == (query.id + 1) & 0xFFFF
    assert not query.is_response(response)


def test_fault_wrong_question(up: Upstream) -> None:
    up.faults.wrong_question = True
    query = dns.message.make_query("example.com.", "A")
    reply = raw_udp(up, query.to_wire())
    assert reply is not None
    response = dns.message.from_wire(reply)
    assert response.id == query.id
    assert response.question[0].name.to_text() == "wrong-question.invalid."
    assert not query.is_response(response)


def test_fault_only_names(up: Upstream) -> None:
    up.faults = Faults(servfail=True, only_names=frozenset({"mail.example.com."}))
    assert ask(up, "MAIL.example.com.").rcode() == dns.rcode.SERVFAIL  # case-insensitive
    assert ask(up, "example.com.").rcode() == dns.rcode.NOERROR
    up.faults.only_names = frozenset({"example.com"})  # trailing dot optional
    assert ask(up, "example.com.").rcode() == dns.rcode.SERVFAIL


# ---------------------------------------------------------------------------- transport


def test_seen_records_every_query_even_dropped(up: Upstream) -> None:
    ask(up, "Example.COM.", "MX")
    up.faults.drop = True
    query = dns.message.make_query("gmail.com.", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.tcp(query, up.host, port=up.port, timeout=SHORT)
    first, second = up.seen
    assert (first.name, first.qtype, first.transport) == ("example.com.", "MX", "udp")
    assert first.client[0] == "127.0.0.1" and first.client[1] > 0
    assert second == Seen("gmail.com.", "A", "tcp", query.id, second.client)


def test_tcp_several_queries_per_connection(up: Upstream) -> None:
    queries = [
        dns.message.make_query(name, "A") for name in ("example.com.", "a.example.", "nope.test.")
    ]
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        sock.sendall(b"".join(frame(q.to_wire()) for q in queries))  # pipelined in one write
        replies = [dns.message.from_wire(read_frame(sock)) for _ in queries]
        sock.sendall(frame(dns.message.make_query("gmail.com.", "MX").to_wire()))
        later = dns.message.from_wire(read_frame(sock))
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [0, 0, dns.rcode.NXDOMAIN]
    assert len(later.answer[0]) == 5


def test_bad_input_survives(up: Upstream) -> None:
    assert raw_udp(up, b"\x01\x02\x03", timeout=SHORT) is None  # no header: ignored
    header_only = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\xff\xff"
    formerr = raw_udp(up, header_only)
    assert formerr is not None
    response = dns.message.from_wire(formerr)
    assert response.id == 0xBEEF and response.rcode() == dns.rcode.FORMERR
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RD
    reply_to_us = dns.message.make_response(dns.message.make_query("example.com.", "A"))
    assert raw_udp(up, reply_to_us.to_wire(), timeout=SHORT) is None  # responses ignored
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        sock.sendall(frame(b"") + frame(header_only) + frame(b"\x00" * 3))
        assert dns.message.from_wire(read_frame(sock)).rcode() == dns.rcode.FORMERR
        query = dns.message.make_query("example.com.", "A")
        sock.sendall(frame(query.to_wire()))
        assert dns.message.from_wire(read_frame(sock)).id == query.id
    with socket.create_connection((up.host, up.port), timeout=2) as sock:
        sock.sendall(b"\x00\x40half a frame")  # then closed mid-frame
    assert ask(up, "example.com.").rcode() == dns.rcode.NOERROR
    assert ask(up, "example.com.", tcp=True).rcode() == dns.rcode.NOERROR


async def test_usable_from_async_tests(up: Upstream) -> None:
    query = dns.message.make_query("c.cdn.example.", "AAAA")
    response = await dns.asyncquery.udp(query, up.host, port=up.port, timeout=2)
    assert rdata(response) == [("c.cdn.example.", "AAAA", "2001:db8::7")]


# ---------------------------------------------------------------------------- lifecycle, zones


def test_address_and_stop() -> None:
    upstream = Upstream().start()
    assert upstream.port > 0 and upstream.address == f"127.0.0.1:{upstream.port}"
    upstream.stop()
    ask_once = dns.message.make_query("example.com.", "A")
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(ask_once, upstream.host, port=upstream.port, timeout=SHORT)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((upstream.host, upstream.port), timeout=2).close()


def test_stop_with_open_connection_and_pending_delay() -> None:
    upstream = Upstream().start()
    upstream.faults.delay = 30.0
    with socket.create_connection((upstream.host, upstream.port), timeout=2) as sock:
        sock.sendall(frame(dns.message.make_query("example.com.", "A").to_wire()))
        while not upstream.seen:  # the query is in the server before it stops
            time.sleep(0.01)
        stopper = threading.Thread(target=upstream.stop)
        stopper.start()
        stopper.join(timeout=5)
        assert not stopper.is_alive()
        assert sock.recv(1) == b""  # connection closed by the server, no answer sent


def test_set_zones_at_run_time(up: Upstream) -> None:
    up.set_zones("$ORIGIN example.com.\n@ SOA ns hm 1 2 3 4 60\n@ A 192.0.2.200\n")
    assert rdata(ask(up, "example.com.")) == [("example.com.", "A", "192.0.2.200")]
    assert ask(up, "gmail.com.").rcode() == dns.rcode.REFUSED
    with pytest.raises(ValueError, match="line 3"):
        up.set_zones("$ORIGIN x.\n@ SOA ns hm 1 2 3 4 60\n@ A not-an-address\n")
    assert rdata(ask(up, "example.com.")) == [("example.com.", "A", "192.0.2.200")]  # kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("www A 192.0.2.1\n", "line 1: data before the first"),
        ("$ORIGIN x\n@ SOA ns hm 1 2 3 4 60\n", "line 1: \\$ORIGIN must be absolute"),
        ("; c\n$ORIGIN x.\n@ A 192.0.2.1\n", "line 2: zone x. has no SOA"),
        ("$ORIGIN x.\n@ SOA ns hm 1 2 3 4 60\n$ORIGIN x.\n@ SOA ns hm 1 2 3 4 60\n", "line 3"),
        ("; nothing\n", "no \\$ORIGIN"),
    ],
)
def test_bad_zone_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Upstream(text)


def test_main_runs_in_the_foreground() -> None:
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen(
        [sys.executable, "-m", "tests.kit.upstream", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("upstream listening on 127.0.0.1:")
            port = int(line.split(":")[1].split()[0])
            query = dns.message.make_query("gmail.com.", "MX")
            assert len(dns.query.udp(query, "127.0.0.1", port=port, timeout=2).answer[0]) == 5
            assert len(dns.query.tcp(query, "127.0.0.1", port=port, timeout=2).answer[0]) == 5
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
