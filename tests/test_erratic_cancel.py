"""`erratic`, `cancel`, `debug` and `metadata` as CoreDNS 1.14's, through real sockets, and
their setup errors."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.kit.checks import setup_error
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get

ERRATIC = """\
.:$PORT {
    bind 127.0.0.1
    ready 127.0.0.1:$READY
    erratic $BLOCK
}
"""


def ask(d, name: str, rdtype: str = "A", timeout: float = 0.5) -> dns.message.Message | None:
    try:
        return dns.query.udp(
            dns.message.make_query(name, rdtype), "127.0.0.1", port=d.port, timeout=timeout
        )
    except dns.exception.Timeout:
        return None


def test_erratic_drops_every_second_query_and_flips_ready(dnsfw):
    ready = free_port()
    d = dnsfw(ERRATIC.replace("$READY", str(ready)).replace("$BLOCK", ""), wait="listening")
    # wait_ready's probe was query 0 (dropped, retried: query 1 answered)
    replies = [ask(d, "example.org.") for _ in range(4)]  # queries 2..5
    assert [r is not None for r in replies] == [False, True, False, True]
    assert [rr.to_text() for rr in replies[1].answer] == ["example.org. 0 IN A 192.0.2.53"]
    assert replies[1].flags & dns.flags.AA
    assert get(ready, "/ready")[0] == 503  # 6 queries seen: ready only at 3 and 4


def test_erratic_truncate_delay_and_types(dnsfw):
    d = dnsfw(
        ERRATIC.replace("$READY", str(free_port())).replace(
            "$BLOCK", "{\n        truncate 2\n        delay 3 10ms\n    }"
        ),
        wait="listening",
    )
    # no drop once truncate/delay are given; query 0 was the probe
    flags = [bool(ask(d, "x.example.", "AAAA").flags & dns.flags.TC) for _ in range(5)]  # 1..5
    assert flags == [True, False, False, True, True]  # N & 2 == 0, as CoreDNS
    reply = ask(d, "x.example.", "MX")
    assert reply is not None and reply.rcode() == dns.rcode.SERVFAIL


def test_erratic_axfr_over_tcp(dnsfw):
    d = dnsfw(
        ERRATIC.replace("$READY", str(free_port())).replace("$BLOCK", "{\n        drop 0\n    }"),
        wait="listening",
    )
    reply = dns.query.tcp(
        dns.message.make_query("example.org.", "AXFR"), "127.0.0.1", port=d.port, timeout=2
    )
    types = [rrset.rdtype for rrset in reply.answer for _ in rrset]
    assert [dns.rdatatype.to_text(t) for t in types][0] == "SOA"
    assert sorted(rr.to_text() for rr in reply.answer if rr.rdtype == dns.rdatatype.AAAA) == [
        "a.example.org. 0 IN AAAA 2001:bd8::53",
        "b.example.org. 0 IN AAAA 2001:500::54",
    ]


CANCEL = """\
.:$PORT {
    bind 127.0.0.1
    cancel 200ms
    forward . $UPSTREAM
}
"""


def test_cancel_gives_up_a_slow_query(dnsfw, upstream):
    d = dnsfw(CANCEL.replace("$UPSTREAM", upstream.address))
    assert d.query("example.com.", "A").answer
    upstream.faults.delay = 10.0  # forward alone gives up after 5 s: the client's 3 s pass first
    reply = d.query("www.example.com.", "A", timeout=3)
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_debug_logs_debug_events_and_metadata_passes_on(dnsfw):
    d = dnsfw(".:$PORT {\n    bind 127.0.0.1\n    debug\n    metadata\n    local\n    whoami\n}\n")
    assert d.query("app.localhost.", "A").answer
    assert d.query("example.org.", "A").additional  # metadata -> whoami
    assert "localhost_query" in d.stderr


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("erratic x", "Wrong argument count or unexpected line ending after 'erratic'"),
        ("erratic {\n        drop -1\n    }", 'illegal amount value given "-1"'),
        ("erratic {\n        delay -1\n    }", 'illegal amount value given "-1"'),
        (
            "erratic {\n        delay 1 2 4\n    }",
            "Wrong argument count or unexpected line ending after 'delay'",
        ),
        (
            "erratic {\n        delay 15.a\n    }",
            'strconv.ParseInt: parsing "15.a": invalid syntax',
        ),
        ("erratic {\n        delay 3 bla\n    }", 'time: invalid duration "bla"'),
        (
            "erratic {\n        truncate 15.a\n    }",
            'strconv.ParseInt: parsing "15.a": invalid syntax',
        ),
        ("erratic {\n        something-else\n    }", "unknown property 'something-else'"),
        ("cancel 1s 2s", "Wrong argument count or unexpected line ending after 'cancel'"),
        ("cancel soon", 'invalid duration: "soon"'),
        ("cancel -1s", 'invalid negative duration: "-1s"'),
        ("cancel 0s", 'invalid negative duration: "0s"'),
        ("debug on", "Wrong argument count or unexpected line ending after 'debug'"),
        (
            "metadata {\n        x\n    }",
            "Wrong argument count or unexpected line ending after 'metadata'",
        ),
    ],
)
def test_bad_syntax_errors(line: str, error: str):
    found = setup_error(f".:1053 {{\n    {line}\n    whoami\n}}\n")
    assert found is not None and found.startswith(f"plugin/{line.split()[0]}: Corefile:")
    assert found.endswith(f"Error during parsing: {error}")
