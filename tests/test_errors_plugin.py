"""The `errors` plugin: failed queries are logged, or consolidated into periodic counts."""

from __future__ import annotations

import re
import time

import dns.rcode

from tests.kit.corefiles import corefile

# ERRORS (the errors directive) before a forward whose failures it logs
ERRORS_FORWARD = """
.:$PORT {
    bind 127.0.0.1
    $ERRORS
    forward . $UPSTREAM {
        read_timeout 200ms
        max_fails 0
    }
}
"""


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_errors_are_logged_with_rcode_name_and_type(dnsfw, upstream):
    d = dnsfw(corefile(ERRORS_FORWARD, ERRORS="errors", UPSTREAM=upstream.address))
    upstream.faults.drop = True
    r = d.query("lost.example.com.", "AAAA")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert wait_for(lambda: "query_error" in d.stderr)
    line = next(x for x in d.stderr.splitlines() if "query_error" in x)
    assert "2 lost.example.com. AAAA:" in line


def test_consolidate_counts_matching_errors(dnsfw, upstream):
    block = 'errors {\n    consolidate 1s "lost" warning show_first\n}'
    d = dnsfw(corefile(ERRORS_FORWARD, ERRORS=block, UPSTREAM=upstream.address))
    upstream.faults.drop = True
    for i in range(4):
        assert d.query(f"lost{i}.example.com.").rcode() == dns.rcode.SERVFAIL
    # show_first: the first at once; all four counted in the periodic summaries (the
    # queries may straddle a period boundary, so the counts are summed)
    assert wait_for(lambda: summed(d.stderr) == 4, timeout=5), d.stderr
    lines = [x for x in d.stderr.splitlines() if "query_error" in x]
    assert "level='warning'" in lines[0] and "lost0.example.com." in lines[0]
    # the others were not logged one by one
    assert not any("lost1.example.com." in x for x in lines)


def summed(stderr: str) -> int:
    counts = re.findall(r"(\d+) errors like 'lost' occurred in last 1s", stderr)
    return sum(int(n) for n in counts)
