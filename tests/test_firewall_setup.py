"""The firewall directive's setup: every error with its exact message and file:line, the values
a valid configuration gives, and ``dnsfw check`` on bad list entries (Corefile and files)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import plugins
from plugins.firewall import Firewall
from plugins.firewall.config import DEFAULT_REFRESH
from proxy.config import AppContext, build
from proxy.corefile import CorefileError
from proxy.corefile import parse as parse_corefile
from proxy.names import text_to_wire
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import run_cli

GOOD_GROUP = ["group g 100 {", "    rule r 10 BLOCK l", "}"]

FIREWALL = """\
.:53 {
    firewall {
        $BODY
    }
}
"""


def corefile_text(*body: str) -> str:
    """A server block whose firewall holds ``body``; body line i is Corefile line i + 3."""
    return corefile(FIREWALL, BODY="\n".join(body))


def set_up(text: str, tmp_path: Path | None = None, *, checking: bool = True) -> Firewall:
    filename = str(tmp_path / "Corefile") if tmp_path else "Corefile"
    blocks = parse_corefile(text, filename=filename, directives=plugins.ORDER)
    config = build(blocks, AppContext(conf_path=filename, checking=checking))
    return next(p for p in config.blocks[0].plugins if isinstance(p, Firewall))


def error_of(text: str, tmp_path: Path | None = None) -> str:
    with pytest.raises(CorefileError) as info:
        set_up(text, tmp_path)
    return str(info.value)


def at(line: int, message: str) -> str:
    return f"plugin/firewall: Corefile:{line} - Error during parsing: {message}"


# (body lines inside `firewall { }`, Corefile line of the error, exact message)
ERRORS = [
    # --- lists
    (
        ["list l domains ok.example a..b", *GOOD_GROUP],
        3,
        "invalid domain list entry 'a..b': empty label",
    ),
    (
        ["list l domains ok.example w*.example", *GOOD_GROUP],
        3,
        "invalid domain list entry 'w*.example': '*' is allowed only as the whole leftmost "
        "label ('*.name')",
    ),
    (
        ["list l domains bad!.example", *GOOD_GROUP],
        3,
        "invalid domain list entry 'bad!.example': illegal character '!'",
    ),
    (["list l domains", *GOOD_GROUP], 3, "a 'domains' list needs at least one entry"),
    (
        ["list l domains a.example", "list l domains b.example", *GOOD_GROUP],
        4,
        "domain list 'l' is defined twice",
    ),
    (
        ["list 123 domains a.example", *GOOD_GROUP],
        3,
        "invalid list name '123': use 1-64 letters, digits, '-' or '_' (not only digits)",
    ),
    (
        ["list l dns a.example", *GOOD_GROUP],
        3,
        "unknown list source 'dns' (file, url, feed or domains)",
    ),
    (["list l", *GOOD_GROUP], 3, "Wrong argument count or unexpected line ending after 'list'"),
    (
        ["list l file", *GOOD_GROUP],
        3,
        "Wrong argument count or unexpected line ending after 'list'",
    ),
    (
        ["list l file x.txt format csv", *GOOD_GROUP],
        3,
        "unknown list format 'csv' (one of route53, hosts, adblock)",
    ),
    (["list l file x.txt refresh 1h", *GOOD_GROUP], 3, "unknown list option 'refresh'"),
    (["list l file x.txt colour red", *GOOD_GROUP], 3, "unknown list option 'colour'"),
    (
        ["list l url http://127.0.0.1/l.txt format", *GOOD_GROUP],
        3,
        "Wrong argument count or unexpected line ending after 'list'",
    ),
    (
        ["list l url ftp://example.net/l.txt", *GOOD_GROUP],
        3,
        "not an http(s) URL: 'ftp://example.net/l.txt'",
    ),
    (
        ["list l url http://127.0.0.1/l.txt refresh 500ms", *GOOD_GROUP],
        3,
        "refresh must be at least 1s",
    ),
    (["list l url http://127.0.0.1/l.txt refresh soon", *GOOD_GROUP], 3, "invalid duration 'soon'"),
    # --- groups
    (["list l domains a.example"], 2, "firewall needs at least one group"),
    (
        ["list l domains a.example", *GOOD_GROUP, "group h 100 {", "    rule r 10 BLOCK l", "}"],
        7,
        "group priority 100 is already used by group 'g'",
    ),
    (
        ["list l domains a.example", *GOOD_GROUP, "group g 200 {", "    rule r 10 BLOCK l", "}"],
        7,
        "group 'g' is defined twice",
    ),
    (
        ["list l domains a.example", "group g {", "    rule r 10 BLOCK l", "}"],
        4,
        "Wrong argument count or unexpected line ending after 'group'",
    ),
    (
        ["list l domains a.example", "group g first {", "    rule r 10 BLOCK l", "}"],
        4,
        "'first' is not an integer",
    ),
    (
        ["list l domains a.example", "group g -1 {", "    rule r 10 BLOCK l", "}"],
        4,
        "-1 is out of range (0 to 2147483647)",
    ),
    (
        ["list l domains a.example", "group g.1 100 {", "    rule r 10 BLOCK l", "}"],
        4,
        "invalid group name 'g.1': use 1-64 letters, digits, '-' or '_' (not only digits)",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    colour red", "}"],
        5,
        "unknown property 'colour'",
    ),
    # --- client networks
    (
        ["list l domains a.example", "group g 100 {", "    clients 10.0.0.0/33", "}"],
        5,
        "invalid client network '10.0.0.0/33'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    clients 10.0.0.0/8 lan", "}"],
        5,
        "invalid client network 'lan'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    clients 2001:db8::/129", "}"],
        5,
        "invalid client network '2001:db8::/129'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    clients", "}"],
        5,
        "Wrong argument count or unexpected line ending after 'clients'",
    ),
    # --- rules
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK nope", "}"],
        5,
        "unknown domain list 'nope' (define it with 'list')",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 DENY l", "}"],
        5,
        "unknown action 'DENY' (ALLOW, ALERT or BLOCK)",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK", "}"],
        5,
        "Wrong argument count or unexpected line ending after 'rule'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype", "}"],
        5,
        "Wrong argument count or unexpected line ending after 'rule'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r ten BLOCK l", "}"],
        5,
        "'ten' is not an integer",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 2147483648 BLOCK l", "}"],
        5,
        "2147483648 is out of range (0 to 2147483647)",
    ),
    (
        ["list l domains a.example", "group g 100 {", f"    rule {'r' * 65} 10 BLOCK l", "}"],
        5,
        f"invalid rule name '{'r' * 65}': use 1-64 letters, digits, '-' or '_' (not only digits)",
    ),
    (
        [
            "list l domains a.example",
            "list m domains b.example",
            "group g 100 {",
            "    rule r1 10 BLOCK l",
            "    rule r2 10 BLOCK m",
            "}",
        ],
        7,
        "rule priority 10 is already used by rule 'r1' in group 'g'",
    ),
    (
        [
            "list l domains a.example",
            "list m domains b.example",
            "group g 100 {",
            "    rule r 10 BLOCK l",
            "    rule r 20 BLOCK m",
            "}",
        ],
        7,
        "rule 'r' is defined twice in group 'g'",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r1 10 BLOCK l",
            "    rule r2 20 ALLOW l",
            "}",
        ],
        6,
        "rule 'r2' uses list 'l' with the same qtype as rule 'r1' in group 'g'",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r1 10 BLOCK l qtype A",
            "    rule r2 20 ALLOW l qtype a",
            "}",
        ],
        6,
        "rule 'r2' uses list 'l' with the same qtype as rule 'r1' in group 'g'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l colour red", "}"],
        5,
        "unknown rule option 'colour'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l response drop", "}"],
        5,
        "'drop' is not one of nodata, nxdomain, override",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l redirection follow",
            "}",
        ],
        5,
        "'follow' is not one of inspect, trust",
    ),
    # response only on BLOCK
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 ALLOW l response nxdomain",
            "}",
        ],
        5,
        "'response' applies only to BLOCK rules, not ALLOW",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 ALLOW l response nodata", "}"],
        5,
        "'response' applies only to BLOCK rules, not ALLOW",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 alert l response override x.example",
            "}",
        ],
        5,
        "'response' applies only to BLOCK rules, not ALERT",
    ),
    # qtype
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype FOO", "}"],
        5,
        "unknown query type 'FOO'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype TYPE65536", "}"],
        5,
        "unknown query type 'TYPE65536'",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype TYPE65535", "}"],
        5,
        "query type 'TYPE65535' cannot be matched",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype TYPE0", "}"],
        5,
        "query type 'TYPE0' cannot be matched",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l qtype OPT", "}"],
        5,
        "query type 'OPT' cannot be matched",
    ),
    # override target and ttl
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override",
            "}",
        ],
        5,
        "'response override' needs a TARGET (domain or IP address)",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override a..b",
            "}",
        ],
        5,
        "invalid override target 'a..b': empty label",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override *.sink.example",
            "}",
        ],
        5,
        "invalid override target '*.sink.example': wildcards are not names",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override sink.example ttl 604801",
            "}",
        ],
        5,
        "604801 is out of range (0 to 604800)",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override sink.example ttl -1",
            "}",
        ],
        5,
        "-1 is out of range (0 to 604800)",
    ),
    (
        [
            "list l domains a.example",
            "group g 100 {",
            "    rule r 10 BLOCK l response override sink.example ttl 1h",
            "}",
        ],
        5,
        "'1h' is not an integer",
    ),
    (
        ["list l domains a.example", "group g 100 {", "    rule r 10 BLOCK l ttl 30", "}"],
        5,
        "'ttl' applies only to 'response override' (see block_ttl)",
    ),
    # --- options
    (
        ["list l domains a.example", *GOOD_GROUP, "block_ttl 604801"],
        7,
        "604801 is out of range (0 to 604800)",
    ),
    (
        ["list l domains a.example", *GOOD_GROUP, "block_ttl"],
        7,
        "Wrong argument count or unexpected line ending after 'block_ttl'",
    ),
    (
        ["list l domains a.example", *GOOD_GROUP, "fail maybe"],
        7,
        "'maybe' is not one of open, closed",
    ),
    (["list l domains a.example", *GOOD_GROUP, "ede yes"], 7, "'yes' is not one of on, off"),
    (
        ["list l domains a.example", *GOOD_GROUP, "bypass_signals"],
        7,
        "Wrong argument count or unexpected line ending after 'bypass_signals'",
    ),
    (["list l domains a.example", *GOOD_GROUP, "colour red"], 7, "unknown property 'colour'"),
]


@pytest.mark.parametrize(("body", "line", "message"), ERRORS, ids=[e[2][:60] for e in ERRORS])
def test_setup_errors(body: list[str], line: int, message: str):
    assert error_of(corefile_text(*body)) == at(line, message)


def test_firewall_needs_a_block():
    assert error_of(".:53 {\n    firewall\n}\n") == at(
        2, "firewall needs a block with at least one group"
    )


def test_once_per_server_block():
    body = corefile_text("list l domains a.example", *GOOD_GROUP)
    twice = body.replace(
        "    }\n}\n",
        "    }\n    firewall {\n        list l domains a.example\n"
        "        group g 1 {\n            rule r 1 BLOCK l\n        }\n    }\n}\n",
    )
    assert error_of(twice) == at(8, "this plugin can only be used once per Server Block")


# --- valid configurations ------------------------------------------------------------------


def test_defaults(tmp_path: Path):
    fw = set_up(corefile_text("list l domains a.example", *GOOD_GROUP), tmp_path)
    spec = fw.spec
    assert spec.zones == (".",)
    assert (spec.block_ttl, spec.fail_open, spec.ede, spec.bypass_signals) == (
        60,
        False,
        True,
        False,
    )
    (rule,) = fw.policy.groups[0].rules
    assert (rule.action, rule.qtype, rule.trust, rule.response.kind) == (
        "BLOCK",
        None,
        False,
        "nodata",
    )
    assert (spec.file, spec.line) == (str(tmp_path / "Corefile"), 2)


def test_options_and_rule_settings(tmp_path: Path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "f.txt").write_text("f.example\n")
    fw = set_up(
        corefile_text(
            "list f file lists/f.txt",
            "list h file /etc/hosts format hosts",
            "list u url https://lists.example/u.txt refresh 90m format adblock",
            "list v url http://127.0.0.1:8080/v.txt",
            "list d domains B.Example. *.C.example bücher.example *",
            "group g 100 {",
            "    clients 10.0.0.0/8 192.0.2.7 2001:db8::/32",
            "    rule r-nx 5 block d response NXDOMAIN",
            "    rule r-cname 10 BLOCK f response override Sink.Example. ttl 604800",
            "    rule r-v4 20 BLOCK u response override 192.0.2.1",
            "    rule r-v6 30 BLOCK v response override 2001:DB8::1 ttl 0",
            "    rule r-mx 40 Allow d qtype mx redirection TRUST",
            "    rule r-type 50 ALERT d qtype TYPE65534",
            "}",
            "block_ttl 0",
            "fail open",
            "ede off",
            "bypass_signals on",
        ),
        tmp_path,
        checking=False,
    )
    spec = fw.spec
    assert (spec.block_ttl, spec.fail_open, spec.ede, spec.bypass_signals) == (0, True, False, True)
    lists = {s.name: s for s in spec.lists}
    assert lists["f"].path == str(tmp_path / "lists" / "f.txt") and lists["f"].fmt == "route53"
    assert lists["h"].path == "/etc/hosts" and lists["h"].fmt == "hosts"
    assert (lists["u"].url, lists["u"].refresh, lists["u"].fmt) == (
        "https://lists.example/u.txt",
        5400.0,
        "adblock",
    )
    assert lists["v"].refresh == DEFAULT_REFRESH == 4 * 3600
    assert lists["d"].entries == ("b.example", "*.c.example", "xn--bcher-kva.example", "*")
    (group,) = spec.groups
    assert group.clients == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    rules = {r.name: r for r in group.rules}
    assert rules["r-nx"].action == "BLOCK" and rules["r-nx"].response.kind == "nxdomain"
    cname = rules["r-cname"].response
    assert (cname.kind, cname.target_name, cname.target_wire, cname.ttl) == (
        "override",
        "sink.example.",
        text_to_wire("sink.example"),
        604800,
    )
    assert (rules["r-v4"].response.target_ip, rules["r-v4"].response.ttl) == ("192.0.2.1", 0)
    assert rules["r-v6"].response.target_ip == "2001:db8::1"
    assert (rules["r-mx"].action, rules["r-mx"].qtype, rules["r-mx"].trust) == ("ALLOW", 15, True)
    assert rules["r-type"].qtype == 65534 and not rules["r-type"].trust


def test_same_list_with_other_qtypes_and_in_other_groups(tmp_path: Path):
    fw = set_up(
        corefile_text(
            "list l domains a.example",
            "group g 100 {",
            "    rule any 10 BLOCK l",
            "    rule a 20 ALLOW l qtype A",
            "    rule mx 30 ALLOW l qtype MX",
            "}",
            "group h 200 {",
            "    rule again 10 BLOCK l",
            "}",
            "group empty 300 {",
            "}",
        ),
        tmp_path,
    )
    assert [(r.group, r.name) for r, _ in fw.policy.walk] == [
        ("g", "any"),
        ("g", "a"),
        ("g", "mx"),
        ("h", "again"),
    ]


def test_walk_order_is_by_priority_not_file_order(tmp_path: Path):
    fw = set_up(
        corefile_text(
            "list l domains a.example",
            "list m domains b.example",
            "group late 300 {",
            "    rule z 1 BLOCK l",
            "}",
            "group early 20 {",
            "    rule second 900 BLOCK l",
            "    rule first 0 ALLOW m",
            "}",
        ),
        tmp_path,
    )
    assert [r.name for r, _ in fw.policy.walk] == ["first", "second", "z"]


def test_zones_limit_the_firewall(tmp_path: Path):
    text = corefile_text("list l domains *", *GOOD_GROUP).replace(
        "firewall {", "firewall Example.ORG 10.0.0.0/8 {"
    )
    fw = set_up(text, tmp_path)
    assert fw.spec.zones == ("example.org.", "10.in-addr.arpa.")


# --- dnsfw check: bad list entries with file and line ---------------------------------------


def write_corefile(tmp_path: Path, *body: str) -> Path:
    path = tmp_path / "Corefile"
    path.write_text(corefile_text(*body))
    return path


def test_check_reports_a_bad_file_list_line_with_file_and_line(tmp_path: Path):
    (tmp_path / "lists").mkdir()
    bad = tmp_path / "lists" / "internal.txt"
    bad.write_text("good.example\n# comment\nbad..entry\nok.example\nx y\n")
    conf = write_corefile(
        tmp_path,
        "list internal file lists/internal.txt",
        "group g 1 {",
        "    rule r 1 BLOCK internal",
        "}",
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"plugin/firewall: {bad}:3 - ")
    assert lines[0].endswith("invalid domain list entry 'bad..entry': empty label")
    # every bad line is reported, each with its own line number
    assert lines[1] == f"{bad}:5 - invalid domain list entry 'x y': contains whitespace"
    assert "OK" not in result.stdout


def test_check_reports_a_bad_hosts_line(tmp_path: Path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("0.0.0.0 ads.example\nnot-an-address ads2.example\n")
    conf = write_corefile(
        tmp_path, f"list h file {hosts} format hosts", "group g 1 {", "    rule r 1 BLOCK h", "}"
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert result.stderr.startswith(f"plugin/firewall: {hosts}:2 - ")
    assert "expected 'ADDRESS NAME...' with an IP address" in result.stderr


def test_check_reports_a_bad_inline_entry_at_its_corefile_line(tmp_path: Path):
    conf = write_corefile(
        tmp_path, "list ok domains a.example", "list l domains ok.example a..b", *GOOD_GROUP
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"plugin/firewall: {conf}:4 - Error during parsing: "
        "invalid domain list entry 'a..b': empty label"
    )


def test_check_reports_an_unreadable_file_list(tmp_path: Path):
    conf = write_corefile(tmp_path, "list l file missing.txt", *GOOD_GROUP)
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert result.stderr.startswith(f"plugin/firewall: {conf}:")
    assert "cannot read list 'l'" in result.stderr and "missing.txt" in result.stderr


def test_check_accepts_a_good_configuration(tmp_path: Path):
    (tmp_path / "l.txt").write_text("# a list\n*.example.com\nexample.com.\n_dmarc.example.org\n")
    conf = write_corefile(tmp_path, "list l file l.txt", *GOOD_GROUP)
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"{conf}: OK")
