"""`any`, `local` and `chaos`: queries answered by dnsfw itself, as CoreDNS 1.14 answers them,
through real sockets; their setup errors; their answers replayed and counted like any other."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.kit.checks import setup_error
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample

LOCAL = """\
.:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS
    any
    local
    forward . $UPSTREAM
}
"""


def rrs(reply: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(rrset.to_text() for rrset in getattr(reply, section))


def test_any_answers_hinfo_rfc8482(dnsfw, upstream):
    d = dnsfw(LOCAL.replace("$METRICS", str(free_port())).replace("$UPSTREAM", upstream.address))
    reply = d.query("Example.ORG.", "ANY")
    assert reply.rcode() == dns.rcode.NOERROR
    assert rrs(reply) == ['Example.ORG. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"']
    assert not reply.flags & (dns.flags.AA | dns.flags.RA)
    assert not [q for q in upstream.seen if q.qtype == "ANY"]
    # another type goes on to forward
    assert d.query("www.example.com.", "A").answer


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "answer", "authority"),
    [
        ("localhost.", "A", "NOERROR", ["localhost. 604800 IN A 127.0.0.1"], []),
        ("localhost.", "AAAA", "NOERROR", ["localhost. 604800 IN AAAA ::1"], []),
        ("localhost.", "NS", "NOERROR", ["localhost. 604800 IN NS localhost."], []),
        (
            "localhost.",
            "SOA",
            "NOERROR",
            ["localhost. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
            [],
        ),
        (
            "localhost.",
            "MX",
            "NOERROR",
            [],
            ["localhost. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
        ("app.localhost.", "A", "NOERROR", ["app.localhost. 604800 IN A 127.0.0.1"], []),
        ("a.b.localhost.", "AAAA", "NOERROR", ["a.b.localhost. 604800 IN AAAA ::1"], []),
        (
            "app.localhost.",
            "TXT",
            "NOERROR",
            [],
            ["app.localhost. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
        (
            "localhost.example.org.",
            "A",
            "NOERROR",
            ["localhost.example.org. 604800 IN A 127.0.0.1"],
            [],
        ),
        (
            "1.0.0.127.in-addr.arpa.",
            "PTR",
            "NOERROR",
            ["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."],
            [],
        ),
        (
            "1.0.0.127.in-addr.arpa.",
            "A",
            "NOERROR",
            [],
            ["127.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
        (
            "2.0.0.127.In-Addr.Arpa.",
            "PTR",
            "NXDOMAIN",
            [],
            ["127.In-Addr.Arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
        ("127.in-addr.arpa.", "NS", "NOERROR", ["127.in-addr.arpa. 604800 IN NS localhost."], []),
        (
            "0.in-addr.arpa.",
            "A",
            "NOERROR",
            [],
            ["0.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
        (
            "1.255.in-addr.arpa.",
            "PTR",
            "NXDOMAIN",
            [],
            ["255.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
        ),
    ],
)
def test_local_names_are_answered_locally(dnsfw, upstream, name, rdtype, rcode, answer, authority):
    d = dnsfw(LOCAL.replace("$METRICS", str(free_port())).replace("$UPSTREAM", upstream.address))
    reply = d.query(name, rdtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert rrs(reply) == answer
    assert rrs(reply, "authority") == authority
    assert not reply.flags & (dns.flags.AA | dns.flags.RA)
    assert not [q for q in upstream.seen if "localhost" in q.name]


def test_local_counts_localhost_subdomains_also_on_replays(dnsfw, upstream):
    metrics = free_port()
    d = dnsfw(LOCAL.replace("$METRICS", str(metrics)).replace("$UPSTREAM", upstream.address))
    for _ in range(3):  # the same bytes: the second and third are replays
        q = dns.message.make_query("app.localhost.", "A")
        q.id = 1234
        assert dns.query.udp(q, "127.0.0.1", port=d.port, timeout=2).answer
    d.query("localhost.", "A")  # the apex is not counted
    _, _, text = get(metrics, "/metrics")
    assert sample(text, "coredns_local_localhost_requests_total") == 3
    # counted as answers like any other, replays included (4 NOERROR, plus the ready probe)
    assert sample(text, "coredns_dns_responses_total", rcode="NOERROR") >= 4


def test_local_prefix_off_forwards_legacy_names(dnsfw, upstream):
    text = LOCAL.replace("    local\n", "    local {\n        localhost_prefix off\n    }\n")
    d = dnsfw(text.replace("$METRICS", str(free_port())).replace("$UPSTREAM", upstream.address))
    reply = d.query("localhost.example.com.", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN  # from the upstream's example.com zone
    assert [q for q in upstream.seen if q.name == "localhost.example.com."]
    assert rrs(d.query("x.localhost.", "A")) == ["x.localhost. 604800 IN A 127.0.0.1"]


CHAOS = """\
.:$PORT {
    bind 127.0.0.1
    chaos CoreDNS-001 info@coredns.io bob alice bob
    whoami
}
"""


def chaos_query(d, name: str, rdtype: str = "TXT") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, rdclass="CH")
    return dns.query.udp(q, "127.0.0.1", port=d.port, timeout=2)


def test_chaos_answers_version_authors_hostname(dnsfw):
    d = dnsfw(CHAOS)
    for name in ("version.bind.", "VERSION.server."):
        assert rrs(chaos_query(d, name)) == [f'{name} 0 CH TXT "CoreDNS-001"']
    authors = chaos_query(d, "authors.bind.")
    assert sorted(rd.to_text() for rd in authors.answer[0]) == [
        '"alice"',
        '"bob"',
        '"info@coredns.io"',
    ]
    for name in ("hostname.bind.", "id.server."):
        assert rrs(chaos_query(d, name)) == [f'{name} 0 CH TXT "{socket.gethostname()}"']
    # CH but another name or type goes on (here to whoami); IN TXT is not chaos's
    assert not chaos_query(d, "version.bind.", "A").answer
    assert d.query("version.bind.", "TXT").answer == []


def test_chaos_defaults_and_other_classes_without_it(dnsfw):
    d = dnsfw(CHAOS.replace("chaos CoreDNS-001 info@coredns.io bob alice bob", "chaos"))
    assert rrs(chaos_query(d, "version.bind.")) == ['version.bind. 0 CH TXT "dnsfw-0.1.0"']
    assert rrs(chaos_query(d, "authors.bind.")) == ['authors.bind. 0 CH TXT "dnsfw"']
    one = dnsfw(CHAOS.replace("chaos CoreDNS-001 info@coredns.io bob alice bob", "chaos v9"))
    assert rrs(chaos_query(one, "version.bind.")) == ['version.bind. 0 CH TXT "v9"']
    assert rrs(chaos_query(one, "authors.bind.")) == ['authors.bind. 0 CH TXT "dnsfw"']
    # a block without chaos still refuses CH queries before any plugin
    plain = dnsfw(CHAOS.replace("    chaos CoreDNS-001 info@coredns.io bob alice bob\n", ""))
    assert chaos_query(plain, "version.bind.").rcode() == dns.rcode.REFUSED


def test_chaos_readme_example_with_zone_keys(dnsfw):
    d = dnsfw(
        "version.bind:$PORT version.server:$PORT authors.bind:$PORT hostname.bind:$PORT "
        "id.server:$PORT {\n    bind 127.0.0.1\n    chaos CoreDNS-001 info@coredns.io\n}\n"
    )
    assert rrs(chaos_query(d, "version.bind.")) == ['version.bind. 0 CH TXT "CoreDNS-001"']


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "any x",
            "plugin/any: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'any'",
        ),
        (
            "any {\n        x\n    }",
            "plugin/any: Corefile:3 - Error during parsing: unknown property 'x'",
        ),
        (
            "local x",
            "plugin/local: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'local'",
        ),
        (
            "local {\n        localhost_prefix maybe\n    }",
            "plugin/local: Corefile:3 - Error during parsing: localhost_prefix expects 'on' or 'off', got \"maybe\"",
        ),
        (
            "local {\n        localhost_prefix\n    }",
            "plugin/local: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'localhost_prefix'",
        ),
        (
            "local {\n        prefix on\n    }",
            "plugin/local: Corefile:3 - Error during parsing: unknown property 'prefix'",
        ),
        (
            "chaos v1 {\n        x\n    }",
            "plugin/chaos: Corefile:3 - Error during parsing: unknown property 'x'",
        ),
    ],
)
def test_bad_syntax_errors(line: str, error: str):
    assert setup_error(f".:1053 {{\n    {line}\n    whoami\n}}\n") == error
