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
from tests.kit.examples import docstring_examples

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
