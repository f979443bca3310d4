"""`loadbalance`: A/AAAA/MX records shuffled in replies from forward, from the cache and from
replays (the shuffle is a replay Reshaped); weighted and prefer policies; CoreDNS's errors."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kit.checks import setup_error

LB = """\
.:$PORT {
    bind 127.0.0.1
    loadbalance $POLICY
    cache
    forward . $UPSTREAM
}
"""
RR = ["192.0.2.10", "192.0.2.11", "192.0.2.12"]


def orders(d, name: str, rdtype: str, times: int = 40) -> list[tuple[str, ...]]:
    """The record order of ``times`` replies to the same query (same bytes but the id)."""
    seen = []
    for _ in range(times):
        reply = dns.query.udp(
            dns.message.make_query(name, rdtype), "127.0.0.1", port=d.port, timeout=2
        )
        assert reply.rcode() == dns.rcode.NOERROR
        seen.append(tuple(rd.to_text() for rrset in reply.answer for rd in rrset))
    return seen


def start(dnsfw, upstream, policy: str = ""):
    return dnsfw(LB.replace("$POLICY", policy).replace("$UPSTREAM", upstream.address))


def test_round_robin_shuffles_cache_hits_and_replays(dnsfw, upstream):
    d = start(dnsfw, upstream)
    seen = orders(d, "rr.example.com.", "A")
    assert all(sorted(o) == RR for o in seen)
    # from the third on the replies are replays (the first two ran the chain: miss, then hit)
    assert len(set(seen[2:])) > 1  # 38 replies in one order: odds 6 * 6**-38
    # one upstream query: the rest were cache hits and replays, shuffled as well
    assert [q.name for q in upstream.seen].count("rr.example.com.") == 1


def test_round_robin_shuffles_mx(dnsfw, upstream):
    d = start(dnsfw, upstream, "round_robin")
    seen = orders(d, "gmail.com.", "MX")
    assert all(len(o) == 5 for o in seen)
    assert len({o for o in seen}) > 1
    assert {sorted(o)[0] for o in seen} == {"10 alt1.gmail-smtp-in.l.google.com."}


def test_single_records_and_errors_pass_unchanged(dnsfw, upstream):
    d = start(dnsfw, upstream)
    assert set(orders(d, "example.com.", "A", 3)) == {("93.184.216.34",)}
    assert d.query("nope.example.com.", "A").rcode() == dns.rcode.NXDOMAIN


def test_prefer_puts_preferred_networks_first(dnsfw, upstream):
    d = start(dnsfw, upstream, "round_robin {\n        prefer 192.0.2.12/32 192.0.2.11/32\n    }")
    seen = orders(d, "rr.example.com.", "A", 10)
    assert {o[:2] for o in seen} == {("192.0.2.12", "192.0.2.11")}


def test_weighted_picks_the_first_by_weight_and_reloads(dnsfw, upstream, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.write_text("# favour .12\nrr.example.com\n192.0.2.12 255\n192.0.2.10 1\n")
    d = start(dnsfw, upstream, "weighted weights {\n        reload 100ms\n    }")
    first = Counter(o[0] for o in orders(d, "rr.example.com.", "A"))
    assert first["192.0.2.12"] >= 30  # 255 of 257 on average: 30 of 40 fails with odds < 1e-20
    weights.write_text("rr.example.com.\n192.0.2.10 255\n")
    deadline = time.monotonic() + 20
    while Counter(o[0] for o in orders(d, "rr.example.com.", "A", 20))["192.0.2.10"] < 15:
        assert time.monotonic() < deadline, "new weights never used"
    # MX queries are not weighted: their order stays as the upstream sent it
    assert len(set(orders(d, "gmail.com.", "MX", 5))) == 1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "loadbalance round_robin x",
            "Corefile:2 - Error during parsing: unknown property for round_robin",
        ),
        ("loadbalance random", "Corefile:2 - Error during parsing: unknown policy: random"),
        ("loadbalance weighted", "Corefile:2 - Error during parsing: missing weight file argument"),
        ("loadbalance weighted a b", "Corefile:2 - Error during parsing: unexpected argument(s)"),
        (
            "loadbalance weighted w {\n        reload\n    }",
            "Corefile:3 - Error during parsing: reload duration value is missing",
        ),
        (
            "loadbalance weighted w {\n        reload 1s 2s\n    }",
            "Corefile:3 - Error during parsing: unexpected argument",
        ),
        (
            "loadbalance weighted w {\n        reload soon\n    }",
            "Corefile:3 - Error during parsing: invalid reload duration 'soon'",
        ),
        (
            "loadbalance weighted w {\n        prefer 10.0.0.0/8\n    }",
            "Corefile:3 - Error during parsing: unknown property 'prefer'",
        ),
        (
            "loadbalance {\n        prefer 10.0.0.0/33\n    }",
            'Corefile:3 - Error during parsing: invalid CIDR "10.0.0.0/33": invalid CIDR address: 10.0.0.0/33',
        ),
        (
            "loadbalance {\n        reload 1s\n    }",
            "Corefile:3 - Error during parsing: unknown property 'reload'",
        ),
    ],
)
def test_bad_syntax_errors(line: str, error: str, tmp_path: Path):
    (tmp_path / "w").write_text("a.example\n10.0.0.1 2\n")
    conf = str(tmp_path / "Corefile")
    found = setup_error(f".:1053 {{\n    {line}\n    whoami\n}}\n", conf)
    assert found == f"plugin/loadbalance: {conf.removesuffix('Corefile')}{error}"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            "192.0.2.1\n",
            'wrong domain name:"192.0.2.1" in weight file W. (Maybe a missing weight value?)',
        ),
        ("a.example\nnot-an-ip 3\n", 'wrong IP address:"not-an-ip" in weight file W'),
        ("a.example\n10.0.0.1 256\n", 'wrong weight value:"256" in weight file W'),
        ("a.example\n10.0.0.1 0\n", 'wrong weight value:"0" in weight file W'),
        ("10.0.0.1 3\n", "missing domain name in weight file W"),
        (
            "a.example\n10.0.0.1 3 4\n",
            'could not parse weight line:"10.0.0.1 3 4" in weight file W',
        ),
    ],
)
def test_bad_weight_files(content: str, error: str, tmp_path: Path):
    weights = tmp_path / "w"
    weights.write_text(content)
    conf = str(tmp_path / "Corefile")
    found = setup_error(".:1053 {\n    loadbalance weighted w\n    whoami\n}\n", conf)
    assert (
        found
        == f"plugin/loadbalance: {conf}:2 - Error during parsing: {error.replace('W', str(weights))}"
    )
