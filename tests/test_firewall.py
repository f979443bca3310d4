"""The firewall plugin on the wire: Route 53 conformance (route53-dns-firewall.md §2.2-§6) and
the Gmail-only scenario (scenario.md §1), against the upstream fixture through ``forward``.

One dnsfw process serves every profile below, each a server block on its own port (a block has
one firewall, and a profile is one firewall configuration). Answers are read with dnspython and,
for the block responses of §4, also with ``dig``. In-process tests at the end check the
decisions the plugin records in ``req.meta["firewall"]`` for the query log.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import plugins.firewall as firewall_pkg
from plugins.firewall import Firewall
from plugins.firewall.policy import ClientSet, Decision
from proxy.config import load
from proxy.request import Request, Response
from proxy.request import parse as parse_request
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.upstream import Upstream

FW_SOA_MNAME = dns.name.from_text("dnsfw.invalid.")
EDE_BLOCKED = 15

# scenario.md §1, the EC2-Internal list (file list of the docstring example)
INTERNAL_LIST = """\
# EC2-Internal (scenario.md §1)
*.compute.internal
__cloud_init_expected_not_found__.
does-not-exist.example.com
example.invalid
"""


def docstring_example() -> str:
    """The ``firewall { ... }`` example of the plugin's docstring, as documented."""
    doc = firewall_pkg.__doc__ or ""
    start = doc.index("Example (the Gmail-only allowlist")
    body = doc[doc.index("::", start) + 2 : doc.index("``dnsfw explain", start)]
    return textwrap.dedent(body).strip()


# name -> the firewall block's body (inside `firewall { }`); extra lines for the server block
PROFILES: dict[str, str] = {
    # §2.2 rows: exact name, and a TLD wildcard
    "match_exact_tld": """
        list exact domains example.com
        list ru domains *.ru
        group g 100 {
            rule exact 10 BLOCK exact
            rule tld 20 BLOCK ru
        }
    """,
    "match_wildcard": """
        list wild domains *.example.com
        group g 100 {
            rule wild 10 BLOCK wild
        }
    """,
    "match_all": """
        list all domains *
        group g 100 {
            rule all 10 BLOCK all
        }
    """,
    # §4: every action and block response; block_ttl is not the default
    "responses": """
        list l-nodata domains ads.example
        list l-nx domains ads.yahoo.co.jp
        list l-cname domains beacon.yahoo.co.jp
        list l-chain domains mx1.mail.yahoo.co.jp
        list l-v4 domains mail.example.com
        list l-v6 domains ns1.example.com
        list l-alert domains rr.example.com
        list l-allow domains gmail.com
        group g 100 {
            rule b-nodata 10 BLOCK l-nodata
            rule b-nx 20 BLOCK l-nx response nxdomain
            rule b-cname 30 BLOCK l-cname response override c.cdn.example ttl 30
            rule b-chain 35 BLOCK l-chain response override a.example
            rule b-v4 40 BLOCK l-v4 response override 192.0.2.99 ttl 20
            rule b-v6 50 BLOCK l-v6 response override 2001:db8::99 ttl 25
            rule alert 60 ALERT l-alert
            rule allow 70 ALLOW l-allow
        }
        block_ttl 123
    """,
    "ede_off": """
        list l domains ads.example
        group g 100 {
            rule b 10 BLOCK l response nxdomain
        }
        ede off
    """,
    # §3: terminal actions and priorities; groups and rules written out of priority order
    "walk": """
        list all domains *
        list narrow domains mail.example.com alt1.gmail-smtp-in.l.google.com
        list broad-alert domains *.example.com
        list broad-allow domains *.google.com
        list aws-allow domains *.amazonaws.com
        list aws-block domains ssm.ap-northeast-1.amazonaws.com
        group late 200 {
            rule catch-all 10 BLOCK all response nxdomain
        }
        group early 100 {
            rule narrow-block 30 BLOCK narrow
            rule broad-allow 20 ALLOW broad-allow
            rule broad-alert 10 ALERT broad-alert
            rule aws-allow 50 ALLOW aws-allow
            rule aws-block 45 BLOCK aws-block
        }
    """,
    # §5.1: one query type per rule, mnemonic or TYPEn, any case
    "qtype": """
        list yahoo domains yahoo.co.jp
        list ex domains example.com
        group g 100 {
            rule yahoo-mx 10 ALLOW yahoo qtype MX
            rule yahoo-all 20 BLOCK yahoo
            rule ex-txt 30 BLOCK ex qtype TYPE16
            rule ex-aaaa 40 BLOCK ex qtype aaaa
        }
    """,
    # client groups: queries come from 127.0.0.1 or ::1
    "clients": """
        list all domains *
        list yahoo domains yahoo.co.jp
        list gmail domains gmail.com
        group lan 100 {
            clients 10.0.0.0/8 192.0.2.0/24 2001:db8::/32
            rule lan-block 10 BLOCK all response nxdomain
        }
        group loopback4 200 {
            clients 127.0.0.0/8
            rule lo4-block 10 BLOCK yahoo
        }
        group loopback6 300 {
            clients ::1/128
            rule lo6-block 10 BLOCK gmail
        }
    """,
    # §6 with INSPECT_REDIRECTION_DOMAIN (the default) on every rule
    "inspect": """
        list a domains a.example
        list google domains *.google.com
        list fedora-alert domains wildcard.fedoraproject.org
        list tracker domains *.tracker.example
        list akamai domains *.akamaiedge.net
        list rr domains rr.example.com gone.example.com
        list chain2 domains chain2.example.com
        list apex domains example.com
        group g 100 {
            rule allow-a 10 ALLOW a
            rule allow-google 20 ALLOW google
            rule allow-chain2 22 ALLOW chain2
            rule alert-fedora 25 ALERT fedora-alert
            rule block-tracker 30 BLOCK tracker response nxdomain
            rule block-akamai 40 BLOCK akamai
            rule block-rr 50 BLOCK rr
            rule block-apex 60 BLOCK apex
        }
    """,
    # the same with TRUST_REDIRECTION_DOMAIN on the ALLOW rules
    "trust": """
        list a domains a.example
        list google domains *.google.com
        list fedora-alert domains wildcard.fedoraproject.org
        list tracker domains *.tracker.example
        list akamai domains *.akamaiedge.net
        list rr domains rr.example.com gone.example.com
        list chain2 domains chain2.example.com
        list apex domains example.com
        group g 100 {
            rule allow-a 10 ALLOW a redirection trust
            rule allow-google 20 ALLOW google redirection trust
            rule allow-chain2 22 ALLOW chain2 redirection trust
            rule alert-fedora 25 ALERT fedora-alert
            rule block-tracker 30 BLOCK tracker response nxdomain
            rule block-akamai 40 BLOCK akamai
            rule block-rr 50 BLOCK rr
            rule block-apex 60 BLOCK apex
        }
    """,
    "bypass": """
        list l domains ads.example
        group g 100 {
            rule b 10 BLOCK l
        }
        bypass_signals on
    """,
    # lists that cannot load: a url nothing serves (rule for A; a missing file is a start
    # error) and a file with a bad line (rule for AAAA)
    "fail_closed": """
        list ok domains gmail.com
        list missing url http://127.0.0.1:9/does-not-exist.txt
        list broken file lists/broken.txt
        group g 100 {
            rule allow-ok 10 ALLOW ok
            rule missing-a 20 BLOCK missing qtype A
            rule broken-aaaa 30 BLOCK broken qtype AAAA
        }
    """,
    "fail_open": """
        list ok domains gmail.com
        list missing url http://127.0.0.1:9/does-not-exist.txt
        list broken file lists/broken.txt
        group g 100 {
            rule allow-ok 10 ALLOW ok
            rule missing-a 20 BLOCK missing qtype A
            rule broken-aaaa 30 BLOCK broken qtype AAAA
        }
        fail open
    """,
    "scenario": docstring_example().removeprefix("firewall {").removesuffix("}"),
    # the same without `redirection trust` on the Google ALLOW rule (CDS#838)
    "scenario_inspect": docstring_example()
    .removeprefix("firewall {")
    .removesuffix("}")
    .replace("ALLOW google   redirection trust", "ALLOW google"),
}


@dataclass
class Served:
    dnsfw: Dnsfw
    ports: dict[str, int]
    upstream: Upstream

    def ask(
        self,
        profile: str,
        name: str,
        rdtype: str = "A",
        *,
        edns: bool = True,
        client: str = "127.0.0.1",
    ) -> dns.message.Message:
        """Ask a profile's block; dnsfw listens on the loopback address the client uses."""
        q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
        return dns.query.udp(q, client, port=self.ports[profile], timeout=3.0)

    def direct(self, name: str, rdtype: str = "A") -> dns.message.Message:
        """The upstream's own answer, for 'answered normally'."""
        q = dns.message.make_query(name, rdtype, use_edns=0)
        return dns.query.udp(q, "127.0.0.1", port=self.upstream.port, timeout=3.0)


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# one server block per profile (BODY: its firewall), all forwarding to the upstream
PROFILE = """\
.:$PORT {
    bind $BIND
    firewall {
        $BODY
    }
    forward . $UPSTREAM
}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("firewall")
    (workdir / "lists").mkdir()
    (workdir / "lists" / "internal.txt").write_text(INTERNAL_LIST)
    (workdir / "lists" / "broken.txt").write_text("good.example\nbad..entry\n")
    with Upstream() as upstream:
        names = list(PROFILES)
        ports = dict(zip(names[1:], distinct_ports(len(names) - 1), strict=True))
        blocks = []
        for name in names:
            port = "$PORT" if name == names[0] else ports[name]
            bind = "127.0.0.1 ::1" if name == "clients" else "127.0.0.1"
            body = textwrap.dedent(PROFILES[name]).strip()
            blocks.append(
                corefile(PROFILE, PORT=port, BIND=bind, BODY=body, UPSTREAM=upstream.address)
            )
        d = Dnsfw("\n".join(blocks), workdir)
        while d.port in ports.values():
            d = Dnsfw("\n".join(blocks), workdir)
        ports[names[0]] = d.port
        d.start(wait="listening")  # some lists never load (fail open/closed profiles)
        try:
            yield Served(d, ports, upstream)
        finally:
            d.stop()


# --- reading answers ----------------------------------------------------------------------


def ede(msg: dns.message.Message) -> list[tuple[int, str]]:
    return [(o.code, o.text or "") for o in msg.options if o.otype == dns.edns.EDE]


def rule_of(msg: dns.message.Message, target: str = "") -> str | None:
    """The rule an EDE 15 names, or None when the answer carries no EDE; ``target``: the
    CNAME/DNAME target that the EDE must name (a block on a chain target)."""
    found = ede(msg)
    if not found:
        return None
    assert len(found) == 1 and found[0][0] == EDE_BLOCKED, found
    via = f" on the CNAME/DNAME target {re.escape(target)}" if target else ""
    m = re.match(
        rf"blocked by dnsfw rule '([^']+)' \(group '[^']+', list '[^']+'\){via}$", found[0][1]
    )
    assert m, found
    return m[1]


def records(section: list[dns.rrset.RRset]) -> list[tuple[str, int, str, str]]:
    return sorted(
        (r.name.to_text().lower(), r.ttl, dns.rdatatype.to_text(r.rdtype), rd.to_text())
        for r in section
        for rd in r
    )


def firewall_soa(msg: dns.message.Message) -> dns.rrset.RRset | None:
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA and rrset[0].mname == FW_SOA_MNAME:
            return rrset
    return None


def assert_normal(served: Served, msg: dns.message.Message, name: str, rdtype: str) -> None:
    """Answered as the upstream answers: same rcode and records, nothing from the firewall."""
    direct = served.direct(name, rdtype)
    assert msg.rcode() == direct.rcode()
    assert records(msg.answer) == records(direct.answer)
    assert records(msg.authority) == records(direct.authority)
    assert ede(msg) == []
    assert firewall_soa(msg) is None


def assert_blocked(
    msg: dns.message.Message,
    rule: str,
    rcode: int = dns.rcode.NOERROR,
    ttl: int = 60,
    *,
    target: str = "",
) -> None:
    """A NODATA/NXDOMAIN block answer by ``rule``: empty answer, the firewall's SOA, EDE 15
    (naming ``target`` for a block on a CNAME/DNAME target)."""
    assert msg.rcode() == rcode, msg
    assert msg.answer == []
    soa = firewall_soa(msg)
    assert soa is not None, msg
    assert soa.ttl == ttl and soa[0].minimum == ttl
    assert rule_of(msg, target) == rule


# --- dig ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dig:
    status: str
    ede: list[tuple[int, str]]
    answer: list[tuple[str, int, str, str]]
    authority: list[tuple[str, int, str, str]]
    has_opt: bool


DIG_EDE = re.compile(r"^; EDE: (\d+) \([^)]*\)(?:: \((.*)\))?$")


def dig(port: int, name: str, rdtype: str, *options: str) -> Dig:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), name, rdtype, "+tries=1", "+time=3", *options],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    assert status, out
    sections: dict[str, list[tuple[str, int, str, str]]] = {"ANSWER": [], "AUTHORITY": []}
    current = None
    found_ede = []
    for line in out.splitlines():
        m = re.match(r"^;; (\w+) SECTION:$", line)
        if m:
            current = m[1] if m[1] in sections else None
            continue
        if not line.strip():
            current = None
            continue
        m = DIG_EDE.match(line)
        if m:
            found_ede.append((int(m[1]), m[2] or ""))
        elif current and not line.startswith(";"):
            owner, ttl, _cls, rtype, rdata = line.split(None, 4)
            sections[current].append((owner.lower(), int(ttl), rtype, rdata.strip()))
    return Dig(
        status[1],
        found_ede,
        sorted(sections["ANSWER"]),
        sorted(sections["AUTHORITY"]),
        "OPT PSEUDOSECTION" in out,
    )


def assert_dig_agrees(served: Served, profile: str, name: str, rdtype: str) -> None:
    """dig reads the same answer as dnspython, with EDNS (EDE) and without (no OPT at all)."""
    port = served.ports[profile]
    for edns in (True, False):
        msg = served.ask(profile, name, rdtype, edns=edns)
        seen = dig(port, name, rdtype, "+edns=0" if edns else "+noedns", "+nocookie")
        assert seen.status == dns.rcode.to_text(msg.rcode())
        assert seen.answer == records(msg.answer)
        assert seen.authority == records(msg.authority)
        assert seen.ede == ede(msg)
        assert seen.has_opt is edns
        if not edns:
            assert msg.edns == -1 and ede(msg) == []


# --- §2.2 matching semantics, on the wire --------------------------------------------------

# (profile, query name, deciding rule or None). "*" matching the root is dnsfw's decision.
MATCHING = [
    ("match_exact_tld", "example.com", "exact"),
    ("match_exact_tld", "EXAMPLE.Com.", "exact"),
    ("match_exact_tld", "mail.example.com", None),  # (www.example.com is a CNAME to the apex)
    ("match_exact_tld", "a.b.example.com", None),
    ("match_wildcard", "www.example.com", "wild"),
    ("match_wildcard", "WWW.Example.COM", "wild"),
    ("match_wildcard", "deep.sub.w.example.com", "wild"),
    ("match_wildcard", "example.com", None),
    ("match_exact_tld", "yandex.ru", "tld"),
    ("match_exact_tld", "a.b.c.ru", "tld"),
    ("match_exact_tld", "ru", None),
    ("match_all", "gmail.com", "all"),
    ("match_all", "ip-10-0-0-150.ap-northeast-1.compute.internal", "all"),
    ("match_all", "com", "all"),
    ("match_all", ".", "all"),
]


@pytest.mark.parametrize(("profile", "name", "rule"), MATCHING)
def test_list_matching_on_the_wire(served: Served, profile: str, name: str, rule: str | None):
    rdtype = "NS" if name == "." else "A"
    msg = served.ask(profile, name, rdtype)
    if rule is None:
        assert_normal(served, msg, name, rdtype)
    else:
        assert_blocked(msg, rule)


# --- §4 actions and block responses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("example.com", "A"),  # no match
        ("gmail.com", "MX"),  # ALLOW
        ("rr.example.com", "A"),  # ALERT
        ("use-application-dns.net", "A"),  # no match: the upstream's own NXDOMAIN
    ],
)
def test_unblocked_actions_answer_normally(served: Served, name: str, rdtype: str):
    assert_normal(served, served.ask("responses", name, rdtype), name, rdtype)
    assert_normal(served, served.ask("responses", name, rdtype, edns=False), name, rdtype)
    assert_dig_agrees(served, "responses", name, rdtype)


def test_block_nodata_is_noerror_empty_with_soa_of_block_ttl(served: Served):
    msg = served.ask("responses", "ads.example", "A")
    assert_blocked(msg, "b-nodata", dns.rcode.NOERROR, ttl=123)
    assert_dig_agrees(served, "responses", "ads.example", "A")
    # the same for every type: the rule has no qtype
    assert_blocked(served.ask("responses", "ads.example", "TXT"), "b-nodata", ttl=123)


def test_block_nxdomain_with_soa_of_block_ttl(served: Served):
    msg = served.ask("responses", "ads.yahoo.co.jp", "A")
    assert_blocked(msg, "b-nx", dns.rcode.NXDOMAIN, ttl=123)
    assert_dig_agrees(served, "responses", "ads.yahoo.co.jp", "A")
    # the upstream would have answered: the block is the firewall's
    assert served.direct("ads.yahoo.co.jp").answer


def test_block_override_cname_resolves_the_target(served: Served):
    for rdtype, address in (("A", "198.51.100.7"), ("AAAA", "2001:db8::7")):
        msg = served.ask("responses", "beacon.yahoo.co.jp", rdtype)
        assert msg.rcode() == dns.rcode.NOERROR
        assert records(msg.answer) == sorted(
            [
                ("beacon.yahoo.co.jp.", 30, "CNAME", "c.cdn.example."),
                ("c.cdn.example.", 300, rdtype, address),
            ]
        )
        assert rule_of(msg) == "b-cname"
        assert_dig_agrees(served, "responses", "beacon.yahoo.co.jp", rdtype)
    # a CNAME question gets the CNAME alone
    msg = served.ask("responses", "beacon.yahoo.co.jp", "CNAME")
    assert records(msg.answer) == [("beacon.yahoo.co.jp.", 30, "CNAME", "c.cdn.example.")]


def test_block_override_cname_target_that_is_a_chain(served: Served):
    # default ttl 0; a.example -> b.tracker.example -> c.cdn.example, resolved upstream
    msg = served.ask("responses", "mx1.mail.yahoo.co.jp", "A")
    assert records(msg.answer) == sorted(
        [
            ("mx1.mail.yahoo.co.jp.", 0, "CNAME", "a.example."),
            ("a.example.", 300, "CNAME", "b.tracker.example."),
            ("b.tracker.example.", 300, "CNAME", "c.cdn.example."),
            ("c.cdn.example.", 300, "A", "198.51.100.7"),
        ]
    )
    assert rule_of(msg) == "b-chain"
    assert_dig_agrees(served, "responses", "mx1.mail.yahoo.co.jp", "A")


def test_block_override_ipv4_sinkhole(served: Served):
    msg = served.ask("responses", "mail.example.com", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    assert records(msg.answer) == [("mail.example.com.", 20, "A", "192.0.2.99")]
    assert rule_of(msg) == "b-v4"
    assert_dig_agrees(served, "responses", "mail.example.com", "A")
    for other in ("AAAA", "MX"):  # the other family and other types: NODATA
        assert_blocked(served.ask("responses", "mail.example.com", other), "b-v4", ttl=123)
    assert_dig_agrees(served, "responses", "mail.example.com", "AAAA")


def test_block_override_ipv6_sinkhole(served: Served):
    msg = served.ask("responses", "ns1.example.com", "AAAA")
    assert records(msg.answer) == [("ns1.example.com.", 25, "AAAA", "2001:db8::99")]
    assert rule_of(msg) == "b-v6"
    assert_dig_agrees(served, "responses", "ns1.example.com", "AAAA")
    assert_blocked(served.ask("responses", "ns1.example.com", "A"), "b-v6", ttl=123)
    assert_dig_agrees(served, "responses", "ns1.example.com", "A")


def test_ede_off_and_default_block_ttl(served: Served):
    msg = served.ask("ede_off", "ads.example", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN and msg.answer == []
    assert msg.edns == 0 and ede(msg) == []
    soa = firewall_soa(msg)
    assert soa is not None and soa.ttl == 60 and soa[0].minimum == 60
    assert_dig_agrees(served, "ede_off", "ads.example", "A")


def test_blocked_over_tcp(served: Served):
    q = dns.message.make_query("ads.yahoo.co.jp", "A", use_edns=0)
    msg = dns.query.tcp(q, "127.0.0.1", port=served.ports["responses"], timeout=3.0)
    assert_blocked(msg, "b-nx", dns.rcode.NXDOMAIN, ttl=123)


# --- §3 priorities and terminal actions -------------------------------------------------------


def test_broad_alert_earlier_shadows_a_later_block(served: Served):
    # narrow-block (30) lists mail.example.com, but broad-alert (10, *.example.com) decides
    assert_normal(served, served.ask("walk", "mail.example.com"), "mail.example.com", "A")


def test_broad_allow_earlier_shadows_a_later_block(served: Served):
    name = "alt1.gmail-smtp-in.l.google.com"
    assert_normal(served, served.ask("walk", name), name, "A")


def test_block_earlier_than_a_broad_allow_wins(served: Served):
    assert_blocked(served.ask("walk", "ssm.ap-northeast-1.amazonaws.com"), "aws-block")
    name = "logs.ap-northeast-1.amazonaws.com"
    assert_normal(served, served.ask("walk", name), name, "A")


def test_groups_are_walked_by_priority_not_file_order(served: Served):
    # group late (200) is written first; its catch-all decides only what early (100) leaves
    assert_blocked(served.ask("walk", "gmail.com"), "catch-all", dns.rcode.NXDOMAIN)
    # *.example.com (ALERT) does not cover the apex
    assert_blocked(served.ask("walk", "example.com"), "catch-all", dns.rcode.NXDOMAIN)


# --- §5.1 qtype -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "rule"),
    [
        ("yahoo.co.jp", "MX", None),  # ALLOW for MX only
        ("yahoo.co.jp", "A", "yahoo-all"),
        ("yahoo.co.jp", "TXT", "yahoo-all"),
        ("example.com", "TXT", "ex-txt"),  # qtype TYPE16
        ("example.com", "AAAA", "ex-aaaa"),  # qtype aaaa
        ("example.com", "A", None),
        ("example.com", "MX", None),
    ],
)
def test_qtype_rules(served: Served, name: str, rdtype: str, rule: str | None):
    msg = served.ask("qtype", name, rdtype)
    if rule is None:
        assert_normal(served, msg, name, rdtype)
        assert msg.answer
    else:
        assert_blocked(msg, rule)


# --- client groups ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "name", "rule"),
    [
        ("127.0.0.1", "yahoo.co.jp", "lo4-block"),
        ("127.0.0.1", "gmail.com", None),  # the lan group (10.0.0.0/8 ...) does not apply
        ("127.0.0.1", "example.com", None),
        ("::1", "gmail.com", "lo6-block"),
        ("::1", "yahoo.co.jp", None),
        ("::1", "example.com", None),
    ],
)
def test_client_groups(served: Served, client: str, name: str, rule: str | None):
    msg = served.ask("clients", name, client=client)
    if rule is None:
        assert_normal(served, msg, name, "A")
    else:
        assert_blocked(msg, rule)


# --- §6 redirection: CNAME and DNAME chains from the upstream fixture ---------------------------


def test_inspect_blocks_a_cname_chain_through_a_blocked_name(served: Served):
    # a.example (ALLOW, inspect) -> b.tracker.example (BLOCK nxdomain) -> c.cdn.example
    # the EDE names the target that was blocked, not only the rule
    assert_blocked(
        served.ask("inspect", "a.example"),
        "block-tracker",
        dns.rcode.NXDOMAIN,
        target="b.tracker.example.",
    )
    # google's CDN redirect leaves the allowed domain (CDS#838)
    assert_blocked(
        served.ask("inspect", "cdn-redirect.google.com"),
        "block-akamai",
        target="edge.akamaiedge.net.",
    )


def test_trust_ends_inspection_at_the_allowed_name(served: Served):
    for name in ("a.example", "cdn-redirect.google.com"):
        msg = served.ask("trust", name)
        assert_normal(served, msg, name, "A")
        assert msg.answer[-1].rdtype == dns.rdatatype.A
    # trust applies to the name its rule matched, not to the names it leads to
    assert_blocked(served.ask("trust", "b.tracker.example"), "block-tracker", dns.rcode.NXDOMAIN)


def test_inspect_lets_chains_through_allowed_and_unlisted_names(served: Served):
    # www.google.com -> www3.l.google.com: both allowed
    msg = served.ask("inspect", "www.google.com")
    assert_normal(served, msg, "www.google.com", "A")
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    # an ALERT on a target (mirrors -> wildcard.fedoraproject.org) answers normally
    assert_normal(
        served, served.ask("inspect", "mirrors.fedoraproject.org"), "mirrors.fedoraproject.org", "A"
    )


def test_dname_targets_are_inspected(served: Served):
    # rr.dname.example: DNAME dname.example -> example.com, then CNAME to rr.example.com
    direct = served.direct("rr.dname.example")
    assert [r.rdtype for r in direct.answer][:2] == [dns.rdatatype.DNAME, dns.rdatatype.CNAME]
    # the DNAME's own target comes first in the chain
    for profile in ("inspect", "trust"):
        msg = served.ask(profile, "rr.dname.example")
        assert_blocked(msg, "block-apex", target="example.com.")
    # *.example.com does not cover the DNAME target, only the synthesised CNAME's target
    msg = served.ask("match_wildcard", "rr.dname.example")
    assert_blocked(msg, "wild", target="rr.example.com.")


def test_trust_on_a_chain_target_ends_inspection(served: Served):
    # chain1 -> chain2 (ALLOW) -> chain3 -> www.example.com -> example.com (BLOCK)
    msg = served.ask("inspect", "chain1.example.com")
    assert_blocked(msg, "block-apex", target="example.com.")
    assert_normal(served, served.ask("trust", "chain1.example.com"), "chain1.example.com", "A")
    # without chain2 in the chain, the apex blocks
    msg = served.ask("trust", "chain3.example.com")
    assert_blocked(msg, "block-apex", target="example.com.")


def test_chain_of_an_nxdomain_answer_is_inspected(served: Served):
    # dangling.example.com -> gone.example.com (BLOCK), which does not exist: NXDOMAIN upstream
    assert served.direct("dangling.example.com").rcode() == dns.rcode.NXDOMAIN
    msg = served.ask("inspect", "dangling.example.com")
    assert_blocked(msg, "block-rr", target="gone.example.com.")


# --- bypass signals ---------------------------------------------------------------------------


def test_bypass_signals(served: Served):
    for rdtype in ("A", "AAAA"):
        msg = served.ask("bypass", "use-application-dns.net", rdtype)
        assert msg.rcode() == dns.rcode.NXDOMAIN and msg.answer == []
        assert firewall_soa(msg) is not None
    msg = served.ask("bypass", "_dns.resolver.arpa", "SVCB")
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer == []
    assert firewall_soa(msg) is not None
    # without the option they are ordinary names (the upstream's NXDOMAIN, its SOA)
    msg = served.ask("responses", "_dns.resolver.arpa", "SVCB")
    assert msg.rcode() == dns.rcode.NXDOMAIN and firewall_soa(msg) is None
    # other names are filtered as usual
    assert_blocked(served.ask("bypass", "ads.example"), "b")
    assert_normal(served, served.ask("bypass", "gmail.com"), "gmail.com", "A")


# --- fail closed / fail open ------------------------------------------------------------------


@pytest.mark.parametrize(("rdtype", "missing"), [("A", "missing"), ("AAAA", "broken")])
def test_fail_closed_servfails_while_a_list_cannot_load(served: Served, rdtype: str, missing: str):
    # A reaches the rule of the url list nothing serves, AAAA the rule of the file with a bad line
    msg = served.ask("fail_closed", "yahoo.co.jp", rdtype)
    assert msg.rcode() == dns.rcode.SERVFAIL and msg.answer == []
    assert ede(msg) == [(14, f"domain list '{missing}' is not loaded")]  # Not Ready
    assert dig(served.ports["fail_closed"], "yahoo.co.jp", rdtype).status == "SERVFAIL"


def test_fail_closed_only_where_the_walk_needs_the_list(served: Served):
    # decided before the unloaded lists (ALLOW), or never reaching them (qtype MX)
    assert_normal(served, served.ask("fail_closed", "gmail.com"), "gmail.com", "A")
    assert_normal(served, served.ask("fail_closed", "yahoo.co.jp", "MX"), "yahoo.co.jp", "MX")


@pytest.mark.parametrize(("name", "rdtype"), [("yahoo.co.jp", "A"), ("yahoo.co.jp", "AAAA")])
def test_fail_open_answers_normally(served: Served, name: str, rdtype: str):
    assert_normal(served, served.ask("fail_open", name, rdtype), name, rdtype)
    assert dig(served.ports["fail_open"], name, rdtype).status == "NOERROR"


def test_unloadable_lists_are_logged(served: Served):
    log = served.dnsfw.stderr
    assert "list_load_failed" in log
    assert "does-not-exist.txt" in log
    assert "broken.txt:2" in log and "bad..entry" in log


# --- the scenario (scenario.md §1) with the docstring's example -----------------------------


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("gmail.com", "MX"),
        ("gmail.com", "A"),
        ("gmail-smtp-in.l.google.com", "A"),
        ("alt4.gmail-smtp-in.l.google.com", "A"),
        ("0.amazon.pool.ntp.org", "A"),
        ("ssm.ap-northeast-1.amazonaws.com", "AAAA"),
        ("amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1.amazonaws.com", "A"),
        ("ip-10-0-0-150.ap-northeast-1.compute.internal", "A"),  # the file list
        ("cdn-redirect.google.com", "A"),  # trusted redirection
    ],
)
def test_scenario_allowed(served: Served, name: str, rdtype: str):
    msg = served.ask("scenario", name, rdtype)
    assert_normal(served, msg, name, rdtype)
    assert msg.answer


def test_scenario_gmail_answers(served: Served):
    mx = served.ask("scenario", "gmail.com", "MX")
    assert "5 gmail-smtp-in.l.google.com." in [r.to_text() for r in mx.answer[0]]
    a = served.ask("scenario", "gmail-smtp-in.l.google.com", "A")
    assert records(a.answer) == [("gmail-smtp-in.l.google.com.", 300, "A", "142.250.157.26")]


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("yahoo.co.jp", "MX"),
        ("yahoo.co.jp", "A"),  # Postfix's fallback after the MX
        ("mx1.mail.yahoo.co.jp", "A"),
        ("mirrors.fedoraproject.org", "A"),  # not in the example's lists
    ],
)
def test_scenario_blocked_with_nodata(served: Served, name: str, rdtype: str):
    msg = served.ask("scenario", name, rdtype)
    assert_blocked(msg, "block-rest", dns.rcode.NOERROR)
    # "Host found but no data record of requested type"
    msg = served.ask("scenario", name, rdtype, edns=False)
    assert msg.rcode() == dns.rcode.NOERROR and msg.answer == [] and firewall_soa(msg)


def test_scenario_inspect_blocks_redirect_out_of_google(served: Served):
    # the profile is the docstring's example minus `redirection trust` on allow-google
    assert "ALLOW google   redirection trust" in PROFILES["scenario"]
    assert "ALLOW google\n" in PROFILES["scenario_inspect"]
    msg = served.ask("scenario_inspect", "cdn-redirect.google.com")
    assert_blocked(msg, "block-rest", target="edge.akamaiedge.net.")
    # chains inside *.google.com still resolve
    msg = served.ask("scenario_inspect", "www.google.com")
    assert_normal(served, msg, "www.google.com", "A")
    assert_normal(served, served.ask("scenario_inspect", "gmail.com", "MX"), "gmail.com", "MX")


# --- decisions recorded for the query log (in process) ----------------------------------------

IN_PROCESS = """
        list alert domains rr.example.com *.tracker.example
        list allow domains a.example www.example.com
        list block domains *.cdn.example
        list trusted domains trusted.example
        group g 100 {
            rule allow 10 ALLOW allow
            rule trusted 15 ALLOW trusted redirection trust
            rule alert 20 ALERT alert
            rule block 30 BLOCK block
        }
"""

FIREWALL_BLOCK = """\
.:53 {
    firewall $ARGS {
$BODY
    }
}
"""


def firewall_in_process(tmp_path: Path, body: str, args: str = "") -> Firewall:
    """A Firewall set up as `dnsfw run` does, not started (file lists stay unloaded)."""
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(FIREWALL_BLOCK, ARGS=args, BODY=body))
    config = load(str(conf))
    return next(p for p in config.blocks[0].plugins if isinstance(p, Firewall))


@pytest.fixture
def fw(tmp_path: Path) -> Firewall:
    return firewall_in_process(tmp_path, IN_PROCESS)


def request(name: str, rdtype: str = "A") -> Request:
    data = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
    return parse_request(data, ("127.0.0.1", 40000), "udp", "dns://.:53")


def upstream_answer(*rrs: str, rcode: int = dns.rcode.NOERROR):
    """A next handler answering with these records (presentation lines), and a call counter."""
    calls: list[Request] = []

    async def handler(req: Request) -> Response:
        calls.append(req)
        reply = dns.message.make_response(dns.message.from_wire(req.wire))
        reply.set_rcode(rcode)
        for text in rrs:
            reply.answer.append(dns.rrset.from_text(*text.split(None, 4)))
        return Response(reply.to_wire(), rcode, "upstream")

    return handler, calls


async def test_alert_is_answered_normally_and_recorded(fw: Firewall):
    handler, calls = upstream_answer("rr.example.com. 300 IN A 192.0.2.10")
    req = request("rr.example.com")
    resp = await fw.serve(req, handler)
    assert resp.source == "upstream" and len(calls) == 1
    assert req.meta["firewall"] == Decision("ALERT", "g", "alert", "alert")


async def test_allow_and_no_match_decisions(fw: Firewall):
    handler, _ = upstream_answer("www.example.com. 300 IN A 192.0.2.1")
    req = request("www.example.com")
    await fw.serve(req, handler)
    assert req.meta["firewall"] == Decision("ALLOW", "g", "allow", "allow")
    req = request("other.example")
    resp = await fw.serve(req, upstream_answer()[0])
    assert "firewall" not in req.meta and resp.source == "upstream"


async def test_block_via_chain_is_attributed_to_the_target(fw: Firewall):
    handler, _ = upstream_answer(
        "a.example. 300 IN CNAME b.tracker.example.",
        "b.tracker.example. 300 IN CNAME c.cdn.example.",
        "c.cdn.example. 300 IN A 198.51.100.7",
    )
    req = request("a.example")
    resp = await fw.serve(req, handler)
    assert resp.source == "firewall" and resp.rcode == dns.rcode.NOERROR
    assert req.meta["firewall"] == Decision("BLOCK", "g", "block", "block", "c.cdn.example.", True)
    assert fw.matches[next(r for r, _ in fw.policy.walk if r.name == "block")] == 1


async def test_alert_via_chain_is_recorded_only_without_a_decision(fw: Firewall):
    chain = ("x.example. 300 IN CNAME b.tracker.example.", "b.tracker.example. 300 IN A 192.0.2.5")
    req = request("x.example")
    resp = await fw.serve(req, upstream_answer(*chain)[0])
    assert resp.source == "upstream"
    assert req.meta["firewall"] == Decision(
        "ALERT", "g", "alert", "alert", "b.tracker.example.", True
    )
    # the query's own ALLOW stays the decision; the ALERT target does not replace it
    chain = ("a.example. 300 IN CNAME b.tracker.example.", "b.tracker.example. 300 IN A 192.0.2.5")
    req = request("a.example")
    await fw.serve(req, upstream_answer(*chain)[0])
    assert req.meta["firewall"] == Decision("ALLOW", "g", "allow", "allow")


async def test_trusted_name_skips_inspection(fw: Firewall):
    chain = ("trusted.example. 300 IN CNAME c.cdn.example.", "c.cdn.example. 300 IN A 192.0.2.6")
    req = request("trusted.example")
    resp = await fw.serve(req, upstream_answer(*chain)[0])
    assert resp.source == "upstream"
    assert req.meta["firewall"] == Decision("ALLOW", "g", "trusted", "trusted")


async def test_nxdomain_chain_is_inspected(fw: Firewall):
    # a CNAME into a blocked name whose target does not exist: the chain still names it
    handler, _ = upstream_answer(
        "dangling.example. 300 IN CNAME gone.cdn.example.", rcode=dns.rcode.NXDOMAIN
    )
    req = request("dangling.example")
    resp = await fw.serve(req, handler)
    assert resp.source == "firewall"
    assert req.meta["firewall"].rule == "block" and req.meta["firewall"].via_chain


async def test_fail_open_on_a_chain_target_keeps_the_answer(tmp_path: Path):
    fw = firewall_in_process(
        tmp_path,
        """
        list ok domains a.example
        list missing url http://127.0.0.1:9/missing.txt
        group g 1 {
            rule ok 1 ALLOW ok
            rule m 2 BLOCK missing
        }
        fail open
        """,
    )
    handler, calls = upstream_answer(
        "a.example. 300 IN CNAME b.example.", "b.example. 300 IN A 192.0.2.1"
    )
    resp = await fw.serve(request("a.example"), handler)
    # the target cannot be evaluated: the upstream's answer stands, asked for once
    assert resp.source == "upstream" and len(calls) == 1
    assert fw.fail_counts == {"open": 1, "closed": 0}


async def test_fail_closed_on_a_chain_target(tmp_path: Path):
    fw = firewall_in_process(
        tmp_path,
        """
        list ok domains a.example
        list missing url http://127.0.0.1:9/missing.txt
        group g 1 {
            rule ok 1 ALLOW ok
            rule m 2 BLOCK missing
        }
        """,
    )
    handler, _ = upstream_answer("a.example. 300 IN CNAME b.example.")
    resp = await fw.serve(request("a.example"), handler)
    assert resp.rcode == dns.rcode.SERVFAIL
    msg = dns.message.from_wire(resp.wire)
    assert ede(msg) == [(14, "domain list 'missing' is not loaded")]


async def test_zones_limit_what_is_filtered(tmp_path: Path):
    fw = firewall_in_process(
        tmp_path,
        """
        list all domains *
        group g 1 {
            rule all 1 BLOCK all
        }
        """,
        args="corp.example",
    )
    handler, calls = upstream_answer()
    req = request("www.other.example")
    assert (await fw.serve(req, handler)).source == "upstream" and "firewall" not in req.meta
    for name in ("corp.example", "x.Corp.Example"):
        req = request(name)
        assert (await fw.serve(req, handler)).source == "firewall"
        assert req.meta["firewall"].rule == "all"
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("client", "inside"),
    [
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("::ffff:10.9.9.9", True),  # IPv4-mapped, from a dual-stack socket
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("fe80::1%eth0", True),
        ("not-an-address", False),
    ],
)
def test_client_networks(client: str, inside: bool):
    networks = [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("fe80::/10"),
    ]
    assert ClientSet(networks).contains(client) is inside
