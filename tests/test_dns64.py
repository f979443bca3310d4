"""The ``dns64`` plugin (CoreDNS's) over real sockets against a real upstream: AAAA synthesis
from A records for IPv6 clients (dnspython from ::1, and dig), the TTL rule, NXDOMAIN and
existing AAAA records passed on, ``translate_all``, ``allow_ipv4``, the prefix lengths,
replays (per client family, and of the synthesized reply), its metrics (and the ``plugin``
label of the responses), and CoreDNS's setup errors."""

from __future__ import annotations

import ipaddress
import subprocess

import dns.asyncquery
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import plugins
import plugins.dns64
from plugins.dns64 import to6
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse, parse_file
from proxy.server import Server
from tests.kit.checks import docstring_examples
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample

ZONES = """
$ORIGIN example.org.
@ SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
v4only 3600 A 192.0.2.1
v4only 3600 A 198.51.100.7
short 30 A 192.0.2.9
dual A 192.0.2.2
dual AAAA 2001:db8::2
alias CNAME v4only.example.org.
"""


def ask(port: int, name: str, rdtype: str = "AAAA", source: str = "::1") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    where = "::1" if ":" in source else "127.0.0.1"
    return dns.query.udp(query, where, port=port, source=source, timeout=2)


def aaaa(reply: dns.message.Message) -> list[tuple[str, str, int]]:
    return [
        (rrset.name.to_text(), rd.address, rrset.ttl)
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.AAAA
        for rd in rrset
    ]


def load(text: str):
    return build(parse(text, filename="Corefile", directives=plugins.ORDER), AppContext("Corefile"))


@pytest.fixture
def served(dnsfw, upstream):
    upstream.set_zones(ZONES)

    def start(lines: str = "    dns64"):
        http = free_port()
        d = dnsfw(
            f".:$PORT {{\n    bind 127.0.0.1 ::1\n    prometheus 127.0.0.1:{http}\n{lines}\n"
            f"    cache\n    forward . {upstream.address}\n}}\n"
        )
        d.http = http
        return d

    return start


def test_ipv6_client_gets_aaaa_made_of_the_a_records(served) -> None:
    d = served()
    for _ in range(3):  # forwarded, cached, replayed
        reply = ask(d.port, "v4only.example.org.")
        assert reply.rcode() == dns.rcode.NOERROR
        # TTL: the smaller of the A record's (3600) and the AAAA reply's SOA's (300)
        assert sorted(aaaa(reply)) == [
            ("v4only.example.org.", "64:ff9b::c000:201", 300),
            ("v4only.example.org.", "64:ff9b::c633:6407", 300),
        ]
        assert not reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    short = ask(d.port, "short.example.org.")
    assert aaaa(short) == [("short.example.org.", "64:ff9b::c000:209", 30)]


def test_cname_kept_nxdomain_and_real_aaaa_passed_on(served) -> None:
    d = served()
    alias = ask(d.port, "alias.example.org.")
    assert [r.rdtype for r in alias.answer][0] == dns.rdatatype.CNAME
    assert sorted(a for _, a, _ in aaaa(alias)) == ["64:ff9b::c000:201", "64:ff9b::c633:6407"]
    missing = ask(d.port, "missing.example.org.")
    assert missing.rcode() == dns.rcode.NXDOMAIN and not missing.answer
    dual = ask(d.port, "dual.example.org.")
    assert [a for _, a, _ in aaaa(dual)] == ["2001:db8::2"]
    plain_a = ask(d.port, "v4only.example.org.", "A")  # other types go by untouched
    assert sorted(rd.address for rd in plain_a.answer[0]) == ["192.0.2.1", "198.51.100.7"]


def test_translate_all(served) -> None:
    d = served("    dns64 {\n        translate_all\n    }")
    assert [a for _, a, _ in aaaa(ask(d.port, "dual.example.org."))] == ["64:ff9b::c000:202"]


def test_ipv4_clients_are_not_translated_unless_allowed(served) -> None:
    d = served()
    for _ in range(3):  # an IPv4 client's NODATA is replayed to IPv4 clients only
        v4 = ask(d.port, "v4only.example.org.", source="127.0.0.1")
        assert v4.rcode() == dns.rcode.NOERROR and not v4.answer
        assert len(aaaa(ask(d.port, "v4only.example.org."))) == 2
    allowed = served("    dns64 {\n        allow_ipv4\n    }")
    v4 = ask(allowed.port, "v4only.example.org.", source="127.0.0.1")
    assert len(aaaa(v4)) == 2


def test_a_firewall_block_of_the_aaaa_query_stands(served) -> None:
    d = served(
        "    dns64\n    firewall {\n        list no6 domains v4only.example.org\n"
        "        group g 10 {\n            rule no-aaaa 10 BLOCK no6 qtype AAAA\n        }\n    }"
    )
    blocked = ask(d.port, "v4only.example.org.")
    assert blocked.rcode() == dns.rcode.NOERROR and not blocked.answer
    assert len(aaaa(ask(d.port, "short.example.org."))) == 1  # other names are translated


@pytest.mark.parametrize(
    ("prefix", "address"),
    [
        ("64:ff9b::/96", "64:ff9b::c000:201"),
        ("2001:db8::/32", "2001:db8:c000:201::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:1::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:201::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:100:0"),
    ],
)
def test_prefix_lengths_follow_rfc_6052(served, prefix: str, address: str) -> None:
    d = served(f"    dns64 {prefix}")
    assert ("v4only.example.org.", address, 300) in aaaa(ask(d.port, "v4only.example.org."))


def test_to6_matches_coredns_vectors() -> None:
    address = bytes([64, 64, 64, 64])
    for prefix, expected in [
        ("64:ff9b::/96", "64:ff9b::4040:4040"),
        ("64:ff9b::/64", "64:ff9b::40:4040:4000:0"),
        ("64:ff9b::/56", "64:ff9b:0:40:40:4040::"),
        ("64::/32", "64:0:4040:4040::"),
    ]:
        found = ipaddress.IPv6Address(to6(ipaddress.IPv6Network(prefix), address))
        assert str(found) == expected


def test_dig_sees_the_synthesized_answer(served) -> None:
    d = served("    dns64 64:1337::/96")
    out = subprocess.run(
        ["dig", "@::1", "-p", str(d.port), "+short", "+tries=1", "+time=2", "AAAA",
         "v4only.example.org."],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(out) == ["64:1337::c000:201", "64:1337::c633:6407"]


def test_metrics_count_translations_with_the_dns64_plugin_label(served) -> None:
    d = served()
    for _ in range(3):
        ask(d.port, "v4only.example.org.")
    ask(d.port, "dual.example.org.")
    text = get(d.http, "/metrics")[2]
    server = f"dns://[::1]:{d.port}"
    assert sample(text, "coredns_dns64_requests_translated_total", server=server) == 3
    labels = {"server": server, "zone": ".", "rcode": "NOERROR"}
    assert sample(text, "coredns_dns_responses_total", **labels, plugin="dns64") == 3
    assert sample(text, "coredns_dns_responses_total", **labels, plugin="forward") >= 1


async def test_a_synthesized_reply_is_replayed_from_both_cache_entries(tmp_path, upstream):
    upstream.set_zones(ZONES)
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(
        f".:{port} {{\n    bind ::1\n    dns64\n    cache\n    forward . {upstream.address}\n}}\n"
    )
    server = Server(build(parse_file(str(conf), directives=plugins.ORDER), AppContext(str(conf))))
    await server.start()
    try:
        (listener,) = server.listeners.values()
        query = dns.message.make_query("v4only.example.org.", "AAAA")
        query.id = 4321
        replies = [await dns.asyncquery.udp(query, "::1", port=port, timeout=3) for _ in range(3)]
        assert query.to_wire()[2:] in listener.replays  # the third reply was a replay
        assert len(aaaa(replies[2])) == 2 and replies[2].answer == replies[1].answer
        # the A entry goes (flushed from the cache): the replay no longer holds, the chain
        # asks upstream again and answers the same
        (cache,) = [p for p in server.config.blocks[0].plugins if p.name == "cache"]
        before = len(upstream.seen)
        cache.flush()
        again = await dns.asyncquery.udp(query, "::1", port=port, timeout=3)
        assert len(aaaa(again)) == 2 and len(upstream.seen) > before
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("dns64 foobar", "invalid CIDR address: foobar"),
        ("dns64 64:ff9b::", "invalid CIDR address: 64:ff9b::"),
        ("dns64 {\n        prefix 64:ff9b::/52\n    }", 'invalid prefix length "64:ff9b::/52"'),
        ("dns64 {\n        prefix 64:ff9b::/104\n    }", 'invalid prefix length "64:ff9b::/104"'),
        (
            "dns64 {\n        prefix 8.8.8.8/24\n    }",
            'invalid netmask 32 IPv6 address: "8.8.8.0/24"',
        ),
        ("dns64 foobar {\n        prefix 64:ff9b::/96\n    }", "invalid CIDR address: foobar"),
        ("dns64 {\n        foobar\n    }", "unknown property 'foobar'"),
        ("dns64 64:ff9b::/96 64:ff9b::/96", "Wrong argument count or unexpected line ending"),
        ("dns64 {\n        prefix\n    }", "Wrong argument count or unexpected line ending"),
    ],
)
def test_setup_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as info:
        load(f".:53 {{\n    {body}\n    whoami\n}}\n")
    text = str(info.value)
    assert text.startswith("plugin/dns64: Corefile:") and message in text


def test_setup_options_add_up_as_in_coredns() -> None:
    block = load(
        ".:53 {\n    dns64 2001:db8::/32\n    dns64 {\n        translate_all\n    }\n"
        "    whoami\n}\n"
    ).blocks[0]
    (stage,) = [p for p in block.plugins if p.name == "dns64"]
    assert str(stage.prefix) == "2001:db8::/32" and stage.translate_all and not stage.allow_ipv4


@pytest.mark.parametrize("example", docstring_examples(plugins.dns64))
def test_documented_examples_load(example: str) -> None:
    assert load(example).blocks[0].names[0] == "dns64"
