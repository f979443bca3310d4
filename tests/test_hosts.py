"""The ``hosts`` plugin as CoreDNS's: entries from a file and inline lines, A/AAAA/PTR answers,
NODATA for other types of a known name, SERVFAIL or fallthrough for unknown ones, wildcards,
reload on change, its metrics and its setup errors; and a home-router Corefile (hosts +
forward + cache + log + firewall) answering as CoreDNS would, through dig."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

import plugins.hosts as hosts_plugin
from tests.kit.api import Api
from tests.kit.checks import docstring_examples, setup_error
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, wait_http
from tests.kit.tools import dig

HOSTS = """\
# The following lines are desirable for IPv4 capable hosts
127.0.0.1       localhost
192.168.1.10    example.com            example   # a comment
10.0.0.1        example.org
::1             localhost ip6-localhost ip6-loopback
fdfc:a744:27b5:3b0e::1  example.com example
fe80::1%eth0    linklocal.example.org
192.168.1.20    *.wild.example.net
192.168.1.21    a.wild.example.net
not-an-address  broken.example.org
10.0.0.5
"""


def rrs(reply: dns.message.Message) -> list[str]:
    return sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
        for rrset in reply.answer
        for rd in rrset
    )


def ordered(reply: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in reply.answer for rd in rrset]


@pytest.fixture
def served(dnsfw, tmp_path: Path):
    (tmp_path / "example.hosts").write_text(HOSTS)
    return dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    hosts example.hosts {
        10.0.0.2 example.org inline.example.org
        ttl 600
        reload 0
    }
}
"""
    )


def test_a_aaaa_from_the_file_then_the_inline_lines(served):
    reply = served.query("example.org", "A")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    assert ordered(reply) == ["10.0.0.1", "10.0.0.2"]  # the file's, then the inline one
    assert rrs(reply)[0].startswith("example.org. 600 A")
    assert ordered(served.query("example", "A")) == ["192.168.1.10"]  # a bare alias
    assert ordered(served.query("EXAMPLE.com", "AAAA")) == ["fdfc:a744:27b5:3b0e::1"]
    assert ordered(served.query("ip6-loopback", "AAAA")) == ["::1"]
    assert ordered(served.query("linklocal.example.org", "AAAA")) == ["fe80::1"]  # zone dropped


def test_other_types_of_a_known_name_are_nodata(served):
    for name, rdtype in [("example.org", "MX"), ("example.org", "AAAA"), ("ip6-localhost", "A")]:
        reply = served.query(name, rdtype)
        assert reply.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert reply.flags & dns.flags.AA
        assert reply.answer == [] and reply.authority == []


def test_an_unknown_name_is_servfail_without_fallthrough(served):
    # CoreDNS has no SOA for an NXDOMAIN here: hosts.go answers SERVFAIL
    for name in ("nope.example.org", "broken.example.org", "wild.example.net"):
        assert served.query(name, "A").rcode() == dns.rcode.SERVFAIL, name


def test_wildcards_match_one_label_after_the_exact_names(served):
    assert ordered(served.query("x.wild.example.net", "A")) == ["192.168.1.20"]
    assert ordered(served.query("a.wild.example.net", "A")) == ["192.168.1.21"]
    assert served.query("deep.x.wild.example.net", "A").rcode() == dns.rcode.SERVFAIL
    assert served.query("x.wild.example.net", "AAAA").answer == []  # a name it knows: NODATA
    # wildcards make no PTR
    assert ordered(served.query("21.1.168.192.in-addr.arpa", "PTR")) == ["a.wild.example.net."]
    assert served.query("20.1.168.192.in-addr.arpa", "PTR").rcode() == dns.rcode.SERVFAIL


def test_ptr_for_every_name_of_an_address(served):
    assert ordered(served.query("10.1.168.192.in-addr.arpa", "PTR")) == [
        "example.com.",
        "example.",
    ]
    assert ordered(served.query("2.0.0.10.in-addr.arpa", "PTR")) == [
        "example.org.",
        "inline.example.org.",
    ]
    v6 = dns.reversename.from_address("fdfc:a744:27b5:3b0e::1").to_text()
    assert ordered(served.query(v6, "PTR")) == ["example.com.", "example."]
    reply = served.query("1.0.0.127.in-addr.arpa", "PTR")
    assert reply.flags & dns.flags.AA and rrs(reply) == [
        "1.0.0.127.in-addr.arpa. 600 PTR localhost."
    ]


def test_dig_sees_an_authoritative_answer(served):
    out = dig(served.port, "example.org", "A", "+norec")
    assert "status: NOERROR" in out and "flags: qr aa;" in out, out
    assert "example.org.\t\t600\tIN\tA\t10.0.0.1" in out, out


def test_zones_limit_what_it_answers(dnsfw, tmp_path: Path):
    (tmp_path / "example.hosts").write_text(HOSTS)
    d = dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    hosts example.hosts example.org {
        no_reverse
    }
    whoami
}
"""
    )
    assert ordered(d.query("example.org", "A")) == ["10.0.0.1"]
    # example.com is outside the zones: its entries are ignored and whoami answers
    other = d.query("example.com", "A")
    assert other.answer == [] and len(other.additional) == 2
    assert d.query("nope.example.org", "A").rcode() == dns.rcode.SERVFAIL
    # no_reverse: the PTR query goes to whoami
    ptr = d.query("1.0.0.10.in-addr.arpa", "PTR")
    assert ptr.answer == [] and len(ptr.additional) == 2


def test_fallthrough_and_fallthrough_unsupported(dnsfw, tmp_path: Path):
    d = dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    hosts {
        10.0.0.1 a.example.org a.example.net
        fallthrough example.org
        fallthrough_unsupported
    }
    whoami
}
"""
    )
    assert ordered(d.query("a.example.org", "A")) == ["10.0.0.1"]
    whoami = d.query("b.example.org", "A")  # no entry, in the fallthrough zones
    assert whoami.answer == [] and len(whoami.additional) == 2
    assert d.query("b.example.net", "A").rcode() == dns.rcode.SERVFAIL  # not in them
    txt = d.query("a.example.org", "TXT")  # a known name, another type: passed on
    assert len(txt.additional) == 2
    assert d.query("a.example.net", "TXT").additional == []  # NODATA outside the zones


def test_a_changed_file_is_read_again_and_replays_follow(dnsfw, tmp_path: Path):
    path = tmp_path / "example.hosts"
    path.write_text("10.0.0.1 a.example.org\n")
    d = dnsfw(
        """\
.:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS
    hosts example.hosts {
        fallthrough
        reload 100ms
    }
    whoami
}
""".replace("$METRICS", str(metrics_port := free_port()))
    )
    wait_http(metrics_port, "/metrics")
    query = dns.message.make_query("a.example.org", "A")
    for _ in range(3):  # answered, then replayed
        assert ordered(dns.query.udp(query, "127.0.0.1", port=d.port, timeout=3)) == ["10.0.0.1"]
    b_query = dns.message.make_query("b.example.org", "A")
    assert dns.query.udp(b_query, "127.0.0.1", port=d.port, timeout=3).answer == []  # whoami
    assert dns.query.udp(b_query, "127.0.0.1", port=d.port, timeout=3).answer == []
    assert _metric(metrics_port, "coredns_hosts_entries") == 2.0  # the A and its PTR
    # its answers are counted as any other, replays included, under plugin="hosts"
    _, _, body = get(metrics_port, "/metrics")
    assert re.search(r'coredns_dns_responses_total\{plugin="hosts",rcode="NOERROR",.*\} 3\.0', body)
    path.write_text("10.0.0.3 a.example.org\n10.0.0.4 b.example.org\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    deadline = time.monotonic() + 10
    while ordered(dns.query.udp(query, "127.0.0.1", port=d.port, timeout=3)) != ["10.0.0.3"]:
        assert time.monotonic() < deadline, "the new file was not read"
        time.sleep(0.05)
    # the same bytes again: no replay of the old answer, nor of whoami's for b
    assert ordered(dns.query.udp(query, "127.0.0.1", port=d.port, timeout=3)) == ["10.0.0.3"]
    assert ordered(dns.query.udp(b_query, "127.0.0.1", port=d.port, timeout=3)) == ["10.0.0.4"]
    assert _metric(metrics_port, "coredns_hosts_entries") == 4.0
    stamp = _metric(metrics_port, "coredns_hosts_reload_timestamp_seconds")
    assert stamp == pytest.approx(path.stat().st_mtime, abs=1e-3)
    # a deleted file keeps its entries (CoreDNS)
    path.unlink()
    time.sleep(0.3)
    assert ordered(dns.query.udp(query, "127.0.0.1", port=d.port, timeout=3)) == ["10.0.0.3"]


def _metric(port: int, name: str) -> float:
    status, _, body = get(port, "/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{body}")


def test_a_hundred_thousand_lines_load(tmp_path: Path):
    """The size the issue names (the load time is measured by bench, not asserted here)."""
    lines = [
        f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} h{i}.lan alias{i}.lan" for i in range(100_000)
    ]
    hmap = hosts_plugin.parse("\n".join(lines).encode(), frozenset({b"\x00"}), True)
    assert len(hmap.name4) == 200_000 and len(hmap) == 400_000


# --- setup errors: CoreDNS's texts (plugin/hosts/setup.go) ----------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("hosts {\n        ttl\n    }", "3 - Error during parsing: ttl needs a time in second"),
        ("hosts {\n        ttl x\n    }", "3 - Error during parsing: ttl needs a number of second"),
        ("hosts {\n        ttl 0\n    }", "3 - Error during parsing: ttl provided is invalid"),
        ("hosts {\n        ttl 65536\n    }", "3 - Error during parsing: ttl provided is invalid"),
        (
            "hosts {\n        reload\n    }",
            "3 - Error during parsing: reload needs a duration (zero seconds to disable)",
        ),
        (
            "hosts {\n        reload 5 s\n    }",
            "3 - Error during parsing: reload needs a duration (zero seconds to disable)",
        ),
        (
            "hosts {\n        reload five\n    }",
            "3 - Error during parsing: invalid duration for reload 'five'",
        ),
        (
            "hosts {\n        reload -1s\n    }",
            "3 - Error during parsing: invalid negative duration for reload '-1s'",
        ),
        (
            "hosts {\n        fallthrough\n        10.0.0.1 example.org\n    }",
            "4 - Error during parsing: unknown property '10.0.0.1'",
        ),
        (
            "hosts {\n        fallthrough_unsupported\n    }",
            "2 - Error during parsing: fallthrough_unsupported requires fallthrough",
        ),
        (
            "hosts {\n        fallthrough\n        fallthrough_unsupported x\n    }",
            "4 - Error during parsing: Wrong argument count or unexpected line ending after "
            "'fallthrough_unsupported'",
        ),
        ("hosts\n    hosts", "3 - Error during parsing: this plugin can only be used once"),
    ],
)
def test_setup_errors(body: str, message: str):
    error = setup_error(f".:53 {{\n    {body}\n}}\n")
    assert error is not None and error.startswith(f"plugin/hosts: Corefile:{message}"), error


def test_setup_accepts_coredns_forms(tmp_path: Path):
    # plugin/hosts/setup_test.go's accepted forms (a missing file is only a warning)
    for body in [
        "hosts",
        "hosts /tmp",
        "hosts /etc/hosts miek.nl.",
        "hosts /etc/hosts miek.nl. pun.gent.",
        "hosts {\n fallthrough\n }",
        "hosts /etc/hosts miek.nl 10.0.0.9/8 {\n fallthrough\n }",
        "hosts /etc/hosts {\n ttl 3600\n no_reverse\n reload 0\n }",
        "hosts missing.hosts {\n 10.0.0.1 example.org\n }",
    ]:
        assert setup_error(f".:53 {{\n{body}\n}}\n", f"{tmp_path}/Corefile") is None, body


def test_check_warns_about_a_missing_file(tmp_path: Path):
    (tmp_path / "Corefile").write_text(".:53 {\n    hosts missing.hosts\n}\n")
    done = run_cli("check", "-conf", str(tmp_path / "Corefile"))
    assert done.returncode == 0, done.stderr
    assert f"Corefile:2 - Warning: File does not exist: {tmp_path}/missing.hosts" in done.stderr


def test_an_unreadable_path_is_an_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    error = setup_error(".:53 {\n    hosts file/hosts\n}\n", f"{tmp_path}/Corefile")
    assert error == (
        f"plugin/hosts: {tmp_path}/Corefile:2 - Error during parsing: unable to access hosts "
        f"file '{tmp_path}/file/hosts': stat {tmp_path}/file/hosts: not a directory"
    )


def test_the_docstring_examples_set_up(tmp_path: Path):
    (tmp_path / "example.hosts").write_text(HOSTS)
    examples = docstring_examples(hosts_plugin)
    assert len(examples) == 4
    for text in examples:
        assert setup_error(text, f"{tmp_path}/Corefile") is None, text


def test_the_wildcard_example_answers(dnsfw, tmp_path: Path, upstream):
    """The docstring's last example (forward to the test upstream instead of 8.8.8.8)."""
    (tmp_path / "example.hosts").write_text("")
    example = docstring_examples(hosts_plugin)[-1]
    text = example.replace(". {", ".:$PORT {\n    bind 127.0.0.1", 1).replace(
        "8.8.8.8", upstream.address
    )
    upstream.set_zones(
        "$ORIGIN example.com.\n@ 300 IN SOA ns. h. 1 2 3 4 300\n@ 300 IN NS ns.\n"
        "deep.apps 300 IN A 192.0.2.7\n"
    )
    d = dnsfw(text)
    assert ordered(d.query("apps.example.com", "A")) == ["192.168.1.10"]
    assert ordered(d.query("www.example.com", "A")) == ["192.168.1.11"]
    # not a wildcard match (two labels, the apex): falls through to the upstream
    assert ordered(d.query("deep.apps.example.com", "A")) == ["192.0.2.7"]
    assert d.query("example.com", "A").answer == []


# --- a home router's Corefile, with a firewall block added ---------------------------------

HOME_ROUTER = """\
.:$PORT {
    bind 127.0.0.1
    hosts lan.hosts {
        192.168.1.1 router.lan
        fallthrough
    }
    forward . $UPSTREAM
    cache 30
    log
    errors
    admin 127.0.0.1:$ADMIN
    firewall {
        list ads domains ads.example
        group home 100 {
            rule block-ads 10 BLOCK ads response nxdomain
        }
    }
}
"""


def test_a_home_router_corefile(dnsfw, tmp_path: Path, upstream):
    (tmp_path / "lan.hosts").write_text("192.168.1.10 nas.lan nas\n")
    admin = free_port()
    text = HOME_ROUTER.replace("$UPSTREAM", upstream.address).replace("$ADMIN", str(admin))
    (tmp_path / "Corefile").write_text(text.replace("$PORT", "1053"))
    done = run_cli("check", "-conf", str(tmp_path / "Corefile"))
    assert done.returncode == 0 and "Corefile: OK" in done.stdout + done.stderr, done.stderr
    d = dnsfw(text)
    out = dig(d.port, "nas.lan", "A")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out, out
    # cache 30 caps the TTL of what it stores, hosts answers too (as in CoreDNS)
    assert "nas.lan.\t\t30\tIN\tA\t192.168.1.10" in out, out
    assert "router.lan.\t\t30\tIN\tA\t192.168.1.1" in dig(d.port, "router.lan", "A")
    out = dig(d.port, "-x", "192.168.1.10")
    assert "30\tIN\tPTR\tnas.lan." in out and "30\tIN\tPTR\tnas." in out, out
    out = dig(d.port, "www.example.com", "A")  # not in hosts: forwarded
    assert "status: NOERROR" in out and "93.184.216.34" in out, out
    assert "status: NXDOMAIN" in dig(d.port, "nope.example.com", "A")
    assert "status: NXDOMAIN" in dig(d.port, "ads.example", "A")  # the firewall's block
    asked = len(upstream.seen)
    out = dig(d.port, "www.example.com", "A")  # from the cache now
    assert "93.184.216.34" in out and len(upstream.seen) == asked
    assert all(not seen.name.endswith(".lan.") for seen in upstream.seen)
    logged = d.stdout_path.read_text()
    assert '"A IN nas.lan. udp' in logged and '"A IN www.example.com. udp' in logged, logged
    # the admin statistics count hosts' answers as any other (the readiness probe first)
    queries = Api(admin, token=None).ok("GET", "/v1/stats")["queries"]
    assert queries["total"] == 8
    assert queries["by_rcode"] == {"NOERROR": 5, "NXDOMAIN": 3}


def test_a_name_added_to_the_file_ends_the_replay_of_what_followed(dnsfw, tmp_path: Path):
    """A query passed on (fallthrough) records the entries' generation: the file plugin's
    answer for it, replayed until then, is not replayed once hosts has the name."""
    path = tmp_path / "example.hosts"
    path.write_text("10.0.0.1 a.example.org\n")
    (tmp_path / "db.example.org").write_text(
        "@ 60 IN SOA ns hostmaster 1 2 3 4 5\n@ 60 IN NS ns\nb 60 IN A 192.0.2.2\n"
    )
    d = dnsfw(
        """\
example.org:$PORT {
    bind 127.0.0.1
    hosts example.hosts {
        fallthrough
        reload 100ms
    }
    file db.example.org
}
"""
    )
    query = dns.message.make_query("b.example.org", "A")

    def b() -> list[str]:
        return ordered(dns.query.udp(query, "127.0.0.1", port=d.port, timeout=3))

    assert b() == ["192.0.2.2"] == b() == b()  # the file's answer, then replays of it
    path.write_text("10.0.0.1 a.example.org\n10.0.0.4 b.example.org\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    deadline = time.monotonic() + 10
    while b() != ["10.0.0.4"]:
        assert time.monotonic() < deadline, "hosts' new entry was not answered"
        time.sleep(0.05)
