"""The core server end to end: routing, protocol edge cases, malformed input, TCP, shutdown.

dnsfw runs as a subprocess (``dnsfw run``) and is queried over real sockets on 127.0.0.1 with
dnspython, raw sockets and ``dig``.
"""

from __future__ import annotations

import random
import signal
import socket
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import plugins
from tests.kit.corefiles import FORWARD, WHOAMI, corefile
from tests.kit.dnsfw import ROOT, free_port, run_cli

ROUTED = """
example.org:$PORT {
    bind 127.0.0.1
    whoami
}
a.example.org:$PORT {
    bind 127.0.0.1
    errors
}
"""


def udp_raw(port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_whoami_over_udp_and_tcp(dnsfw):
    d = dnsfw(WHOAMI)
    for tcp in (False, True):
        r = d.query("who.example.", "A", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR
        assert r.flags & dns.flags.AA
        a = [rr for rr in r.additional if rr.rdtype == dns.rdatatype.A]
        assert a and a[0][0].address == "127.0.0.1"
        srv = [rr for rr in r.additional if rr.rdtype == dns.rdatatype.SRV]
        assert str(srv[0].name) == ("_tcp" if tcp else "_udp") + ".who.example."


def test_dig_talks_to_dnsfw(dnsfw):
    d = dnsfw(WHOAMI)
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(d.port), "dig.example.", "A", "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert "status: NOERROR" in out
    assert "_udp.dig.example." in out


def test_routing_longest_zone_and_refused(dnsfw):
    d = dnsfw(ROUTED)
    # example.org block answers with whoami
    r = d.query("www.example.org.", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.additional
    # a.example.org block has no answering plugin: past its last plugin is SERVFAIL
    r = d.query("x.a.example.org.", "A")
    assert r.rcode() == dns.rcode.SERVFAIL
    # nothing matches example.net: REFUSED
    r = d.query("example.net.", "A")
    assert r.rcode() == dns.rcode.REFUSED
    # DS for a.example.org goes to the parent side (example.org block)
    r = d.query("a.example.org.", "DS")
    assert r.rcode() == dns.rcode.NOERROR and r.additional


def test_case_of_question_is_preserved(dnsfw):
    d = dnsfw(WHOAMI)
    r = d.query("MiXeD.ExAmPlE.", "A")
    assert r.question[0].name.to_text() == "MiXeD.ExAmPlE."


def test_non_in_class_refused_and_multi_question_formerr(dnsfw):
    d = dnsfw(WHOAMI)
    q = dns.message.make_query("chaos.example.", "TXT", rdclass="CH")
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=2)
    assert r.rcode() == dns.rcode.REFUSED
    # two questions: FORMERR
    q = dns.message.make_query("one.example.", "A")
    wire = bytearray(q.to_wire())
    question = bytes(wire[12:])
    wire[4:6] = struct.pack("!H", 2)
    reply = udp_raw(d.port, bytes(wire) + question)
    assert reply is not None
    assert reply[3] & 0xF == dns.rcode.FORMERR
    assert reply[:2] == wire[:2]


def test_malformed_headers_and_questions(dnsfw):
    d = dnsfw(WHOAMI)
    # shorter than a header: dropped
    assert udp_raw(d.port, b"\x12\x34\x01", timeout=0.5) is None
    # a response (QR set): dropped, no reflection
    resp = bytearray(dns.message.make_query("x.example.", "A").to_wire())
    resp[2] |= 0x80
    assert udp_raw(d.port, bytes(resp), timeout=0.5) is None
    # header fine, question name runs off the end: FORMERR with the id
    bad = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam"
    reply = udp_raw(d.port, bad)
    assert reply is not None and reply[:2] == b"\xab\xcd" and reply[3] & 0xF == dns.rcode.FORMERR
    # opcode UPDATE: NOTIMP
    upd = bytearray(dns.message.make_query("x.example.", "SOA").to_wire())
    upd[2] = (upd[2] & 0x87) | (5 << 3)
    reply = udp_raw(d.port, bytes(upd))
    assert reply is not None and reply[3] & 0xF == dns.rcode.NOTIMP


def test_edns_version_above_zero_gets_badvers(dnsfw):
    d = dnsfw(WHOAMI)
    q = dns.message.make_query("v1.example.", "A", use_edns=1)
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=2)
    assert r.rcode() == dns.rcode.BADVERS
    assert r.edns == 0


def test_edns_is_echoed_only_when_asked(dnsfw):
    d = dnsfw(WHOAMI)
    r = d.query("plain.example.", "A", use_edns=False)
    assert r.edns == -1
    r = d.query("edns.example.", "A", use_edns=0, want_dnssec=True)
    assert r.edns == 0 and r.ednsflags & dns.flags.DO


def test_random_and_mutated_packets_do_not_break_the_listener(dnsfw):
    """Thousands of random and mutated datagrams and TCP messages, then normal queries."""
    d = dnsfw(WHOAMI)
    rng = random.Random(20261122)
    seeds = [
        dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
        for name in ("a.example.", "deep.sub.example.org.", "x.")
        for rdtype in ("A", "AAAA", "TXT", "MX")
        for edns in (False, 0)
    ]
    baseline = rss_kb(d.proc.pid)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(6000):
            if i % 3 == 0:
                packet = rng.randbytes(rng.randrange(0, 600))
            else:
                packet = bytearray(rng.choice(seeds))
                for _ in range(rng.randrange(1, 8)):
                    pos = rng.randrange(len(packet))
                    packet[pos] = rng.randrange(256)
                if rng.random() < 0.3:
                    packet = packet[: rng.randrange(len(packet))]
                packet = bytes(packet)
            try:
                s.sendto(packet, ("127.0.0.1", d.port))
            except BlockingIOError:
                time.sleep(0.001)
            if i % 200 == 0:
                time.sleep(0.005)  # let the server drain its socket buffer
                while True:
                    try:
                        s.recv(65535)
                    except BlockingIOError:
                        break
    # mutated and random TCP streams too
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", d.port), timeout=2) as t:
            body = bytearray(rng.choice(seeds))
            body[rng.randrange(len(body))] = rng.randrange(256)
            junk = rng.randbytes(rng.randrange(1, 300))
            t.sendall(struct.pack("!H", len(body)) + bytes(body) + junk)
    assert d.proc.poll() is None, d.stderr
    for tcp in (False, True):
        r = d.query("after.fuzz.example.", "A", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR
    # no unbounded growth: a few MB of slack for allocator noise
    assert rss_kb(d.proc.pid) - baseline < 20_000


def test_tcp_pipelined_queries_on_one_connection(dnsfw):
    d = dnsfw(WHOAMI)
    with socket.create_connection(("127.0.0.1", d.port), timeout=3) as s:
        ids = []
        payload = b""
        for i in range(20):
            q = dns.message.make_query(f"q{i}.example.", "A")
            ids.append(q.id)
            w = q.to_wire()
            payload += struct.pack("!H", len(w)) + w
        s.sendall(payload)
        got = []
        for _ in range(20):
            got.append(dns.query.receive_tcp(s, expiration=time.time() + 3)[0].id)
    assert sorted(got) == sorted(ids)


def test_tcp_idle_timeout_closes_connection(dnsfw):
    d = dnsfw(
        """
.:$PORT {
    bind 127.0.0.1
    timeouts {
        idle 1s
    }
    whoami
}
"""
    )
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        q = dns.message.make_query("idle.example.", "A").to_wire()
        s.sendall(struct.pack("!H", len(q)) + q)
        dns.query.receive_tcp(s, expiration=time.time() + 3)
        start = time.monotonic()
        assert s.recv(1) == b""  # closed by the server
        assert time.monotonic() - start < 4


def test_tcp_connection_cap(dnsfw):
    d = dnsfw(WHOAMI, extra_args=("-tcp-max-conns", "2"))
    keep = [socket.create_connection(("127.0.0.1", d.port), timeout=3) for _ in range(2)]
    time.sleep(0.2)
    try:
        with socket.create_connection(("127.0.0.1", d.port), timeout=3) as third:
            q = dns.message.make_query("cap.example.", "A").to_wire()
            try:
                third.sendall(struct.pack("!H", len(q)) + q)
                assert third.recv(2) == b""
            except ConnectionResetError:
                pass  # aborted: just as refused
        # the two allowed ones still work
        q = dns.message.make_query("ok.example.", "A")
        dns.query.send_tcp(keep[0], q)
        assert dns.query.receive_tcp(keep[0], expiration=time.time() + 3)[0].id == q.id
    finally:
        for s in keep:
            s.close()


def test_sigterm_stops_cleanly(dnsfw):
    d = dnsfw(WHOAMI)
    d.query("x.example.")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0
    assert "stopped" in d.stderr


def test_plugins_flag_and_version(tmp_path):
    out = [line.split()[0] for line in run_cli("-plugins").stdout.splitlines()]
    # the firewall runs right after the last stage dnsfw runs of those CoreDNS puts up to `acl`
    before = plugins.ORDER[: plugins.ORDER.index("firewall")]
    last = max(out.index(f"dns.{name}") for name in before if name in plugins.IMPLEMENTED)
    assert out.index("dns.firewall") == last + 1
    assert out.index("dns.log") < out.index("dns.firewall")
    assert out.index("dns.firewall") + 1 == out.index("dns.cache")
    assert "dns.admin" in out
    assert run_cli("--version").stdout.startswith("dnsfw-")


@pytest.mark.parametrize(
    ("corefile", "message"),
    [
        (
            ".:53 {\n    fwd . 1.1.1.1\n}\n",
            "Corefile:2 - Error during parsing: Unknown directive 'fwd'",
        ),
        (
            ".:53 {\n    kubernetes cluster.local\n}\n",
            "plugin/kubernetes: Corefile:2 - Error during parsing: not supported by dnsfw",
        ),
        (
            ".:53 {\n    whoami\n}\n.:53 {\n    whoami\n}\n",
            "Corefile:4 - Error during parsing: cannot serve dns://.:53 - it is already defined",
        ),
        (
            "grpc://.:443 {\n    whoami\n}\n",
            "Corefile:1 - Error during parsing: grpc:// servers are not supported by dnsfw yet",
        ),
        (
            ".:53 {\n    whoami extra\n}\n",
            "plugin/whoami: Corefile:2 - Error during parsing: Wrong argument count or unexpected "
            "line ending after 'whoami'",
        ),
        (
            ".:53 {\n    errors\n    errors\n}\n",
            "plugin/errors: Corefile:3 - Error during parsing: this plugin can only be used once "
            "per Server Block",
        ),
        (
            ".:53 {\n    bind 127.0.0.1 nosuchif0\n}\n",
            "plugin/bind: Corefile:2 - Error during parsing: not a valid IP address or interface "
            "name: 'nosuchif0'",
        ),
        (
            ".:53 {\n    timeouts {\n        idle 0s\n    }\n}\n",
            "plugin/timeouts: Corefile:3 - Error during parsing: timeout 0s out of range",
        ),
        (
            '.:53 {\n    errors {\n        consolidate 5m "("\n    }\n}\n',
            "plugin/errors: Corefile:3 - Error during parsing: invalid regex",
        ),
    ],
)
def test_check_reports_file_line_and_exits_1(tmp_path, corefile, message):
    conf = tmp_path / "Corefile"
    conf.write_text(corefile)
    result = run_cli("check", "-conf", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert message.replace("Corefile:", f"{conf}:") in result.stderr


def test_check_accepts_good_corefile(tmp_path):
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(WHOAMI, PORT=1053))
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_dns_port_flag_sets_default_port(tmp_path):
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(". {\n    bind 127.0.0.1\n    whoami\n}\n")
    result = run_cli("check", "-conf", str(conf), "-dns.port", str(port))
    assert f"dns://127.0.0.1:{port}" in result.stdout


def forwarding(dnsfw, upstream, **kw):
    return dnsfw(corefile(FORWARD, UPSTREAM=upstream.address), **kw)


def test_udp_truncation_follows_client_size(dnsfw, upstream):
    d = forwarding(dnsfw, upstream)
    # no EDNS: 512 bytes at most, so the 40-TXT answer comes back empty with TC
    q = dns.message.make_query("big.example.com.", "TXT", use_edns=False)
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3, ignore_trailing=True)
    assert r.flags & dns.flags.TC and not r.answer
    assert r.edns == -1
    # EDNS with a 4096-byte buffer: the whole answer over UDP
    q = dns.message.make_query("big.example.com.", "TXT", use_edns=0, payload=4096)
    r = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3)
    assert not r.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in r.answer) == 40
    # over TCP: always whole
    r = d.query("big.example.com.", "TXT", tcp=True, use_edns=False)
    assert sum(len(rrset) for rrset in r.answer) == 40


def test_suspended_queries_are_bounded(dnsfw, upstream):
    d = forwarding(dnsfw, upstream, extra_args=("-max-inflight", "3"))
    upstream.faults.delay = 1.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        for i in range(8):
            q = dns.message.make_query(f"slow{i}.example.com.", "A")
            s.sendto(q.to_wire(), ("127.0.0.1", d.port))
        rcodes = []
        for _ in range(8):
            rcodes.append(dns.message.from_wire(s.recv(4096)).rcode())
    assert rcodes.count(dns.rcode.REFUSED) == 5
    assert len([r for r in rcodes if r != dns.rcode.REFUSED]) == 3


def test_sigterm_lets_inflight_queries_finish(dnsfw, upstream):
    d = forwarding(dnsfw, upstream)
    upstream.faults.delay = 1.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        q = dns.message.make_query("www.example.com.", "A")
        s.sendto(q.to_wire(), ("127.0.0.1", d.port))
        time.sleep(0.3)  # the query is now waiting on the upstream
        d.signal(signal.SIGTERM)
        reply = dns.message.from_wire(s.recv(4096))
    assert reply.id == q.id and reply.rcode() == dns.rcode.NOERROR
    assert d.proc.wait(10) == 0
    # and new queries are no longer taken
    with pytest.raises(dns.exception.Timeout):
        d.query("after.example.com.", timeout=0.5)


def test_example_corefile_is_valid():
    result = run_cli("check", "-conf", str(ROOT / "Corefile.example"))
    assert result.returncode == 0, result.stderr
    assert "dns://127.0.0.1:1053" in result.stdout
