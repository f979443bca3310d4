"""Errors that teach, over the real CLI: a missing brace names the block and where it opened,
typos get a suggestion, a list line in another format names that format, ``lenient`` lists
skip bad lines (counted in ``/v1/lists``), and ``dnsfw check`` warns (exit 0) about rules
that can never match, lists no rule uses and ALLOW rules over ``*``, with file:line."""

from __future__ import annotations

from pathlib import Path

import dns.rcode
import pytest

from tests.kit.api import Api
from tests.kit.corefiles import BLOCK_WHOAMI, corefile
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.servers import GatedList


def check(tmp_path: Path, text: str) -> tuple[int, str, str]:
    conf = tmp_path / "Corefile"
    conf.write_text(text)
    done = run_cli("check", "-conf", str(conf))
    return done.returncode, done.stdout, done.stderr


def test_a_missing_closing_brace_names_the_open_block(tmp_path: Path) -> None:
    text = """\
.:1053 {
    firewall {
        list x domains a.example
        group g 1 {
            rule r 1 BLOCK x
        }
    whoami
}
"""
    status, _, err = check(tmp_path, text)
    conf = tmp_path / "Corefile"
    assert status == 1
    assert err.strip() == (
        f"{conf}:8 - Syntax error: missing '}}': the server block '.:1053' opened at {conf}:1 "
        f"is still open at the end of the file; the '}}' at {conf}:8 closes the block of "
        f"'firewall' opened at {conf}:2"
    )


def test_a_missing_opening_brace_names_the_line_that_needs_it(tmp_path: Path) -> None:
    text = """\
.:1053 {
    firewall
        list x domains a.example
        group g 1 {
            rule r 1 BLOCK x
        }
    }
    whoami
}
"""
    status, _, err = check(tmp_path, text)
    conf = tmp_path / "Corefile"
    assert status == 1
    assert err.strip() == (
        f"{conf}:3 - Error during parsing: Unknown directive 'list' (a property of 'firewall' "
        f"at {conf}:2? then that line needs a '{{')"
    )


FIREWALL = """\
firewall {
    list x domains a.example
    group g 1 {
        rule r 1 BLOCK x
    }
}"""


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("firewal {\n}", "Unknown directive 'firewal' (did you mean 'firewall'?)"),
        (
            FIREWALL.replace("group g", "grup g"),
            "unknown property 'grup' (did you mean 'group'?)",
        ),
        (
            FIREWALL.replace("BLOCK x", "BLOCK x qtyp A"),
            "unknown rule option 'qtyp' (did you mean 'qtype'?)",
        ),
        (
            FIREWALL.replace("list x domains a.example", "list x file l.txt formt hosts"),
            "unknown list option 'formt' (did you mean 'format'?)",
        ),
        (
            FIREWALL.replace("    group g", "    clients 10.0.0.0/8\n    group g"),
            "unknown property 'clients'",  # a group's property: no close match at this level
        ),
        (
            "forward . 127.0.0.1 {\n    max_fail 3\n}",
            "unknown property 'max_fail' (did you mean 'max_fails'?)",
        ),
        (
            "cache {\n    prefech 10\n}",
            "Wrong argument count or unexpected line ending after 'prefech' "
            "(did you mean 'prefetch'?)",
        ),
        ("log {\n    outptu stdout\n}", "unknown property 'outptu' (did you mean 'output'?)"),
        ("health {\n    lameduk 1s\n}", "unknown property 'lameduk' (did you mean 'lameduck'?)"),
    ],
)
def test_typos_get_a_suggestion(tmp_path: Path, lines: str, message: str) -> None:
    status, _, err = check(tmp_path, corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=lines))
    assert status == 1
    assert err.strip().endswith(message), err


def test_a_hosts_line_in_a_route53_list_names_the_format(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("ok.example\n0.0.0.0 ads.example\n||track.example^\n")
    lines = FIREWALL.replace("list x domains a.example", "list x file l.txt")
    status, _, err = check(tmp_path, corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=lines))
    assert status == 1
    assert err.startswith(
        f"plugin/firewall: {tmp_path}/l.txt:2 - Error during parsing: invalid domain list entry "
        "'0.0.0.0 ads.example': contains whitespace (a hosts-format line: give the list "
        "'format hosts')\n"
    )
    assert (
        f"{tmp_path}/l.txt:3 - invalid domain list entry '||track.example^': illegal character "
        "'|' (an adblock rule: give the list 'format adblock')"
    ) in err
    lenient = lines.replace("file l.txt", "file l.txt lenient")
    status, out, err = check(tmp_path, corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=lenient))
    assert status == 0, err
    assert out.endswith("Corefile: OK\n")


LENIENT_URL = """\
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    firewall {
        list feed url $URL lenient
        group g 1 {
            rule block-feed 1 BLOCK feed response nxdomain
        }
    }
    whoami
}
"""


def test_a_lenient_url_list_skips_bad_lines_and_counts_them(dnsfw, tmp_path: Path) -> None:
    body = "bad.w.example\nnot a domain\nworse.w.example\n0.0.0.0 hosted.w.example\n"
    admin = free_port()
    with GatedList(body) as feed:
        feed.released.set()
        d = dnsfw(
            corefile(LENIENT_URL, ADMIN=admin, URL=feed.url),
            env={"DNSFW_STATE_DIR": str(tmp_path / "state")},
        )
        assert d.query("bad.w.example").rcode() == dns.rcode.NXDOMAIN
        assert d.query("worse.w.example").rcode() == dns.rcode.NXDOMAIN
        assert d.query("fine.w.example").rcode() == dns.rcode.NOERROR
    (status,) = Api(admin, token=None).ok("GET", "/v1/lists")["lists"]
    assert (status["status"], status["entries"], status["skipped"]) == ("loaded", 2, 2)
    assert "event='list_downloaded'" in d.stderr and "skipped=2" in d.stderr


CHECKED = """\
.:1053 {
    firewall {
        list google   domains gmail.com *.google.com
        list mail     domains mail.google.com smtp.gmail.com
        list gmail    domains gmail.com
        list spare    domains spare.example
        list all      domains *
        list rest     domains *
        group egress 100 {
            rule allow-google 100 ALLOW google
            rule allow-mail   110 ALLOW mail
            rule gmail-mx     120 BLOCK gmail qtype MX
        }
        group later 200 {
            clients 10.0.0.0/8
            rule again     10 ALERT google qtype A
            rule allow-all 20 ALLOW all
            rule block-all 30 BLOCK rest
        }
        group typed 300 {
            rule mx-only 10 BLOCK all qtype MX
        }
    }
    whoami
}
"""


def test_check_warns_about_rules_that_cannot_match(tmp_path: Path) -> None:
    status, out, err = check(tmp_path, CHECKED)
    conf = tmp_path / "Corefile"
    assert status == 0, err
    assert out.endswith("Corefile: OK\n")
    assert err.splitlines() == [
        f"{conf}:6 - Warning: domain list 'spare' is used by no rule",
        # smtp.gmail.com is in no entry of 'google': allow-mail can still match
        f"{conf}:12 - Warning: rule 'gmail-mx' can never match: rule 'allow-google' (group "
        "'egress', line 10) comes first and matches every name of list 'gmail'",
        f"{conf}:16 - Warning: rule 'again' can never match: rule 'allow-google' (group "
        "'egress', line 10) comes first and matches every name of list 'google'",
        f"{conf}:17 - Warning: rule 'allow-all' ALLOWs every name (clients 10.0.0.0/8): its "
        "list 'all' contains '*', so no later rule can match those queries",
        f"{conf}:18 - Warning: rule 'block-all' can never match: rule 'allow-all' (group "
        "'later', line 17) comes first and matches every name of list 'rest' (clients "
        "10.0.0.0/8)",
    ]
