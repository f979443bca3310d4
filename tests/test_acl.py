"""The ``acl`` plugin (CoreDNS's): first matching line wins, block (REFUSED + EDE 15), filter
(empty NOERROR + EDE 17), drop (nothing), by client address and query type, over real sockets
from two loopback source addresses; its decisions hold for replayed cache hits (a Gate), its
metrics and CoreDNS's setup errors."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

import plugins
import plugins.acl
from proxy.config import AppContext, build
from proxy.corefile import parse
from tests.kit import checks
from tests.kit.checks import docstring_examples
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample

ZONES = """
$ORIGIN example.org.
@ SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
a A 192.0.2.1
b A 192.0.2.2
b TXT "text"
"""
OTHER = "127.0.0.2"  # a second client: its own loopback source address


def ask(port: int, name: str, rdtype: str = "A", source: str = "127.0.0.1"):
    query = dns.message.make_query(name, rdtype, use_edns=0)
    return dns.query.udp(query, "127.0.0.1", port=port, source=source, timeout=2)


def ede(reply: dns.message.Message) -> list[int]:
    return [o.code for o in reply.options if o.otype == 15]


def load(text: str):
    return build(parse(text, filename="Corefile", directives=plugins.ORDER), AppContext("Corefile"))


def setup_error(body: str) -> str:
    error = checks.setup_error(f".:53 {{\n    acl {{\n        {body}\n    }}\n    whoami\n}}\n")
    assert error is not None, "the Corefile was accepted"
    return error


@pytest.fixture
def served(dnsfw, upstream):
    upstream.set_zones(ZONES)

    def start(rules: str, extra: str = ""):
        http = free_port()
        d = dnsfw(
            f".:$PORT {{\n    prometheus 127.0.0.1:{http}\n{extra}    acl {{\n{rules}\n    }}\n"
            f"    cache\n    forward . {upstream.address}\n}}\n"
        )
        d.http = http
        return d

    return start


def test_block_filter_drop_and_allow_by_client_and_type(served) -> None:
    d = served(
        f"        allow net {OTHER} type TXT\n"
        f"        block type A net {OTHER}\n"
        f"        filter type AAAA net {OTHER}\n"
        f"        drop type MX net {OTHER}\n"
    )
    allowed = ask(d.port, "a.example.org.")
    assert allowed.rcode() == dns.rcode.NOERROR and allowed.answer
    blocked = ask(d.port, "a.example.org.", source=OTHER)
    assert blocked.rcode() == dns.rcode.REFUSED and not blocked.answer
    assert ede(blocked) == [15] and blocked.payload == 4096 and blocked.ednsflags & 0x8000
    filtered = ask(d.port, "a.example.org.", "AAAA", source=OTHER)
    assert filtered.rcode() == dns.rcode.NOERROR and not filtered.answer and ede(filtered) == [17]
    with pytest.raises(dns.exception.Timeout):
        ask(d.port, "a.example.org.", "MX", source=OTHER)
    txt = ask(d.port, "b.example.org.", "TXT", source=OTHER)  # the first line matched: allow
    assert txt.rcode() == dns.rcode.NOERROR and txt.answer


def test_a_replayed_cache_hit_is_still_decided_per_client(served) -> None:
    d = served(f"        block net {OTHER}\n")
    for _ in range(3):  # answered, then cached, then replayed without the chain
        assert ask(d.port, "a.example.org.").answer
    assert ask(d.port, "a.example.org.", source=OTHER).rcode() == dns.rcode.REFUSED
    assert ask(d.port, "a.example.org.").answer  # the replay stays for everyone else


def test_zones_and_several_acls(served) -> None:
    d = served(
        "        allow net 127.0.0.1\n",
        extra=f"    acl b.example.org {{\n        block net {OTHER}\n    }}\n",
    )
    assert ask(d.port, "a.example.org.", source=OTHER).answer
    assert ask(d.port, "b.example.org.", source=OTHER).rcode() == dns.rcode.REFUSED
    assert ask(d.port, "b.example.org.").answer  # the first acl's allow ends the walk


def test_metrics(served) -> None:
    d = served(f"        block type A net {OTHER}\n        filter type AAAA net {OTHER}\n")
    ask(d.port, "a.example.org.")
    ask(d.port, "a.example.org.", source=OTHER)
    ask(d.port, "a.example.org.", source=OTHER)
    ask(d.port, "a.example.org.", "AAAA", source=OTHER)
    text = get(d.http, "/metrics")[2]
    server = f"dns://:{d.port}"
    assert sample(text, "coredns_acl_blocked_requests_total", server=server, zone=".") == 2
    assert sample(text, "coredns_acl_filtered_requests_total", server=server, zone=".") == 1
    assert sample(text, "coredns_acl_allowed_requests_total", server=server) >= 1
    # the responses acl made carry its name as CoreDNS's `plugin` label
    responses = {"server": server, "zone": "."}
    assert (
        sample(text, "coredns_dns_responses_total", **responses, rcode="REFUSED", plugin="acl") == 2
    )
    assert (
        sample(text, "coredns_dns_responses_total", **responses, rcode="NOERROR", plugin="acl") == 1
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "deny net 10.0.0.0/8",
            "unexpected token \"deny\"; expect 'allow', 'block', 'filter' or 'drop'",
        ),
        ("block blah", "unexpected token \"blah\"; expect 'type | net'"),
        ("block type", 'no token specified in "type" section'),
        ("block net", 'no token specified in "net" section'),
        ("block type ABC", 'unexpected token "ABC"; expect legal QTYPE'),
        ("block net 10.0.0.0/33", 'illegal CIDR notation "10.0.0.0/33"'),
        ("block net not-an-ip", 'illegal CIDR notation "not-an-ip/32"'),
    ],
)
def test_setup_errors(body: str, message: str) -> None:
    assert setup_error(body) == f"plugin/acl: Corefile:3 - Error during parsing: {message}"


@pytest.mark.parametrize("example", docstring_examples(plugins.acl))
def test_documented_examples_load(example: str) -> None:
    text = example.replace("{\n    acl", "{\n    whoami\n    acl", 1)
    assert load(text).blocks[0].names[0] == "acl"
