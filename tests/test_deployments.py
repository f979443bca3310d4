"""Corefiles of common deployments run as they are (ports moved to loopback): the Kubernetes
cluster add-on's (CoreDNS's deployment repository, with `kubernetes` removed), NodeLocal
DNSCache's and a split-horizon one (`file` + `rewrite` + `acl`, with a `firewall` block added
as a dnsfw user would). Each passes `dnsfw check` and answers through real sockets as CoreDNS would; and
the CoreDNS plugins dnsfw does not run are still refused with the clear message."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kit.checks import setup_error
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, wait_http
from tests.kit.tools import dig as dig_cli
from tests.kit.upstream import DEFAULT_ZONES

# coredns/deployment kubernetes/coredns.yaml.sed, `kubernetes` removed
KUBERNETES = """\
.:$PORT {
    errors
    health {
      lameduck 5s
    }
    ready
    prometheus :$METRICS
    forward . $UPSTREAM {
      max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""

# kubernetes cluster/addons/dns/nodelocaldns/nodelocaldns.yaml (addresses: loopback)
NODELOCAL = """\
cluster.local:$PORT {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind 127.0.0.1
    forward . $UPSTREAM {
            force_tcp
    }
    prometheus :$METRICS
    health 127.0.0.1:$HEALTH
    }
in-addr.arpa:$PORT {
    errors
    cache 30
    reload
    loop
    bind 127.0.0.1
    forward . $UPSTREAM {
            force_tcp
    }
    prometheus :$METRICS
    }
ip6.arpa:$PORT {
    errors
    cache 30
    reload
    loop
    bind 127.0.0.1
    forward . $UPSTREAM {
            force_tcp
    }
    prometheus :$METRICS
    }
.:$PORT {
    errors
    cache 30
    reload
    loop
    bind 127.0.0.1
    forward . $UPSTREAM
    prometheus :$METRICS
    }
"""

CLUSTER_ZONE = """\
$ORIGIN cluster.local.
$TTL 30
@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
kube-dns.kube-system.svc A 10.96.0.10
"""

# Split horizon: the internal zone example.corp from a zone file, for internal clients only
# (10.0.0.0/8 in production; here 127.0.0.1, while 127.0.0.2 plays an outside client),
# corp.example.com as its public-looking alias, everything else forwarded, and ads blocked.
SPLIT_HORIZON = """\
.:$PORT {
    bind 127.0.0.1
    errors
    log
    rewrite name suffix .corp.example.com. .example.corp. answer auto
    acl example.corp {
        allow net 127.0.0.1/32
        block
    }
    firewall {
        list ads domains ads.example
        group home 100 {
            rule block-ads 10 BLOCK ads response nxdomain
        }
    }
    cache 30
    file db.example.corp example.corp
    forward . $UPSTREAM
}
"""

EXAMPLE_CORP = """\
$ORIGIN example.corp.
$TTL 300
@ SOA ns1.example.corp. hostmaster.example.corp. 2024060101 7200 3600 1209600 300
@ NS ns1
ns1 A 10.0.0.53
wiki A 10.1.2.3
mail A 10.1.2.25
"""


def ports(text: str, upstream: str, **more: int) -> str:
    text = text.replace("$UPSTREAM", upstream)
    for name, port in more.items():
        text = text.replace(f"${name}", str(port))
    return text


def dig(d, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=d.port, timeout=3)
    return dns.query.udp(q, "127.0.0.1", port=d.port, timeout=3)


def test_kubernetes_addon_corefile_checks(tmp_path: Path, upstream):
    conf = tmp_path / "Corefile"
    conf.write_text(ports(KUBERNETES, upstream.address, PORT=free_port(), METRICS=free_port()))
    done = run_cli("check", "-conf", str(conf))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout + done.stderr


def test_kubernetes_addon_corefile_answers(dnsfw, upstream):
    health, metrics, ready = free_port(), free_port(), free_port()
    # health and ready take their CoreDNS defaults (:8080, :8181); moved for the test only
    text = ports(KUBERNETES, upstream.address, METRICS=metrics)
    text = text.replace("    health {", f"    health 127.0.0.1:{health} {{").replace(
        "    ready\n", f"    ready 127.0.0.1:{ready}\n"
    )
    d = dnsfw(text)
    reply = dig(d, "rr.example.com.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert sorted(rd.to_text() for rd in reply.answer[0]) == [
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
    ]
    orders = {tuple(rd.to_text() for rd in dig(d, "rr.example.com.").answer[0]) for _ in range(30)}
    assert len(orders) > 1  # loadbalance, on cache hits
    assert dig(d, "nope.example.com.").rcode() == dns.rcode.NXDOMAIN
    assert dig(d, "www.example.com.", tcp=True).answer
    assert [q.name for q in upstream.seen].count("rr.example.com.") == 1  # cache 30
    wait_http(health, "/health")
    assert get(health, "/health")[0] == 200
    assert get(ready, "/ready")[0] == 200
    text = get(metrics, "/metrics")[2]
    assert "coredns_dns_requests_total" in text and "coredns_cache_hits_total" in text


def test_nodelocal_dnscache_corefile(dnsfw, upstream, tmp_path: Path):
    upstream.set_zones(DEFAULT_ZONES + CLUSTER_ZONE)
    metrics, health = free_port(), free_port()
    text = ports(NODELOCAL, upstream.address, METRICS=metrics, HEALTH=health)
    conf = tmp_path / "check" / "Corefile"
    conf.parent.mkdir()
    conf.write_text(text.replace("$PORT", str(free_port())))
    done = run_cli("check", "-conf", str(conf))
    assert done.returncode == 0, done.stderr
    d = dnsfw(text)
    assert dig(d, "www.example.com.").answer
    seen = [q for q in upstream.seen if q.name == "www.example.com."]
    assert [q.transport for q in seen] == ["udp"]  # the `.` block: the client's transport
    reply = dig(d, "kube-dns.kube-system.svc.cluster.local.")  # the cluster.local block
    assert [rd.to_text() for rd in reply.answer[0]] == ["10.96.0.10"]
    assert dig(d, "missing.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert [q.transport for q in upstream.seen if q.name == "missing.cluster.local."] == ["tcp"]
    dig(d, "1.2.0.192.in-addr.arpa.", "PTR")
    assert [q.transport for q in upstream.seen if q.name == "1.2.0.192.in-addr.arpa."] == ["tcp"]
    for _ in range(2):
        dig(d, "www.example.com.")
    assert len([q for q in upstream.seen if q.name == "www.example.com."]) == 1  # cached
    assert get(health, "/health")[0] == 200
    assert "coredns_cache_entries" in get(metrics, "/metrics")[2]


@pytest.mark.parametrize(
    "directive",
    [
        "kubernetes cluster.local",
        "etcd",
        "route53 example.org.:Z1",
        "clouddns example.org.:p:z",
        "azure example.org:r",
        "grpc . 127.0.0.1",
        "sign db.example.org",
        "dnssec",
        "pprof",
        "trace",
    ],
)
def test_plugins_dnsfw_does_not_run_are_refused(directive: str):
    name = directive.split()[0]
    assert setup_error(f".:1053 {{\n    {directive}\n    whoami\n}}\n") == (
        f"plugin/{name}: Corefile:2 - Error during parsing: not supported by dnsfw"
    )


def section(out: str, name: str = "ANSWER") -> list[str]:
    """A section of dig's output, one "OWNER CLASS TYPE DATA" per record (the TTL left out)."""
    head = f";; {name} SECTION:\n"
    text = out.split(head)[1].split("\n\n")[0] if head in out else ""
    return [" ".join(f for i, f in enumerate(line.split()) if i != 1) for line in text.splitlines()]


def status(out: str) -> str:
    return out.split("status: ")[1].split(",")[0]


def test_split_horizon_corefile(dnsfw, upstream, tmp_path: Path):
    text = ports(SPLIT_HORIZON, upstream.address)
    (tmp_path / "db.example.corp").write_text(EXAMPLE_CORP)
    conf = tmp_path / "Corefile"
    conf.write_text(text.replace("$PORT", str(free_port())))
    done = run_cli("check", "-conf", str(conf))
    assert done.returncode == 0, done.stderr
    d = dnsfw(text)
    inside, outside = ("-b", "127.0.0.1"), ("-b", "127.0.0.2")
    for _ in range(2):  # the second time from the cache or a replay, which asks acl again
        out = dig_cli(d.port, *inside, "wiki.example.corp", "A")
        assert status(out) == "NOERROR" and section(out) == ["wiki.example.corp. IN A 10.1.2.3"]
        out = dig_cli(d.port, *outside, "wiki.example.corp", "A")
        assert status(out) == "REFUSED" and "EDE: 15 (Blocked)" in out
        # the alias: rewritten to example.corp on the way in, back on the way out
        out = dig_cli(d.port, *inside, "mail.corp.example.com", "A")
        assert section(out) == ["mail.corp.example.com. IN A 10.1.2.25"]
        assert status(dig_cli(d.port, *outside, "mail.corp.example.com", "A")) == "REFUSED"
    out = dig_cli(d.port, *inside, "wiki.example.corp", "A")
    assert " aa " in out.split("flags:")[1].split(";")[0] + " "  # authoritative, from the file
    out = dig_cli(d.port, *inside, "nope.example.corp", "A")
    assert status(out) == "NXDOMAIN" and section(out, "AUTHORITY") == [
        "example.corp. IN SOA ns1.example.corp. hostmaster.example.corp. 2024060101 7200 3600 1209600 300"
    ]
    out = dig_cli(d.port, *inside, "wiki.example.corp", "AAAA")
    assert status(out) == "NOERROR" and section(out) == []
    for client in (inside, outside):  # the rest: forwarded, and the firewall for everyone
        out = dig_cli(d.port, *client, "mail.example.com", "A")
        assert section(out) == ["mail.example.com. IN A 192.0.2.25"]
        assert status(dig_cli(d.port, *client, "ads.example", "A")) == "NXDOMAIN"
    asked = {q.name for q in upstream.seen}
    assert "mail.example.com." in asked
    assert not {n for n in asked if "corp" in n or n.startswith("ads.")}
