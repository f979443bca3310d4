"""The cache end to end: ``dnsfw run`` with cache + forward against the upstream fixture, over
real UDP and TCP sockets on 127.0.0.1. ``upstream.seen`` proves which queries reached it."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.kit.corefiles import corefile
from tests.kit.upstream import Upstream

# CACHE (the cache directive) before a forward to the upstream
CACHE_FORWARD = """\
.:$PORT {
    $CACHE
    forward . $UPSTREAM
}
"""

# the same with forward OPTIONS
CACHE_FORWARD_WITH = """\
.:$PORT {
    $CACHE
    forward . $UPSTREAM {
        $OPTIONS
    }
}
"""


def cached(upstream: Upstream, cache: str = "cache", forward: str = "") -> str:
    if forward:
        return corefile(CACHE_FORWARD_WITH, CACHE=cache, UPSTREAM=upstream.address, OPTIONS=forward)
    return corefile(CACHE_FORWARD, CACHE=cache, UPSTREAM=upstream.address)


def asked(upstream: Upstream, name: str, qtype: str = "A") -> int:
    """How many queries for ``name`` (any case) and ``qtype`` reached the upstream."""
    name = name.lower().rstrip(".") + "."
    return sum(1 for s in upstream.seen if s.name == name and s.qtype == qtype)


def ttls(reply: dns.message.Message) -> list[int]:
    return [r.ttl for section in (reply.answer, reply.authority, reply.additional) for r in section]


def test_hit_ages_ttl_and_never_reaches_upstream(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream, "cache {\n    success 9984 3600 1\n}"))
    first = server.query("short-ttl.example.com")
    assert ttls(first) == [2] and asked(upstream, "short-ttl.example.com") == 1
    time.sleep(1.05)
    second = server.query("short-ttl.example.com")
    assert ttls(second) == [1]
    assert [str(r) for r in second.answer[0]] == ["192.0.2.2"]
    assert asked(upstream, "short-ttl.example.com") == 1
    over_tcp = server.query("short-ttl.example.com", tcp=True)
    assert ttls(over_tcp) == [1] and over_tcp.answer == second.answer
    assert asked(upstream, "short-ttl.example.com") == 1


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        # short-ttl has TTL 2, long-ttl 86400, example.com 300
        ("cache", {"short-ttl.example.com": 5, "long-ttl.example.com": 3600}),
        ("cache 30", {"long-ttl.example.com": 30, "example.com": 30}),
        (
            "cache {\n    success 9984 100 10\n}",
            {"short-ttl.example.com": 10, "example.com": 100},
        ),
    ],
)
def test_ttl_is_clamped(upstream, dnsfw, cache: str, expected: dict[str, int]) -> None:
    server = dnsfw(cached(upstream, cache))
    for name, ttl in expected.items():
        assert ttls(server.query(name)) == [ttl]
        assert ttls(server.query(name)) == [ttl]  # a hit within the same second
        assert asked(upstream, name) == 1


@pytest.mark.parametrize(("cache", "ttl"), [("cache", 60), ("cache {\n    denial 9984 30\n}", 30)])
def test_negative_answers_are_cached_from_the_soa(upstream, dnsfw, cache: str, ttl: int) -> None:
    server = dnsfw(cached(upstream, cache))
    for name, qtype, rcode in (
        ("nope.example.com", "A", dns.rcode.NXDOMAIN),
        ("example.com", "SRV", dns.rcode.NOERROR),  # NODATA
        ("dangling.example.com", "A", dns.rcode.NXDOMAIN),  # CNAME to a missing name
    ):
        first = server.query(name, qtype)
        again = server.query(name, qtype)
        assert first.rcode() == again.rcode() == rcode
        assert not [rr for rr in again.answer if rr.rdtype != dns.rdatatype.CNAME]
        assert again.authority[0].rdtype == dns.rdatatype.SOA
        assert ttls(first)[-1] == ttls(again)[-1] == ttl
        assert asked(upstream, name, qtype) == 1


def test_do_and_cd_bits_are_separate_entries(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream))
    for _ in range(2):
        server.query("example.com")
        with_do = server.query("example.com", want_dnssec=True)
        checking_disabled = server.query("example.com", flags=dns.flags.RD | dns.flags.CD)
    assert asked(upstream, "example.com") == 3
    assert with_do.ednsflags & dns.flags.DO
    assert checking_disabled.flags & dns.flags.CD


def test_hit_keeps_the_client_case(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream))
    server.query("www.example.com")
    reply = server.query("wWw.ExAmple.COM")
    assert reply.question[0].name.to_text() == "wWw.ExAmple.COM."
    assert reply.answer[0].name.to_text() == "wWw.ExAmple.COM."  # points at the question
    assert asked(upstream, "www.example.com") == 1


def test_edns_and_plain_clients_share_one_entry(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream))
    assert server.query("mail.example.com", use_edns=0).edns == 0
    plain = server.query("mail.example.com")
    assert plain.edns == -1
    again = server.query("mail.example.com", use_edns=0, payload=4096)
    assert again.edns == 0 and again.payload == 1232 and not again.ednsflags & dns.flags.DO
    assert asked(upstream, "mail.example.com") == 1


def test_tcp_client_hits_what_udp_stored_and_vice_versa(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream))
    medium = server.query("medium.example.com", "TXT", tcp=True)
    assert len(medium.answer[0]) == 12
    again = server.query("medium.example.com", "TXT", tcp=True)
    assert again.answer == medium.answer
    server.query("rr.example.com")
    assert len(server.query("rr.example.com", tcp=True).answer[0]) == 3
    assert asked(upstream, "medium.example.com", "TXT") == 1
    assert asked(upstream, "rr.example.com") == 1


def test_servfail_is_cached(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream))
    upstream.faults.only_names = frozenset({"mail.example.com."})
    upstream.faults.servfail = True
    assert server.query("mail.example.com").rcode() == dns.rcode.SERVFAIL
    upstream.faults.servfail = False
    assert server.query("mail.example.com").rcode() == dns.rcode.SERVFAIL  # cached 5 s
    assert asked(upstream, "mail.example.com") == 1


def test_servfail_zero_is_not_cached(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream, "cache {\n    servfail 0\n}"))
    upstream.faults.only_names = frozenset({"mail.example.com."})
    upstream.faults.servfail = True
    assert server.query("mail.example.com").rcode() == dns.rcode.SERVFAIL
    upstream.faults.servfail = False
    assert server.query("mail.example.com").rcode() == dns.rcode.NOERROR
    assert asked(upstream, "mail.example.com") == 2


def test_prefetch_refreshes_while_clients_keep_hitting(upstream, dnsfw) -> None:
    cache = "cache {\n    success 9984 3 1\n    prefetch 2 1m 50%\n}"
    server = dnsfw(cached(upstream, cache))
    assert ttls(server.query("long-ttl.example.com")) == [3]
    time.sleep(1.05)  # 2 s left: within 50 %
    assert ttls(server.query("long-ttl.example.com")) == [2]  # first hit
    assert asked(upstream, "long-ttl.example.com") == 1
    assert ttls(server.query("long-ttl.example.com")) == [2]  # second: fetch in the background
    deadline = time.monotonic() + 2
    while asked(upstream, "long-ttl.example.com") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert asked(upstream, "long-ttl.example.com") == 2
    time.sleep(0.1)
    assert ttls(server.query("long-ttl.example.com")) == [3]  # the refreshed entry
    assert asked(upstream, "long-ttl.example.com") == 2


def test_serve_stale_while_upstream_is_down(upstream, dnsfw) -> None:
    cache = "cache {\n    success 9984 1 1\n    serve_stale 1m\n}"
    server = dnsfw(cached(upstream, cache, "read_timeout 500ms"))
    assert ttls(server.query("long-ttl.example.com")) == [1]
    upstream.faults.only_names = frozenset({"long-ttl.example.com."})
    upstream.faults.drop = True
    time.sleep(1.05)
    started = time.monotonic()
    stale = server.query("long-ttl.example.com")
    assert time.monotonic() - started < 0.4  # answered at once, not after the upstream timeout
    assert ttls(stale) == [0] and [str(r) for r in stale.answer[0]] == ["192.0.2.3"]
    time.sleep(0.6)  # the background refresh timed out
    assert asked(upstream, "long-ttl.example.com") == 2
    upstream.faults.drop = False
    assert ttls(server.query("long-ttl.example.com")) == [0]  # still stale, refreshing now
    deadline = time.monotonic() + 2
    reply = server.query("long-ttl.example.com")
    while ttls(reply) == [0] and time.monotonic() < deadline:
        time.sleep(0.05)
        reply = server.query("long-ttl.example.com")
    assert ttls(reply) == [1]
    assert asked(upstream, "long-ttl.example.com") == 3


def test_serve_stale_verify_tries_upstream_first(upstream, dnsfw) -> None:
    cache = "cache {\n    success 9984 1 1\n    serve_stale 1m verify\n}"
    server = dnsfw(cached(upstream, cache, "read_timeout 300ms"))
    server.query("long-ttl.example.com")
    upstream.faults.only_names = frozenset({"long-ttl.example.com."})
    upstream.faults.drop = True
    time.sleep(1.05)
    started = time.monotonic()
    stale = server.query("long-ttl.example.com")
    assert time.monotonic() - started >= 0.3  # waited for the upstream first
    assert ttls(stale) == [0] and asked(upstream, "long-ttl.example.com") == 2
    upstream.faults.drop = False
    assert ttls(server.query("long-ttl.example.com")) == [1]
    assert asked(upstream, "long-ttl.example.com") == 3


def test_queries_outside_the_cache_zones_are_not_cached(upstream, dnsfw) -> None:
    server = dnsfw(cached(upstream, "cache example.com"))
    for _ in range(2):
        server.query("www.example.com")
        server.query("gmail.com")
    assert asked(upstream, "www.example.com") == 1
    assert asked(upstream, "gmail.com") == 2
