"""Every transport runs the same chain: a firewall BLOCK, the Route 53 query log's
`transport` and the prometheus `proto` label over UDP, TCP, DoT and DoH, against one dnsfw
(real clients, loopback only)."""

from __future__ import annotations

import json
import time

import dns.message
import dns.query
import dns.rcode

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.metrics import get, sample
from tests.kit.tls import client_context, make_cert
from tests.kit.upstream import Upstream

NAME = "dns.test"

CHAIN = """\
prometheus 127.0.0.1:$METRICS
log . {
    format route53
    output $OUTPUT
}
firewall {
    list bad domains blocked.example.com
    group main 10 {
        rule block-bad 10 BLOCK bad response nxdomain
    }
}
forward . $UPSTREAM"""


def test_firewall_logs_and_metrics_are_the_same_on_every_transport(tmp_path):
    make_cert(tmp_path, NAME)
    dot_port, doh_port, metrics = free_port(), free_port(), free_port()
    log = tmp_path / "queries.log"
    with Upstream() as up:
        chain = corefile(CHAIN, METRICS=metrics, OUTPUT=log, UPSTREAM=up.address)
        text = corefile(
            ENCRYPTED,
            KEYS=f"tls://.:{dot_port} https://.:{doh_port}",
            CERT="dot.crt",
            KEY="dot.key",
            PLUGINS=chain,
        )
        dnsfw = Dnsfw(text, tmp_path).start()
        try:
            context = client_context(tmp_path / "dot.crt", NAME)
            ask = {
                "UDP": lambda q: dns.query.udp(q, "127.0.0.1", port=dnsfw.port, timeout=5),
                "TCP": lambda q: dns.query.tcp(q, "127.0.0.1", port=dnsfw.port, timeout=5),
                "DoT": lambda q: dns.query.tls(
                    q, "127.0.0.1", port=dot_port, ssl_context=context, server_hostname=NAME
                ),
                "DoH": lambda q: dns.query.https(
                    q,
                    f"https://{NAME}:{doh_port}/dns-query",
                    bootstrap_address="127.0.0.1",
                    verify=context,
                    timeout=5,
                ),
            }
            for transport, query in ask.items():
                blocked = query(dns.message.make_query("blocked.example.com.", "A"))
                assert blocked.rcode() == dns.rcode.NXDOMAIN, transport
                allowed = query(dns.message.make_query("long-ttl.example.com.", "A"))
                assert [str(rr) for rr in allowed.answer[0]] == ["192.0.2.3"], transport
            lines = wait_lines(log, 9)  # and the start's probe
            for transport in ask:
                mine = [
                    line
                    for line in lines
                    if line["transport"] == transport
                    and line["query_name"].endswith("example.com.")
                ]
                assert {
                    (line["query_name"], line.get("firewall_rule_action")) for line in mine
                } == {
                    ("blocked.example.com.", "BLOCK"),
                    ("long-ttl.example.com.", None),
                }, transport
            _, _, exposition = get(metrics, "/metrics")
            for proto in ("udp", "tcp", "tls", "https"):
                labels = {"proto": proto, "type": "A", "family": "1"}
                expected = 3 if proto == "udp" else 2  # and the start's probe
                assert sample(exposition, "coredns_dns_requests_total", **labels) == expected
        finally:
            dnsfw.stop()


def wait_lines(path, count: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)
