"""``dnsfw explain``: the walk for one query, the decision and the answer a client would get.

Outputs are compared line by line with runs of spaces collapsed (the columns are padding).
"""

from __future__ import annotations

import re
from pathlib import Path

import dns.message
import pytest

from commands import explain
from plugins.firewall.explain import describe_reply
from proxy.config import load
from proxy.request import parse
from tests.kit.dnsfw import run_cli

COREFILE = """\
.:1053 {
    firewall {
        list google   domains gmail.com *.google.com
        list all      domains *
        list lan-only domains *.internal
        list yahoo    domains yahoo.co.jp
        list sink     domains ads.example
        group egress 101 {
            rule yahoo-mx     90  ALLOW yahoo qtype MX
            rule allow-google 100 ALLOW google redirection trust
            rule sinkhole     200 BLOCK sink response override 192.0.2.1 ttl 5
            rule block-rest   900 BLOCK all
        }
        group lan 50 {
            clients 10.0.0.0/8 fd00::/8
            rule lan-block 10 BLOCK lan-only response nxdomain
        }
        block_ttl 30
    }
}
corp.example:1053 {
    firewall {
        list ads domains *.ads.corp.example
        group audit 1 {
            rule watch-ads 1 ALERT ads
        }
        ede off
    }
}
"""

DEPENDS = (
    "redirection inspect: the decision depends on the answer, whose CNAME/DNAME targets are "
    "evaluated too (explain --resolve asks the upstream and decides on them)"
)
SKIP_LAN = (
    "group lan (priority 50, clients 10.0.0.0/8 fd00::/8)",
    "rule lan-block BLOCK list lan-only skipped: client not in the group's networks",
)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(COREFILE)
    return path


def explain_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert explain.main(list(argv)) == 0
    out = capsys.readouterr().out
    return [re.sub(r"\s+", " ", line.strip()) for line in out.splitlines()]


def test_block(conf: Path, capsys: pytest.CaptureFixture[str]):
    assert explain_lines(capsys, "-conf", str(conf), "yahoo.co.jp", "A") == [
        "query: yahoo.co.jp. A from 127.0.0.1",
        f"dns://:1053: server block {conf}:1 (firewall)",
        f"firewall ({conf}:2), fail closed",
        *SKIP_LAN,
        "group egress (priority 101)",
        "rule yahoo-mx ALLOW list yahoo skipped: qtype differs",
        "rule allow-google ALLOW list google no match",
        "rule sinkhole BLOCK list sink no match",
        "rule block-rest BLOCK list all match",
        "decision: BLOCK by rule block-rest (group egress, list all)",
        "answer: NOERROR, no answer (NODATA); SOA dnsfw.invalid. in authority, TTL 30; "
        "EDE 15 (Blocked) \"blocked by dnsfw rule 'block-rest' (group 'egress', list 'all')\" "
        "to EDNS clients",
    ]


def test_allow_with_trust(conf: Path, capsys: pytest.CaptureFixture[str]):
    lines = explain_lines(capsys, "-conf", str(conf), "WWW.Google.com.", "AAAA")
    assert lines[0] == "query: www.google.com. AAAA from 127.0.0.1"
    assert lines[3:] == [
        *SKIP_LAN,
        "group egress (priority 101)",
        "rule yahoo-mx ALLOW list yahoo skipped: qtype differs",
        "rule allow-google ALLOW list google match",
        "decision: ALLOW by rule allow-google (group egress, list google)",
        "answer: the upstream's answer, unchanged",
        "redirection trust: CNAME/DNAME targets in the answer are not inspected",
    ]


def test_qtype_skip_and_inspect_note(conf: Path, capsys: pytest.CaptureFixture[str]):
    lines = explain_lines(capsys, "-conf", str(conf), "yahoo.co.jp", "MX")
    assert lines[3:] == [
        *SKIP_LAN,
        "group egress (priority 101)",
        "rule yahoo-mx ALLOW list yahoo match",
        "decision: ALLOW by rule yahoo-mx (group egress, list yahoo)",
        "answer: the upstream's answer, unchanged",
        DEPENDS,
    ]


@pytest.mark.parametrize("client", ["10.1.2.3", "fd00::53"])
def test_client_group_applies(conf: Path, capsys: pytest.CaptureFixture[str], client: str):
    lines = explain_lines(capsys, "-conf", str(conf), "host.internal", "--client", client)
    assert lines[0] == f"query: host.internal. A from {client}"
    assert lines[3:] == [
        "group lan (priority 50, clients 10.0.0.0/8 fd00::/8)",
        "rule lan-block BLOCK list lan-only match",
        "decision: BLOCK by rule lan-block (group lan, list lan-only)",
        "answer: NXDOMAIN, no answer; SOA dnsfw.invalid. in authority, TTL 30; EDE 15 (Blocked) "
        "\"blocked by dnsfw rule 'lan-block' (group 'lan', list 'lan-only')\" to EDNS clients",
    ]


def test_client_group_skipped(conf: Path, capsys: pytest.CaptureFixture[str]):
    lines = explain_lines(capsys, "-conf", str(conf), "host.internal", "--client", "192.0.2.8")
    assert lines[3:5] == list(SKIP_LAN)
    assert lines[-2] == "decision: BLOCK by rule block-rest (group egress, list all)"


@pytest.mark.parametrize(
    ("rdtype", "answer"),
    [
        (
            "A",
            'answer: NOERROR, A 192.0.2.1 (TTL 5); EDE 15 (Blocked) "blocked by dnsfw rule '
            "'sinkhole' (group 'egress', list 'sink')\" to EDNS clients",
        ),
        (
            "AAAA",
            "answer: NOERROR, no answer (NODATA); SOA dnsfw.invalid. in "
            "authority, TTL 30; EDE 15 (Blocked) \"blocked by dnsfw rule 'sinkhole' (group "
            "'egress', list 'sink')\" to EDNS clients",
        ),
    ],
)
def test_sinkhole_answer(conf: Path, capsys: pytest.CaptureFixture[str], rdtype: str, answer: str):
    lines = explain_lines(capsys, "-conf", str(conf), "ads.example", rdtype)
    assert lines[-2:] == [
        "decision: BLOCK by rule sinkhole (group egress, list sink)",
        answer,
    ]


def test_no_match(conf: Path, capsys: pytest.CaptureFixture[str]):
    lines = explain_lines(capsys, "-conf", str(conf), "www.corp.example")
    assert lines == [
        "query: www.corp.example. A from 127.0.0.1",
        f"dns://:1053: server block {conf}:21 (firewall)",
        f"firewall ({conf}:22), fail closed",
        "group audit (priority 1)",
        "rule watch-ads ALERT list ads no match",
        "decision: no rule matches: the query resolves normally",
        DEPENDS,
    ]


def test_alert_answer_and_ede_off(conf: Path, capsys: pytest.CaptureFixture[str]):
    lines = explain_lines(capsys, "-conf", str(conf), "x.ads.corp.example")
    assert lines[-3:] == [
        "decision: ALERT by rule watch-ads (group audit, list ads)",
        "answer: the upstream's answer, unchanged (logged as ALERT)",
        DEPENDS,
    ]


def test_list_not_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # a url list that was never downloaded (no disk copy): what a query would get now
    state = tmp_path / "state"
    conf = tmp_path / "Corefile"
    conf.write_text(
        ".:1053 {\n    firewall {\n        list u url http://127.0.0.1:9/u.txt\n"
        "        group g 1 {\n            rule r 1 BLOCK u\n        }\n    }\n}\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNSFW_STATE_DIR", str(state))
        mp.delenv("STATE_DIRECTORY", raising=False)
        lines = explain_lines(capsys, "-conf", str(conf), "example.com")
    assert lines[-1] == "domain list 'u' is not loaded: answer SERVFAIL (fail closed)"


def test_errors_exit_1(tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]):
    assert explain.main(["-conf", str(conf), "example.com", "NOTATYPE"]) == 1
    assert capsys.readouterr().err == "dnsfw explain: unknown query type 'NOTATYPE'\n"
    bad = tmp_path / "bad"
    bad.write_text(".:1053 {\n    firewall {\n        list l domains a..b\n    }\n}\n")
    assert explain.main(["-conf", str(bad), "example.com"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"plugin/firewall: {bad}:3 - Error during parsing: "
        "invalid domain list entry 'a..b': empty label"
    )


def test_through_the_dnsfw_command(conf: Path):
    result = run_cli("explain", "-conf", str(conf), "gmail.com", "MX", "--client", "10.9.9.9")
    assert result.returncode == 0, result.stderr
    assert "query: gmail.com. MX from 10.9.9.9" in result.stdout
    assert "decision: ALLOW by rule allow-google (group egress, list google)" in result.stdout


def test_explain_maps_international_names_like_list_entries(tmp_path):
    from tests.kit.dnsfw import run_cli

    conf = tmp_path / "Corefile"
    conf.write_text(
        ".:53 {\n firewall {\n  list idn domains faß.de\n  group g 1 {\n"
        "   rule r 1 BLOCK idn\n  }\n }\n}\n"
    )
    result = run_cli("explain", "-conf", str(conf), "faß.de", "A")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("query: xn--fa-hia.de. A from 127.0.0.1")
    assert "decision: BLOCK by rule r (group g, list idn)" in result.stdout


@pytest.mark.parametrize(
    ("name", "rdtype", "client"),
    [
        ("yahoo.co.jp", "A", "127.0.0.1"),  # NODATA with the SOA and an EDE
        ("ads.example", "A", "127.0.0.1"),  # the sinkhole's address
        ("ads.example", "AAAA", "127.0.0.1"),  # NODATA: the sinkhole is IPv4
        ("printer.internal", "A", "10.1.2.3"),  # NXDOMAIN for the LAN group
    ],
)
async def test_the_answer_shown_is_the_reply_the_firewall_sends(conf, name, rdtype, client):
    """explain renders the reply the query path builds: the same bytes, not a restatement."""
    config = load(str(conf), checking=True)
    (firewall,) = [p for p in config.blocks[0].plugins if p.name == "firewall"]
    await firewall.start()
    try:
        query = dns.message.make_query(name, rdtype, use_edns=0)
        req = parse(query.to_wire(), (client, 5353), "udp", "test")

        async def upstream(_req):
            raise AssertionError("a blocked query never goes upstream")

        served = await firewall.serve(req, upstream)
        shown = firewall.explain(req.qname_wire, req.qtype, client)
    finally:
        await firewall.stop()
    assert shown.decision is not None and shown.decision.action == "BLOCK"
    assert shown.answer == describe_reply(served.wire)


# --- --resolve: the chain decision from the upstream's answer ------------------------------

SEED_ALLOWLIST = """\
.:1053 {
    firewall {
        list seen domains mirrors.fedoraproject.org *.google.com
        list all  domains *
        group seed 100 {
            rule allow-seen 1   ALLOW seen
            rule block-all  100 BLOCK all
        }
    }
    forward . $UPSTREAM
}
"""


@pytest.fixture
def seed_conf(tmp_path: Path, upstream) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(SEED_ALLOWLIST.replace("$UPSTREAM", upstream.address))
    return path


def test_resolve_shows_the_block_on_a_cname_target(seed_conf, capsys, upstream):
    """The issue's yum case: the name is allowed, its CNAME target is blocked by the
    catch-all; explain asks the block's forward upstream and names the target."""
    lines = explain_lines(
        capsys, "-conf", str(seed_conf), "mirrors.fedoraproject.org", "AAAA", "--resolve"
    )
    assert lines[2:] == [
        f"answer from {upstream.address}, CNAME/DNAME targets: wildcard.fedoraproject.org.",
        f"firewall ({seed_conf}:2), fail closed",
        "group seed (priority 100)",
        "rule allow-seen ALLOW list seen match",
        "CNAME/DNAME target wildcard.fedoraproject.org.",
        "group seed (priority 100)",
        "rule allow-seen ALLOW list seen no match",
        "rule block-all BLOCK list all match",
        "decision: BLOCK by rule block-all (group seed, list all) "
        "on the CNAME/DNAME target wildcard.fedoraproject.org.",
        "answer: NOERROR, no answer (NODATA); SOA dnsfw.invalid. in authority, TTL 60; "
        "EDE 15 (Blocked) \"blocked by dnsfw rule 'block-all' (group 'seed', list 'all') "
        'on the CNAME/DNAME target wildcard.fedoraproject.org." to EDNS clients',
    ]


def test_without_resolve_the_verdict_depends_on_the_answer(seed_conf, capsys):
    lines = explain_lines(capsys, "-conf", str(seed_conf), "mirrors.fedoraproject.org", "AAAA")
    assert lines[-3:] == [
        "decision: ALLOW by rule allow-seen (group seed, list seen)",
        "answer: the upstream's answer, unchanged",
        DEPENDS,
    ]


def test_resolve_with_a_chain_that_changes_nothing(seed_conf, capsys, upstream):
    # www.google.com -> www3.l.google.com: both allowed; --server names the upstream itself
    argv = ["-conf", str(seed_conf), "www.google.com", "--resolve", "--server", upstream.address]
    lines = explain_lines(capsys, *argv)
    assert lines[2] == f"answer from {upstream.address}, CNAME/DNAME targets: www3.l.google.com."
    assert lines[-3:] == [
        "decision: ALLOW by rule allow-seen (group seed, list seen)",
        "answer: the upstream's answer, unchanged",
        "redirection inspect: no CNAME/DNAME target of the answer changes the decision",
    ]
    lines = explain_lines(capsys, "-conf", str(seed_conf), "x.google.com", "--resolve")
    assert lines[2] == f"answer from {upstream.address}, CNAME/DNAME targets: (none)"
    assert lines[-1] == "redirection inspect: the answer has no CNAME/DNAME target"


def test_resolve_needs_an_upstream(conf: Path, capsys: pytest.CaptureFixture[str]):
    assert explain.main(["-conf", str(conf), "www.google.com", "--resolve"]) == 1
    assert capsys.readouterr().err == (
        f"dnsfw explain: --resolve: no forward in the server block {conf}:1 handles "
        "www.google.com.: give --server ADDR\n"
    )
    assert explain.main(["-conf", str(conf), "a.example", "--resolve", "--server", "nowhere"]) == 1
    assert capsys.readouterr().err == "dnsfw explain: --server: not an address: 'nowhere'\n"
