"""The ``rewrite`` plugin (CoreDNS's) over real sockets against a real upstream: name rules
(exact, prefix, suffix, substring, regex) with the reply mapped back (auto, answer name,
answer value), the client's question restored, type and ttl rules, EDNS0 options, several
rules, replayed cache hits rewritten the same way, and CoreDNS's setup errors."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import plugins
import plugins.rewrite
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse
from tests.kit.checks import docstring_examples
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample

ZONES = """
$ORIGIN example.org.
@ SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
blue A 192.0.2.1
blue HINFO "cpu" "os"
ftp.service.us-west-1 A 192.0.2.2
www.blue CNAME blue.example.org.
mail MX 10 blue.example.org.
"""


def ask(port: int, name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=2)


def load(text: str):
    return build(parse(text, filename="Corefile", directives=plugins.ORDER), AppContext("Corefile"))


@pytest.fixture
def served(dnsfw, upstream):
    upstream.set_zones(ZONES)
    return lambda lines: dnsfw(
        f".:$PORT {{\n{lines}\n    cache\n    forward . {upstream.address}\n}}\n"
    )


def names(reply: dns.message.Message) -> list[str]:
    return [rrset.name.to_text() for rrset in reply.answer]


def test_exact_name_maps_the_answer_back_also_on_replays(served) -> None:
    d = served("    rewrite name exact red.example.org blue.example.org")
    for _ in range(3):  # forwarded, cached, replayed
        reply = ask(d.port, "red.example.org.")
        assert reply.question[0].name.to_text() == "red.example.org."
        assert names(reply) == ["red.example.org."]
        assert reply.answer[0][0].address == "192.0.2.1"
    www = ask(d.port, "www.red.example.org.")  # not the exact name: not rewritten
    assert www.rcode() == dns.rcode.NXDOMAIN


def test_regex_with_answer_name(served) -> None:
    d = served(
        "    rewrite stop {\n"
        "        name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.example.org\n"
        "        answer name (.*)\\.service\\.(us-west-1)\\.example\\.org {1}-{2}.example.org\n"
        "    }"
    )
    reply = ask(d.port, "ftp-us-west-1.example.org.")
    assert reply.question[0].name.to_text() == "ftp-us-west-1.example.org."
    assert names(reply) == ["ftp-us-west-1.example.org."]


def test_regex_without_answer_rule_keeps_upstream_names(served) -> None:
    d = served(
        "    rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.example.org"
    )
    reply = ask(d.port, "ftp-us-west-1.example.org.")
    assert reply.question[0].name.to_text() == "ftp-us-west-1.example.org."  # stop: restored
    assert names(reply) == ["ftp.service.us-west-1.example.org."]


def test_suffix_answer_auto_and_value(served) -> None:
    d = served("    rewrite name suffix .example.net. .example.org. answer auto")
    reply = ask(d.port, "www.blue.example.net.")
    assert names(reply) == ["www.blue.example.net.", "blue.example.net."]
    assert reply.answer[0][0].target.to_text() == "blue.example.net."
    mx = ask(d.port, "mail.example.net.", "MX")
    assert mx.answer[0][0].exchange.to_text() == "blue.example.net."


def test_prefix_and_substring(served) -> None:
    d = served(
        "    rewrite name prefix red blue\n    rewrite name substring ftp.service ftp.service"
    )
    reply = ask(d.port, "red.example.org.")
    assert reply.answer and reply.question[0].name.to_text() == "red.example.org."


def test_type_rule(served) -> None:
    d = served("    rewrite type ANY HINFO")
    reply = ask(d.port, "blue.example.org.", "ANY")
    assert reply.question[0].rdtype == dns.rdatatype.ANY
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.HINFO]


@pytest.mark.parametrize(
    ("ttl", "expect"), [("15", 15), ("400-500", 400), ("-30", 30), ("10-", 300)]
)
def test_ttl_rule(served, ttl: str, expect: int) -> None:
    d = served(f"    rewrite ttl blue.example.org {ttl}")
    assert ask(d.port, "blue.example.org.").answer[0].ttl == expect


def test_edns0_local_reaches_upstream_and_reverts(served, upstream) -> None:
    d = served("    rewrite edns0 local set 0xffee abcd revert")
    reply = ask(d.port, "blue.example.org.", use_edns=0)
    assert reply.answer and not [o for o in reply.options if o.otype == 0xFFEE]
    assert ask(d.port, "blue.example.org.").answer  # a query without EDNS gets an OPT upstream


def test_continue_then_stop(served) -> None:
    d = served(
        "    rewrite continue name exact red.example.org green.example.org\n"
        "    rewrite name exact green.example.org blue.example.org"
    )
    reply = ask(d.port, "red.example.org.")
    assert reply.answer and reply.question[0].name.to_text() == "red.example.org."


TARGETS = """
$ORIGIN cdn.example.net.
@ SOA ns.example.net. admin.example.net. 1 3600 600 86400 300
my-app.com A 20.2.0.1
my-app.com A 20.2.0.2
$ORIGIN other.example.com.
@ SOA ns.example.com. admin.example.com. 1 3600 600 86400 300
my-app.com 100 A 30.3.1.2
"""


@pytest.fixture
def targets(dnsfw, upstream):
    upstream.set_zones(
        ZONES
        + "app CNAME my-app.com.cdn.example.net.\ntwice CNAME app.example.org.\n"
        + "plain A 192.0.2.5\n"
        + TARGETS
    )
    return lambda lines: dnsfw(
        f".:$PORT {{\n{lines}\n    cache\n    forward . {upstream.address}\n}}\n"
    )


def chain(reply: dns.message.Message) -> list[tuple[str, str]]:
    return [(rrset.name.to_text(), rd.to_text()) for rrset in reply.answer for rd in rrset]


@pytest.mark.parametrize(
    "rule",
    [
        "rewrite cname regex (.*)\\.cdn\\.example\\.net\\. {1}.other.example.com.",
        "rewrite cname exact my-app.com.cdn.example.net my-app.com.other.example.com",
        "rewrite cname suffix .cdn.example.net. .other.example.com.",
        "rewrite continue cname substring cdn.example.net other.example.com",
    ],
)
def test_cname_target_rewritten_and_resolved_again_also_on_replays(targets, rule) -> None:
    d = targets(f"    {rule}")
    for _ in range(3):  # forwarded, cached, replayed
        reply = ask(d.port, "twice.example.org.")
        assert reply.rcode() == dns.rcode.NOERROR
        assert chain(reply) == [
            ("twice.example.org.", "app.example.org."),
            ("app.example.org.", "my-app.com.other.example.com."),
            ("my-app.com.other.example.com.", "30.3.1.2"),
        ]
    assert chain(ask(d.port, "plain.example.org.")) == [("plain.example.org.", "192.0.2.5")]


@pytest.mark.parametrize(
    "rule",
    [
        "rewrite rcode missing.example.org NXDOMAIN REFUSED",
        "rewrite rcode exact missing.example.org 3 5",
        "rewrite continue {\n        rcode suffix .example.org NXDOMAIN REFUSED\n    }",
        "rewrite rcode regex ^miss.*\\.org\\.$ NXDOMAIN REFUSED",
    ],
)
def test_rcode_rewritten_also_on_replays(targets, rule) -> None:
    d = targets(f"    {rule}")
    for _ in range(3):
        reply = ask(d.port, "missing.example.org.")
        assert reply.rcode() == dns.rcode.REFUSED
        assert reply.question[0].name.to_text() == "missing.example.org."
    assert ask(d.port, "plain.example.org.").rcode() == dns.rcode.NOERROR  # no NXDOMAIN there
    other = ask(d.port, "gone.example.com.")  # a name the rule does not match
    assert other.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.REFUSED)


def test_rcode_rewrite_makes_the_reply_for_the_metrics(targets) -> None:
    http = free_port()
    d = targets(
        f"    prometheus 127.0.0.1:{http}\n    rewrite rcode missing.example.org NXDOMAIN NOERROR"
    )
    assert ask(d.port, "missing.example.org.").rcode() == dns.rcode.NOERROR
    text = get(http, "/metrics")[2]
    labels = {"server": f"dns://:{d.port}", "zone": ".", "rcode": "NOERROR"}
    assert sample(text, "coredns_dns_responses_total", **labels, plugin="rewrite") == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("rewrite foo a b", 'invalid rule type "foo"'),
        ("rewrite name a", "too few arguments for a name rule"),
        ("rewrite type A", "type rules must have exactly two arguments"),
        ("rewrite type A XX", 'invalid type "XX"'),
        ("rewrite class IN XX", 'invalid class "XX"'),
        ("rewrite ttl a.example. x", "invalid TTL 'x' for a ttl rule"),
        ("rewrite ttl a.example. 30-10", "invalid TTL '30-10' for a ttl rule"),
        ("rewrite edns0 local foo 0xffee abcd", 'invalid action: "foo"'),
        ("rewrite edns0 local set 0xffee", "EDNS0 local rules require three or four args"),
        ("rewrite edns0 nsid set x", "EDNS0 NSID rules can accept no more than one arg"),
        ("rewrite edns0 subnet set 33 56", "invalid IPv4 bit mask length 33"),
        ("rewrite edns0 local set 0xffee {foo}", 'unsupported variable name "{foo}"'),
        ("rewrite answer name a b", "response rewrites must begin with a name rule"),
        (
            "rewrite name regex (.*) {1}{2}",
            "the rewrite regex pattern ({1}{2}) uses more subexpressions",
        ),
        ("rewrite name regex ( x", "invalid regex matching pattern: ("),
        (
            "rewrite name substring a b answer auto answer name x y",
            "auto name answer rule cannot be combined",
        ),
        ("rewrite name exact a b answer foo", 'invalid type "foo" for answer rule for exact rule'),
        ("rewrite stop", "stop rule must begin with a rule type"),
        ("rewrite rcode a.example.org 2", "too few (2) arguments for a rcode rule"),
        ("rewrite rcode exact a.example.org 2 1 0", "invalid matching RCODE '' for a rcode rule"),
        ("rewrite rcode a.example.org random 0", "invalid matching RCODE 'random' for a rcode"),
        ("rewrite rcode a.example.org 24 0", "invalid matching RCODE '24' for a rcode rule"),
        ("rewrite rcode a.example.org 2 nothing", "invalid replacement RCODE 'nothing' for a"),
        (
            "rewrite rcode glob a.example.org 2 0",
            "rcode rule supports only exact, prefix, suffix, substring, and regex name matching",
        ),
        ("rewrite rcode regex ( 2 0", "invalid regex pattern in a rcode rule: ("),
        ("rewrite cname a.example.org", "too few (1) arguments for a cname rule"),
        ("rewrite cname exact a b c", "too few (4) arguments for a cname rule"),
        ("rewrite cname glob a b", "unknown cname rewrite type: glob"),
        ("rewrite cname regex ( b", "invalid cname rewrite regex pattern: error parsing regexp"),
    ],
)
def test_setup_errors(line: str, message: str) -> None:
    with pytest.raises(CorefileError) as info:
        load(f".:53 {{\n    {line}\n    whoami\n}}\n")
    assert str(info.value).startswith("plugin/rewrite: Corefile:2 - Error during parsing: ")
    assert message in str(info.value)


@pytest.mark.parametrize("example", docstring_examples(plugins.rewrite))
def test_documented_examples_load(example: str) -> None:
    assert load(example).blocks[0].names[0] == "rewrite"
