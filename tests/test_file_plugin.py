"""The ``file`` and ``auto`` plugins as CoreDNS's: authoritative answers from zone files
(referrals with glue, CNAME/DNAME inside the zone, wildcards, NXDOMAIN/NODATA with the SOA,
AXFR refused), reload on serial change, fallthrough, replays that end with the data they came
from, a directory of zones for ``auto``, and CoreDNS's setup errors."""

from __future__ import annotations

import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import plugins.auto as auto_plugin
import plugins.file as file_plugin
from tests.kit.checks import docstring_examples, setup_error
from tests.kit.dnsfw import run_cli
from tests.kit.tools import dig

ZONE = """\
$ORIGIN example.org.
$TTL 300
@        3600 IN SOA sns.dns.icann.org. noc.dns.icann.org. {serial} 7200 3600 1209600 3600
         3600 IN NS  a.iana-servers.net.
         3600 IN NS  b.iana-servers.net.
www      IN A     127.0.0.1
         IN AAAA  ::1
mail     IN A     192.0.2.25
@        IN MX    10 mail
@        IN MX    20 mail
srv      IN SRV   0 0 5060 mail
alias    IN CNAME www
alias2   IN CNAME alias
ext      IN CNAME www.example.net.
dangling IN CNAME nope
*.wild   IN A     192.0.2.99
x.y.ent  IN A     192.0.2.88
*.ent    IN A     192.0.2.77
sub      IN NS    ns1.sub
sub      IN NS    ns.other.test.
sub      IN DS    12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE7D1C1C2E1F2B3C4D5E6F7A8B
ns1.sub  IN A     192.0.2.53
dn       IN DNAME example.net.
a.b.deep IN A     192.0.2.66
"""
RELATIVE = ZONE.replace("$ORIGIN example.org.\n", "")  # names relative to the zone it is read as

SERVED = """\
example.org:$PORT example.com:$PORT {
    bind 127.0.0.1
    file db.example.org example.org {
        reload 100ms
    }
    whoami
}
"""


def texts(section) -> list[str]:
    return sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in section
        for rd in rrset
    )


APEX_NS = [
    "example.org. 3600 NS a.iana-servers.net.",
    "example.org. 3600 NS b.iana-servers.net.",
]
SOA = ["example.org. 3600 SOA sns.dns.icann.org. noc.dns.icann.org. 1 7200 3600 1209600 3600"]


@pytest.fixture
def served(dnsfw, tmp_path: Path):
    (tmp_path / "db.example.org").write_text(ZONE.format(serial=1))
    return dnsfw(SERVED)


def check(reply, rcode: int, answer: list[str], authority: list[str], additional=(), aa=True):
    assert reply.rcode() == rcode, reply
    assert bool(reply.flags & dns.flags.AA) == aa, reply
    assert texts(reply.answer) == sorted(answer), reply
    assert texts(reply.authority) == sorted(authority), reply
    assert texts(reply.additional) == sorted(additional), reply


def test_answers_with_ns_and_additional_addresses(served):
    check(served.query("www.example.org", "A"), 0, ["www.example.org. 300 A 127.0.0.1"], APEX_NS)
    check(
        served.query("example.org", "MX"),
        0,
        ["example.org. 300 MX 10 mail.example.org.", "example.org. 300 MX 20 mail.example.org."],
        APEX_NS,
        ["mail.example.org. 300 A 192.0.2.25"],  # once, though two MX name it
    )
    check(
        served.query("srv.example.org", "SRV"),
        0,
        ["srv.example.org. 300 SRV 0 0 5060 mail.example.org."],
        APEX_NS,
        ["mail.example.org. 300 A 192.0.2.25"],
    )
    check(served.query("example.org", "SOA"), 0, SOA, APEX_NS)
    check(served.query("example.org", "NS"), 0, APEX_NS, [])


def test_nodata_and_nxdomain_carry_the_soa(served):
    check(served.query("www.example.org", "TXT"), 0, [], SOA)
    check(served.query("nope.example.org", "A"), dns.rcode.NXDOMAIN, [], SOA)
    check(served.query("b.deep.example.org", "A"), 0, [], SOA)  # an empty non-terminal
    # CoreDNS answers an empty non-terminal from a wildcard above it (lookup.go's order)
    check(
        served.query("y.ent.example.org", "A"), 0, ["y.ent.example.org. 300 A 192.0.2.77"], APEX_NS
    )


def test_cnames_inside_the_zone_are_chased(served):
    check(
        served.query("alias2.example.org", "A"),
        0,
        [
            "alias2.example.org. 300 CNAME alias.example.org.",
            "alias.example.org. 300 CNAME www.example.org.",
            "www.example.org. 300 A 127.0.0.1",
        ],
        APEX_NS,
    )
    check(
        served.query("alias.example.org", "CNAME"),
        0,
        ["alias.example.org. 300 CNAME www.example.org."],
        APEX_NS,
    )
    # a target outside the zone ends the chain; one in the zone that does not exist: NXDOMAIN
    check(
        served.query("ext.example.org", "A"),
        0,
        ["ext.example.org. 300 CNAME www.example.net."],
        APEX_NS,
    )
    check(
        served.query("dangling.example.org", "A"),
        dns.rcode.NXDOMAIN,
        ["dangling.example.org. 300 CNAME nope.example.org."],
        SOA,
    )
    # the target exists without the type: the chain alone (CoreDNS gives no SOA there)
    check(
        served.query("alias.example.org", "MX"),
        0,
        ["alias.example.org. 300 CNAME www.example.org."],
        APEX_NS,
    )


def test_dname_synthesises_a_cname(served):
    check(
        served.query("x.dn.example.org", "A"),
        0,
        ["dn.example.org. 300 DNAME example.net.", "x.dn.example.org. 300 CNAME x.example.net."],
        APEX_NS,
    )


def test_wildcards(served):
    check(
        served.query("a.wild.example.org", "A"),
        0,
        ["a.wild.example.org. 300 A 192.0.2.99"],
        APEX_NS,
    )
    check(
        served.query("a.b.wild.example.org", "A"),
        0,
        ["a.b.wild.example.org. 300 A 192.0.2.99"],
        APEX_NS,
    )
    check(served.query("a.wild.example.org", "MX"), 0, [], SOA)
    # *.ent does not answer below the empty non-terminal y.ent (RFC 4592's closest encloser)
    check(
        served.query("q.ent.example.org", "A"), 0, ["q.ent.example.org. 300 A 192.0.2.77"], APEX_NS
    )
    check(served.query("q.y.ent.example.org", "A"), dns.rcode.NXDOMAIN, [], SOA)


def test_a_delegation_is_a_referral_with_glue(served):
    referral = served.query("host.sub.example.org", "A")
    check(
        referral,
        0,
        [],
        ["sub.example.org. 300 NS ns1.sub.example.org.", "sub.example.org. 300 NS ns.other.test."],
        ["ns1.sub.example.org. 300 A 192.0.2.53"],  # in bailiwick only
        aa=False,
    )
    # DS at the cut is the parent's
    ds = served.query("sub.example.org", "DS")
    assert ds.flags & dns.flags.AA and len(ds.answer) == 1
    out = dig(served.port, "host.sub.example.org", "A", "+norec")
    assert "flags: qr;" in out and "status: NOERROR" in out, out


def test_transfers_are_refused_and_other_zones_go_on(served):
    axfr = dns.message.make_query("example.org", "AXFR")
    reply = dns.query.tcp(axfr, "127.0.0.1", port=served.port, timeout=3)
    assert reply.rcode() == dns.rcode.REFUSED
    assert (
        dns.query.udp(
            dns.message.make_query("example.org", "IXFR"), "127.0.0.1", port=served.port, timeout=3
        ).rcode()
        == dns.rcode.REFUSED
    )
    other = served.query("example.com", "A")  # the block's other zone: not the file's
    assert other.answer == [] and len(other.additional) == 2  # whoami
    out = dig(served.port, "www.example.org", "A")
    assert "flags: qr aa rd;" in out and "www.example.org.\t300\tIN\tA\t127.0.0.1" in out, out


def test_reload_on_serial_change_and_replays_follow(served, tmp_path: Path):
    path = tmp_path / "db.example.org"
    query = dns.message.make_query("www.example.org", "A")

    def www() -> list[str]:
        return texts(dns.query.udp(query, "127.0.0.1", port=served.port, timeout=3).answer)

    assert www() == ["www.example.org. 300 A 127.0.0.1"] == www()  # answered, then replayed
    path.write_text(ZONE.format(serial=1).replace("127.0.0.1", "127.0.0.2"))
    time.sleep(0.5)  # several reload ticks: the serial did not change, nothing is read
    assert www() == ["www.example.org. 300 A 127.0.0.1"]
    path.write_text(ZONE.format(serial=2).replace("127.0.0.1", "127.0.0.3"))
    deadline = time.monotonic() + 10
    while www() != ["www.example.org. 300 A 127.0.0.3"]:
        assert time.monotonic() < deadline, "the new serial was not loaded"
        time.sleep(0.05)
    path.write_text("this is not a zone file\n")  # a broken file keeps the zone
    time.sleep(0.5)
    assert www() == ["www.example.org. 300 A 127.0.0.3"]


def test_reload_by_mtime_and_fallthrough(dnsfw, tmp_path: Path):
    path = tmp_path / "db.example.org"
    path.write_text(ZONE.format(serial=1))
    d = dnsfw(
        """\
example.org:$PORT {
    bind 127.0.0.1
    file db.example.org {
        reload 100ms
        reload_by_mtime
        fallthrough
    }
    whoami
}
"""
    )
    assert len(d.query("new.example.org", "A").additional) == 2  # NXDOMAIN: falls through
    assert d.query("www.example.org", "TXT").rcode() == 0  # NODATA: answered
    assert d.query("www.example.org", "TXT").additional == []
    assert len(d.query("b.deep.example.org", "A").additional) == 2  # an ENT falls through too
    path.write_text(ZONE.format(serial=1) + "new IN A 192.0.2.1\n")  # same serial, newer file
    deadline = time.monotonic() + 10
    while d.query("new.example.org", "A").answer == []:
        assert time.monotonic() < deadline, "the newer file was not loaded"
        time.sleep(0.05)


def test_one_file_for_several_zones(dnsfw, tmp_path: Path):
    (tmp_path / "db.shared").write_text(
        "$TTL 60\n@ IN SOA ns hostmaster 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\n"
        "www IN A 192.0.2.2\n"
    )
    d = dnsfw(".:$PORT {\n    bind 127.0.0.1\n    file db.shared example.org example.net\n}\n")
    for zone in ("example.org", "example.net"):
        assert texts(d.query(f"www.{zone}", "A").answer) == [f"www.{zone}. 60 A 192.0.2.2"]


# --- setup: CoreDNS's plugin/file/setup_test.go and Parse errors ----------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "file",
            "2 - Error during parsing: Wrong argument count or unexpected line ending after 'file'",
        ),
        (
            "file db.example.org example.org {\n transfer from 127.0.0.1\n }",
            "3 - Error during parsing: unknown property 'transfer'",
        ),
        (
            "file db.example.org example.net {\n no_reload\n }",
            "3 - Error during parsing: unknown property 'no_reload'",
        ),
        (
            "file db.example.org {\n reload\n }",
            "3 - Error during parsing: reload duration value is expected",
        ),
        (
            "file db.example.org {\n reload soon\n }",
            '3 - Error during parsing: time: invalid duration "soon"',
        ),
        (
            "file db.example.net example.net {\n reload 0\n }",
            "2 - Error during parsing: open {tmp}/db.example.net: no such file or directory",
        ),
        (
            "file db.nosoa example.org",
            '2 - Error during parsing: file "{tmp}/db.nosoa" has no SOA record for origin example.org.',
        ),
        (
            "file db.broken example.org",
            '2 - Error during parsing: failed to parse file "{tmp}/db.broken" for origin example.org. with error',
        ),
    ],
)
def test_setup_errors(body: str, message: str, tmp_path: Path):
    (tmp_path / "db.example.org").write_text(ZONE.format(serial=1))
    (tmp_path / "db.nosoa").write_text("$ORIGIN example.org.\nwww 60 IN A 192.0.2.1\n")
    (tmp_path / "db.broken").write_text("$ORIGIN example.org.\nwww 60 IN A not-an-address\n")
    error = setup_error(f".:53 {{\n{body}\n}}\n", f"{tmp_path}/Corefile")
    expected = f"plugin/file: {tmp_path}/Corefile:{message.format(tmp=tmp_path)}"
    assert error is not None and error.startswith(expected), error


def test_setup_accepts_coredns_forms(tmp_path: Path):
    (tmp_path / "db.example.org").write_text(RELATIVE.format(serial=1))
    for body in [
        "file db.example.org example.org.",
        "file db.example.org 10.0.0.0/8",
        "file db.example.org example.org. {\n fallthrough\n }",
        "file db.example.org example.org. {\n fallthrough www.example.org\n }",
        "file db.example.org example.org. {\n reload 0\n upstream\n }",
    ]:
        assert setup_error(f".:53 {{\n{body}\n}}\n", f"{tmp_path}/Corefile") is None, body


def test_a_missing_file_is_a_warning_and_servfail_until_it_appears(dnsfw, tmp_path: Path):
    (tmp_path / "Corefile").write_text("example.org {\n    file db.example.org\n}\n")
    done = run_cli("check", "-conf", str(tmp_path / "Corefile"))
    assert done.returncode == 0, done.stderr
    assert (
        f'Corefile:2 - Warning: Failed to open "open {tmp_path}/db.example.org: no such file or '
        'directory": trying again in 1m0s'
    ) in done.stderr
    d = dnsfw(
        "example.org:$PORT {\n    bind 127.0.0.1\n    file db.example.org {\n        reload 100ms\n    }\n}\n"
    )
    assert d.query("www.example.org", "A").rcode() == dns.rcode.SERVFAIL
    (tmp_path / "db.example.org").write_text(ZONE.format(serial=1))
    deadline = time.monotonic() + 10
    while d.query("www.example.org", "A").rcode() != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_file_docstring_examples_set_up(tmp_path: Path):
    (tmp_path / "db.example.org").write_text(RELATIVE.format(serial=1))
    examples = docstring_examples(file_plugin)
    assert len(examples) == 2
    for text in examples:
        assert setup_error(text, f"{tmp_path}/Corefile") is None, text


# --- auto ------------------------------------------------------------------------------------


def test_auto_serves_the_zones_of_a_directory(dnsfw, tmp_path: Path):
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "db.example.org").write_text(ZONE.format(serial=1))
    (zones / "README").write_text("not a zone file name\n")
    d = dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    auto example.org example.net {
        directory zones
        reload 100ms
    }
    whoami
}
"""
    )
    check(d.query("www.example.org", "A"), 0, ["www.example.org. 300 A 127.0.0.1"], APEX_NS)
    net = dns.message.make_query("www.example.net", "A")

    def ask_net():
        return dns.query.udp(net, "127.0.0.1", port=d.port, timeout=3)

    assert len(ask_net().additional) == 2  # no zone for it yet: the next plugin
    assert len(ask_net().additional) == 2
    (zones / "db.example.net").write_text(
        ZONE.format(serial=1).replace("example.org", "example.net")
    )
    deadline = time.monotonic() + 10
    while ask_net().answer == []:
        assert time.monotonic() < deadline, "the new zone was not loaded"
        time.sleep(0.05)
    assert texts(ask_net().answer) == ["www.example.net. 300 A 127.0.0.1"]
    (zones / "db.example.net").unlink()
    while ask_net().answer != []:  # removed: its replayed answer ends too
        assert time.monotonic() < deadline, "the removed zone still answers"
        time.sleep(0.05)
    assert len(ask_net().additional) == 2
    assert len(d.query("www.example.com", "A").additional) == 2  # outside auto's zones


def test_auto_regex_and_origin_template(dnsfw, tmp_path: Path):
    zones = tmp_path / "zones" / "org"
    zones.mkdir(parents=True)
    (zones / "www.db.example.org").write_text(ZONE.format(serial=1))
    (zones / "db.example.org").write_text(ZONE.format(serial=1).replace("127.0.0.1", "10.0.0.1"))
    example = docstring_examples(auto_plugin)[1]
    d = dnsfw(example.replace("org {", "org:$PORT {\n    bind 127.0.0.1", 1))
    # www\.db\.(.*) {1}: only www.db.example.org names a zone
    assert texts(d.query("www.example.org", "A").answer) == ["www.example.org. 300 A 127.0.0.1"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "auto {\n directory\n }",
            "3 - Error during parsing: Wrong argument count or unexpected line ending after 'directory'",
        ),
        (
            "auto {\n directory zones db\\.(.*)\n }",
            "3 - Error during parsing: Wrong argument count",
        ),
        (
            "auto {\n directory zones db\\.(.*) {1} extra\n }",
            "3 - Error during parsing: Wrong argument count",
        ),
        (
            "auto {\n directory zones db\\..* {1}\n }",
            "3 - Error during parsing: Need at least one sub expression",
        ),
        (
            "auto {\n directory zones " + "a" * 10001 + " {1}\n }",
            "3 - Error during parsing: regexp too large",
        ),
        (
            "auto {\n directory zones db\\.(.* {1}\n }",
            "3 - Error during parsing: error parsing regexp",
        ),
        ("auto {\n reload\n }", "3 - Error during parsing: reload duration value is expected"),
        ("auto {\n reload -1s\n }", "3 - Error during parsing: invalid duration"),
        ("auto {\n nosuch\n }", "3 - Error during parsing: unknown property 'nosuch'"),
        (
            "auto {\n directory zones/file/x\n }",
            "3 - Error during parsing: Unable to access root path '{tmp}/zones/file/x'",
        ),
    ],
)
def test_auto_setup_errors(body: str, message: str, tmp_path: Path):
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "file").write_text("")
    error = setup_error(f".:53 {{\n{body}\n}}\n", f"{tmp_path}/Corefile")
    expected = f"plugin/auto: {tmp_path}/Corefile:{message.format(tmp=tmp_path)}"
    assert error is not None and error.startswith(expected), error


def test_the_auto_docstring_examples_set_up(tmp_path: Path):
    (tmp_path / "zones" / "org").mkdir(parents=True)
    examples = docstring_examples(auto_plugin)
    assert len(examples) == 2
    for text in examples:
        assert setup_error(text, f"{tmp_path}/Corefile") is None, text
