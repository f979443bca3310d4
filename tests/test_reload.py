"""Reloads: the ``reload`` stage, SIGUSR1, HTTP listeners kept or moved, failures that change
nothing, and the staged metrics registry that keeps counters across configurations."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from pathlib import Path

import dns.rcode
import pytest

from proxy.metrics import Registry
from tests.kit.corefiles import BLOCK_WHOAMI, corefile
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, sample, wait_http


def wait_for(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# reloaded every 2s (1s jitter) when it changes; BLOCKED answered NXDOMAIN
RELOADING = """
.:$PORT {
    bind 127.0.0.1
    reload 2s 1s
    prometheus 127.0.0.1:$HTTP
    firewall {
        list l domains $BLOCKED
        group g 1 {
            rule r 1 BLOCK l response nxdomain
        }
    }
    whoami
}
"""

HEALTH = """\
.:$PORT {
    bind 127.0.0.1
    health 127.0.0.1:$HTTP
    whoami
}
"""


def test_reload_stage_follows_the_corefile(dnsfw) -> None:
    http_port = free_port()
    d = dnsfw(corefile(RELOADING, HTTP=http_port, BLOCKED="one.example"))
    wait_http(http_port, "/metrics")
    assert d.query("one.example").rcode() == dns.rcode.NXDOMAIN

    def reloads() -> int:
        return d.stderr.count("event='reloaded'")

    def failures() -> float:
        return sample(get(http_port, "/metrics")[2], "coredns_reload_failed_total")

    d.write(corefile(RELOADING, HTTP=http_port, BLOCKED="two.example"))
    wait_for(lambda: d.query("two.example").rcode() == dns.rcode.NXDOMAIN, what="the change")
    assert d.query("one.example").rcode() == dns.rcode.NOERROR
    assert reloads() == 1 and "reason='reload'" in d.stderr
    # a comment and new layout parse the same: no reload
    text = d.conf.read_text().replace("    whoami", "    # answers\n\n        whoami")
    d.conf.write_text(text)
    time.sleep(4.5)  # more than one interval plus jitter
    assert reloads() == 1
    # a broken Corefile: tried once, counted once, the old configuration serves on
    d.conf.write_text(text.replace("whoami", "whoami extra-arg-for-whoami"))
    wait_for(lambda: failures() == 1, what="the failed reload")
    time.sleep(4.5)
    assert failures() == 1
    assert d.query("two.example").rcode() == dns.rcode.NXDOMAIN
    d.write(corefile(RELOADING, HTTP=http_port, BLOCKED="three.example"))
    wait_for(lambda: d.query("three.example").rcode() == dns.rcode.NXDOMAIN, what="the fix")
    assert reloads() == 2


def test_sigusr1_reloads_and_http_listeners_move_only_on_success(dnsfw) -> None:
    first, second = free_port(), free_port()
    d = dnsfw(corefile(HEALTH, HTTP=first))
    wait_http(first)
    # a keep-alive connection to the health listener survives a reload that keeps its address
    conn = http.client.HTTPConnection("127.0.0.1", first, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b"OK"
    d.signal(signal.SIGUSR1)
    wait_for(lambda: "event='reloaded'" in d.stderr, what="the reload")
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b"OK"
    conn.close()

    # the new address is taken: the reload fails and the old listener keeps serving
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", second))
        squatter.listen(1)
        d.write(corefile(HEALTH, HTTP=second))
        d.signal(signal.SIGHUP)
        wait_for(lambda: "event='reload_failed'" in d.stderr, what="the failed reload")
        assert f"cannot listen on http://127.0.0.1:{second}" in d.stderr
        assert get(first, "/health")[::2] == (200, "OK")
    # free again: the reload moves the listener, and only then closes the old one
    d.signal(signal.SIGHUP)
    wait_for(lambda: d.stderr.count("event='reloaded'") == 2, what="the second reload")
    assert get(second, "/health")[::2] == (200, "OK")
    with pytest.raises(OSError):
        get(first, "/health")
    assert d.query("x.example").rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("reload 1s", "interval value must be greater or equal to 2s"),
        ("reload 10s 500ms", "jitter value must be 0 or greater or equal to 1s"),
        ("reload 10s 2s 3s", "Wrong argument count or unexpected line ending after 'reload'"),
        ("reload soon", "invalid duration 'soon'"),
    ],
)
def test_reload_setup_errors(tmp_path: Path, line: str, message: str) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=line))
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert result.stderr.startswith(f"plugin/reload: {conf}:2 - Error during parsing: {message}")


def test_reload_values_must_agree_across_blocks(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(
        "a.example:1053 {\n    reload 10s 0\n    whoami\n}\n"
        "b.example:1053 {\n    reload 10s 0\n    whoami\n}\n"
        "c.example:1053 {\n    reload 20s\n    whoami\n}\n"
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert f"{conf}:10 - Error during parsing: reload is set to 10s/0s in another" in result.stderr
    conf.write_text(conf.read_text().replace("reload 20s", "reload 10s 0"))
    assert run_cli("check", "-conf", str(conf)).returncode == 0


# --- the staged registry ---------------------------------------------------------------------
class Counting:
    """A plugin whose counter is a plain int read at scrape time."""

    def __init__(self) -> None:
        self.hits = 0

    def register(self, metrics: Registry) -> None:
        metrics.gauge_func(
            "hits_total", "Hits.", ("server",), lambda: [(("s",), self.hits)], kind="counter"
        )
        metrics.gauge_func("size", "Size.", (), lambda: [((), self.hits * 10)])


def test_staged_counters_continue_across_configurations() -> None:
    process = Registry()
    old_view, old = process.stage(), Counting()
    old.register(old_view)
    children = old_view.counter("requests_total", "Requests.", ("server",)).labels("s")
    assert "hits_total" in process.metrics and process.metrics["hits_total"].samples() == []
    old_view.commit()
    old.hits = 5
    children.inc(3)

    failed_view, failed = process.stage(), Counting()
    failed.register(failed_view)
    failed.hits = 99  # never committed: nothing of it shows
    assert process.metrics["hits_total"].value("s") == 5

    new_view, new = process.stage(), Counting()
    new.register(new_view)
    assert new_view.counter("requests_total", "Requests.", ("server",)).labels("s") is children
    new_view.commit()
    assert process.metrics["hits_total"].value("s") == 5  # the old one is summed in
    old.hits = 6  # a query the old chain was still finishing
    new.hits = 1
    assert process.metrics["hits_total"].value("s") == 7
    assert process.metrics["size"].value() == 10  # a gauge is the new configuration's alone
    process.settle()  # the old plugins stopped: their last values become a constant
    old.hits = 1000
    assert process.metrics["hits_total"].value("s") == 7
    assert "hits_total" in process.render() and "requests_total" in process.render()

    bare_view = process.stage()  # a configuration without the plugin
    bare_view.commit()
    assert process.metrics["hits_total"].value("s") == 7
    assert process.metrics["size"].samples() == []
    process.settle()
    assert process.metrics["hits_total"].value("s") == 7


def test_a_process_lifetime_collector_is_not_counted_twice() -> None:
    process = Registry()
    total = {"n": 4}

    def lifetime() -> list[tuple[tuple[str, ...], float]]:
        return [((), total["n"])]

    for _ in range(3):  # three configurations register the same module-level function
        view = process.stage()
        view.gauge_func("lines_total", "Lines.", (), lifetime, kind="counter")
        view.commit()
        process.settle()
    assert process.metrics["lines_total"].value() == 4
