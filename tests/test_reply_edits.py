"""``header``, ``minimal``, ``bufsize`` and ``nsid`` (CoreDNS's), over real sockets against a real
upstream: flags set and cleared on queries and replies, minimal replies, the payload size
cap and the truncation it brings, the NSID option; replayed cache hits edited the same way;
CoreDNS's setup errors; the documented examples load."""

from __future__ import annotations

import socket

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

import plugins
import plugins.bufsize
import plugins.header
import plugins.minimal
import plugins.nsid
from proxy.config import AppContext, build
from proxy.corefile import parse
from tests.kit import checks
from tests.kit.checks import docstring_examples

ZONES = """
$ORIGIN example.org.
@ SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
@ NS ns.example.org.
ns A 192.0.2.53
a A 192.0.2.1
big TXT "{0}" "{0}" "{0}" "{0}" "{0}" "{0}"
""".replace("{0}", "x" * 250)


def ask(port: int, name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def load(text: str):
    return build(parse(text, filename="Corefile", directives=plugins.ORDER), AppContext("Corefile"))


def setup_error(body: str) -> str:
    error = checks.setup_error(f".:53 {{\n    {body}\n    whoami\n}}\n")
    assert error is not None, "the Corefile was accepted"
    return error


@pytest.fixture
def served(dnsfw, upstream):
    upstream.set_zones(ZONES)
    return lambda lines: dnsfw(
        f".:$PORT {{\n{lines}\n    cache\n    forward . {upstream.address}\n}}\n"
    )


# --- header ---------------------------------------------------------------------------------


def test_header_response_flags_also_on_replays(served) -> None:
    d = served("    header {\n        response set aa\n        response clear rd ra\n    }")
    first = ask(d.port, "a.example.org.")
    assert first.answer and first.flags & dns.flags.AA
    assert not first.flags & (dns.flags.RD | dns.flags.RA)
    for _ in range(2):  # cached, replayed: `header` sits behind `cache`, as in CoreDNS, so the
        # cache keeps the edited AA and RA and echoes the query's RD (CoreDNS's toMsg)
        reply = ask(d.port, "a.example.org.")
        assert reply.answer and reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA


def test_header_query_flags_reach_upstream(served, upstream) -> None:
    d = served("    header {\n        query clear rd\n    }")
    query = dns.message.make_query("a.example.org.", "A")
    assert query.flags & dns.flags.RD
    reply = dns.query.udp(query, "127.0.0.1", port=d.port, timeout=2)
    assert not reply.flags & dns.flags.RD  # the upstream echoes the RD it was sent
    assert reply.answer


def test_header_last_rule_wins() -> None:
    header = load(".:53 {\n header {\n response set ra\n response clear ra\n }\n whoami\n}\n")
    plugin = header.blocks[0].plugins[0]
    assert (plugin.response.set, plugin.response.clear) == (0, 0x0080)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "header {\n foo set ra\n }",
            "setting up rule: invalid selector=foo should be query or response",
        ),
        ("header {\n response\n }", "setting up rule: no flag action provided"),
        (
            "header {\n response set\n }",
            "setting up rule: invalid length for flags, at least one should be provided",
        ),
        (
            "header {\n response toggle ra\n }",
            "setting up rule: unknown flag action=toggle, should be set or clear",
        ),
        ("header {\n response set cd\n }", "setting up rule: unknown/unsupported flag=cd"),
        ("header", "Wrong argument count or unexpected line ending after 'header'"),
    ],
)
def test_header_setup_errors(body: str, message: str) -> None:
    assert message in setup_error(body)


# --- minimal --------------------------------------------------------------------------------


def test_minimal_strips_authority_and_additional_of_answers_only(served, upstream) -> None:
    zones = ZONES + "$ORIGIN sub.example.org.\n@ SOA ns. a. 1 2 3 4 5\nx A 192.0.2.9\n"
    upstream.set_zones(zones)
    full = dns.message.make_query("a.example.org.", "A", use_edns=0)
    d = served("    minimal")
    for _ in range(3):  # forwarded, cached, replayed
        reply = dns.query.udp(full, "127.0.0.1", port=d.port, timeout=2)
        assert reply.answer and not reply.authority
        assert reply.edns == 0 and not reply.additional
    nxdomain = ask(d.port, "nope.example.org.")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN and nxdomain.authority  # denial: unchanged
    nodata = ask(d.port, "a.example.org.", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.authority


def test_minimal_takes_no_argument() -> None:
    assert "Wrong argument count" in setup_error("minimal yes")


# --- bufsize --------------------------------------------------------------------------------


def test_bufsize_caps_the_size_and_truncates_to_it(served) -> None:
    d = served("    bufsize 1232")
    query = dns.message.make_query("big.example.org.", "TXT", use_edns=0, payload=4096)
    for _ in range(3):
        reply = dns.query.udp(query, "127.0.0.1", port=d.port, timeout=2)
        assert reply.flags & dns.flags.TC and not reply.answer
    tcp = dns.query.tcp(query, "127.0.0.1", port=d.port, timeout=2)
    assert tcp.answer and not tcp.flags & dns.flags.TC


def test_bufsize_leaves_smaller_sizes(served) -> None:
    d = served("    bufsize 4096")
    query = dns.message.make_query("big.example.org.", "TXT", use_edns=0, payload=4096)
    reply = dns.query.udp(query, "127.0.0.1", port=d.port, timeout=2)
    assert reply.answer and not reply.flags & dns.flags.TC


@pytest.mark.parametrize("args", ["511", "4097", "abc", "1232 1232"])
def test_bufsize_setup_errors(args: str) -> None:
    message = "Wrong argument count or unexpected line ending after 'bufsize'"
    assert (
        setup_error(f"bufsize {args}")
        == f"plugin/bufsize: Corefile:2 - Error during parsing: {message}"
    )


def test_bufsize_default() -> None:
    assert load(".:53 {\n bufsize\n whoami\n}\n").blocks[0].plugins[0].size == 1232


# --- nsid -----------------------------------------------------------------------------------


def nsid_of(reply: dns.message.Message) -> bytes | None:
    found = [o for o in reply.options if o.otype == dns.edns.NSID]
    return found[0].to_wire() if found else None


def test_nsid_answers_when_asked(served) -> None:
    d = served("    nsid Use The Force")
    asking = [dns.edns.GenericOption(dns.edns.NSID, b"")]
    for _ in range(2):
        reply = ask(d.port, "a.example.org.", use_edns=0, options=asking)
        assert reply.answer and nsid_of(reply) == b"Use The Force"
    assert nsid_of(ask(d.port, "a.example.org.", use_edns=0)) is None


def test_nsid_defaults_to_the_host_name(served) -> None:
    d = served("    nsid")
    asking = [dns.edns.GenericOption(dns.edns.NSID, b"")]
    reply = ask(d.port, "a.example.org.", use_edns=0, options=asking)
    assert nsid_of(reply) == socket.gethostname().encode()


def test_nsid_once_per_block() -> None:
    assert "can only be used once per Server Block" in setup_error("nsid a\n    nsid b")


# --- the documented examples ------------------------------------------------------------------


EXAMPLES = [
    example
    for module in (plugins.header, plugins.minimal, plugins.bufsize, plugins.nsid)
    for example in docstring_examples(module)
]


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_examples_load(example: str) -> None:
    text = (
        example
        if "whoami" in example or "forward" in example
        else example.replace("{\n", "{\n    whoami\n", 1)
    )
    assert load(text).blocks
