"""health, ready and prometheus: CoreDNS's endpoints and metric names, on one shared listener."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.kit.corefiles import BLOCK_WHOAMI, corefile
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, sample, wait_http
from tests.kit.servers import GatedList

METRICS_FIREWALL = """
.:$PORT {
    bind 127.0.0.1
    health 127.0.0.1:$HTTP
    ready 127.0.0.1:$HTTP
    prometheus 127.0.0.1:$HTTP
    firewall {
        list blocked url $LIST
        group g 1 {
            rule r 1 BLOCK blocked response nxdomain
        }
    }
    cache
    forward . $UPSTREAM
}
"""

PROMETHEUS_CACHE = """\
.:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$HTTP
    cache
    forward . $UPSTREAM
}
"""

LAMEDUCK = """\
.:$PORT {
    bind 127.0.0.1
    health 127.0.0.1:$HTTP {
        lameduck 2s
    }
    ready 127.0.0.1:$HTTP
    whoami
}
"""

HEALTH_PROMETHEUS = """\
.:$PORT {
    bind 127.0.0.1
    health 127.0.0.1:$HTTP
    prometheus 127.0.0.1:$HTTP
    whoami
}
"""


def test_ready_waits_for_lists_then_metrics(dnsfw, upstream, tmp_path: Path) -> None:
    http_port = free_port()
    with GatedList("blocked.example.com\n") as lists:
        d = dnsfw(
            corefile(METRICS_FIREWALL, HTTP=http_port, LIST=lists.url, UPSTREAM=upstream.address),
            env={"DNSFW_STATE_DIR": str(tmp_path / "state"), "NO_PROXY": "*"},
            wait="listening",  # the list is held back
        )
        wait_http(http_port)
        assert lists.requested.wait(10)
        assert get(http_port, "/health")[::2] == (200, "OK")
        status, _, body = get(http_port, "/ready")
        assert (status, body) == (503, "firewall")
        lists.released.set()
        deadline = time.monotonic() + 10
        while get(http_port, "/ready")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get(http_port, "/ready")[2] == "OK"

    d.query("blocked.example.com")
    d.query("example.com")
    d.query("example.com")
    d.query("example.com", "AAAA", tcp=True, want_dnssec=True)
    status, headers, text = get(http_port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    server = f"dns://127.0.0.1:{d.port}"
    base = {"server": server, "zone": ".", "view": ""}
    # the fixture's readiness probe (ready.probe.invalid, A over UDP, answered while the list
    # was held back) came first
    assert (
        sample(text, "coredns_dns_requests_total", **base, proto="udp", family="1", type="A") == 4
    )
    assert sample(text, "coredns_dns_requests_total", **base, proto="tcp", type="AAAA") == 1
    assert sample(text, "coredns_dns_do_requests_total", **base) == 1
    assert (
        sample(text, "coredns_dns_responses_total", **base, rcode="NXDOMAIN", plugin="firewall")
        == 1
    )
    assert (
        sample(text, "coredns_dns_responses_total", **base, rcode="NOERROR", plugin="forward") == 2
    )
    assert sample(text, "coredns_dns_responses_total", **base, rcode="NOERROR", plugin="cache") == 1
    assert sample(text, "coredns_dns_request_duration_seconds_count", **base) == 5
    assert sample(text, "coredns_dns_request_duration_seconds_bucket", **base, le="+Inf") == 5
    assert sample(text, "coredns_dns_request_size_bytes_count", **base, proto="tcp") == 1
    assert sample(text, "coredns_dns_response_size_bytes_bucket", **base, proto="udp", le="0") == 0
    assert sample(text, "coredns_cache_hits_total", server=server, type="success") == 1
    assert (
        sample(
            text,
            "coredns_proxy_request_duration_seconds_count",
            to=upstream.address,
            rcode="NOERROR",
        )
        == 2
    )
    assert sample(text, "dnsfw_firewall_rule_matches_total", rule="r", action="BLOCK") == 1
    assert sample(text, "dnsfw_firewall_list_entries", list="blocked") == 1
    assert sample(text, "coredns_plugin_enabled", server=server, zone=".", name="firewall") == 1
    assert sample(text, "coredns_build_info", version="0.1.0") == 1
    assert sample(text, "coredns_reload_failed_total") == 0
    assert sample(text, "process_resident_memory_bytes") > 0
    # OpenMetrics for scrapers that ask for it
    status, headers, text = get(
        http_port, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    assert sample(text, "coredns_dns_requests_total", **base, proto="tcp", type="AAAA") == 1


def test_counters_survive_reloads(dnsfw, upstream) -> None:
    http_port = free_port()
    d = dnsfw(corefile(PROMETHEUS_CACHE, HTTP=http_port, UPSTREAM=upstream.address))
    wait_http(http_port, "/metrics")
    for _ in range(3):
        d.query("example.com")
    server = f"dns://127.0.0.1:{d.port}"

    def values() -> tuple[float, float]:
        text = get(http_port, "/metrics")[2]
        return (
            sample(text, "coredns_dns_requests_total", server=server, type="A"),
            sample(text, "coredns_cache_hits_total", server=server, type="success"),
        )

    assert values() == (4, 2)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "event='reloaded'" not in d.stderr:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert values() == (4, 2)  # the new cache is empty, its counters start where the old ended
    time.sleep(5.5)  # the old configuration's plugins stop after the grace time
    assert values() == (4, 2)
    d.query("example.com")  # a miss in the new cache
    d.query("example.com")  # a hit
    assert values() == (6, 3)


def test_lameduck(dnsfw) -> None:
    http_port = free_port()
    d = dnsfw(corefile(LAMEDUCK, HTTP=http_port))
    wait_http(http_port)
    assert get(http_port, "/ready")[0] == 200
    d.signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while "event='lameduck'" not in d.stderr:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert get(http_port, "/health")[::2] == (200, "OK")
    assert get(http_port, "/ready")[::2] == (503, "lameduck")
    assert d.query("still.example").rcode() == 0
    assert d.proc is not None and d.proc.poll() is None
    assert d.proc.wait(10) == 0


def test_methods_and_paths(dnsfw) -> None:
    http_port = free_port()
    dnsfw(corefile(HEALTH_PROMETHEUS, HTTP=http_port))
    wait_http(http_port)
    assert get(http_port, "/health", "HEAD")[0] == 200
    status, headers, _ = get(http_port, "/health", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(http_port, "/metrics", "DELETE")[0] == 405
    assert get(http_port, "/health/more")[0] == 404
    assert get(http_port, "/ready")[0] == 404  # no ready stage here
    assert get(http_port, "/")[0] == 404


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("health :x", "plugin/health: {conf}:2 - Error during parsing: invalid address ':x'"),
        ("health :1 :2", "Wrong argument count or unexpected line ending after 'health'"),
        ("health :8080 {\n lameduck soon\n }", "invalid duration 'soon'"),
        ("health :8080 {\n lameduck 0s\n }", "lameduck duration must be positive: 0s"),
        ("health :8080 {\n lame 1s\n }", "unknown property 'lame'"),
        ("ready :8181 {\n monitor x\n }", "Wrong argument count"),
        ("prometheus :9153 {\n foo\n }", "unknown property 'foo'"),
        ("prometheus [::1:9153", "invalid address '[::1:9153'"),
        ("prometheus [zz]:9153", "invalid IPv6 address in '[zz]:9153'"),
        (
            "health :8080\n ready 127.0.0.1:8080",
            "plugin/health: {conf}:2 - Error during parsing: cannot serve HTTP on :8080: "
            "127.0.0.1:8080 already listens on that port",
        ),
    ],
)
def test_setup_errors(tmp_path: Path, lines: str, message: str) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=lines))
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert message.format(conf=conf) in result.stderr


def test_shared_address_and_defaults_pass_check(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(
        "a.example:1053 {\n    health\n    ready\n    prometheus\n    whoami\n}\n"
        "b.example:1053 {\n    health\n    prometheus localhost:9153 {\n        runtime_metrics\n    }\n"
        "    ready [::1]:8182\n    whoami\n}\n"
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
