"""Forwarding loops: dnsfw refuses a ``forward`` to one of its own listeners at setup, and the
``loop`` plugin (CoreDNS's) stops the server, exit status 1, when its start-up probe comes back
more than twice (a loop through another resolver)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dns.rcode
import dns.rdatatype
import pytest

import plugins
from plugins.bind import local_addresses
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse
from tests.kit.dnsfw import Dnsfw, run_cli
from tests.kit.servers import UdpRelay

# --- a forward to one of dnsfw's own listeners ---------------------------------------------


def check(text: str) -> str | None:
    """The setup error of a Corefile (as `dnsfw check` sets it up), or None."""
    blocks = parse(text, filename="Corefile", directives=plugins.ORDER)
    try:
        build(blocks, AppContext(conf_path="Corefile", checking=True))
    except CorefileError as err:
        return str(err)
    return None


def looping(line: int, to: str, listener: str) -> str:
    return (
        f"plugin/forward: Corefile:{line} - Error during parsing: forward to {to} would loop: "
        f"it is dnsfw's own listener {listener}"
    )


@pytest.mark.parametrize(
    ("bind", "to", "listener"),
    [
        ("", "127.0.0.1:1053", "dns://:1053"),  # a wildcard listener gets loopback queries
        ("", "127.0.0.53:1053", "dns://:1053"),  # every loopback address
        ("", "[::1]:1053", "dns://:1053"),
        ("", "0.0.0.0:1053", "dns://:1053"),  # 0.0.0.0 as a destination is this host
        ("bind 127.0.0.1", "127.0.0.1:1053", "dns://127.0.0.1:1053"),
        ("bind 127.0.0.1", "0.0.0.0:1053", "dns://127.0.0.1:1053"),
        ("bind 0.0.0.0", "127.0.0.1:1053", "dns://0.0.0.0:1053"),
        ("bind ::", "127.0.0.1:1053", "dns://[::]:1053"),
    ],
)
def test_a_forward_to_an_own_listener_is_refused(bind: str, to: str, listener: str):
    text = f".:1053 {{\n    {bind}\n    forward . {to}\n}}\n"
    assert check(text) == looping(3, to, listener)


def test_a_local_address_reaches_a_wildcard_listener():
    address = next(
        (a for a in sorted(local_addresses()) if ":" not in a and not a.startswith("127.")), None
    )
    assert address is not None, "the test host has an IPv4 address besides loopback"
    assert check(f".:1053 {{\n    forward . {address}:1053\n}}\n") == looping(
        2, f"{address}:1053", "dns://:1053"
    )


def test_a_forward_to_another_blocks_listener_is_refused_too():
    text = ".:1053 {\n    forward . 127.0.0.1:1054\n}\nexample.org:1054 {\n    whoami\n}\n"
    assert check(text) == looping(2, "127.0.0.1:1054", "dns://:1054")


@pytest.mark.parametrize(
    "text",
    [
        ".:1053 {\n    forward . 127.0.0.1:53\n}\n",  # another port
        ".:1053 {\n    bind 127.0.0.1\n    forward . 127.0.0.2:1053\n}\n",  # not bound there
        ".:1053 {\n    bind 0.0.0.0\n    forward . [::1]:1053\n}\n",  # an IPv4-only wildcard
        ".:1053 {\n    forward . tls://127.0.0.1:1053\n}\n",  # dnsfw serves no DNS over TLS
        ".:1053 {\n    forward . 192.0.2.53:1053\n}\n",  # another host
    ],
)
def test_other_targets_are_fine(text: str):
    assert check(text) is None


def test_check_and_run_refuse_it_with_file_and_line(tmp_path: Path):
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    bind 127.0.0.1\n    forward . 127.0.0.1:1053\n}\n")
    for command in ("check", "run"):
        result = run_cli(command, "-conf", str(conf))
        assert result.returncode == 1, (command, result)
        assert result.stderr.strip() == (
            f"plugin/forward: {conf}:3 - Error during parsing: forward to 127.0.0.1:1053 would "
            "loop: it is dnsfw's own listener dns://127.0.0.1:1053"
        )


# --- the loop plugin ------------------------------------------------------------------------


def test_loop_detects_a_loop_through_another_resolver_and_exits_1(tmp_path: Path):
    d = Dnsfw(".:$PORT {\n}\n", tmp_path)
    with UdpRelay(d.port) as relay:
        d.write(f".:$PORT {{\n    bind 127.0.0.1\n    loop\n    forward . {relay.address}\n}}\n")
        d.start(wait=False)
        assert d.proc is not None
        try:
            status = d.proc.wait(30)
        finally:
            d.stop()
    assert status == 1, d.stderr
    detected = next(line for line in d.stderr.splitlines() if "event='loop_detected'" in line)
    assert "level='error'" in detected and "zone='.'" in detected
    assert f"listener='dns://127.0.0.1:{d.port}'" in detected
    probe = re.search(r"probe='HINFO (\d+)\.(\d+)\.'", detected)
    assert probe, detected
    fatal = next(line for line in d.stderr.splitlines() if "event='fatal'" in line)
    assert f'detected for zone ".". Query: "HINFO {probe[1]}.{probe[2]}."' in fatal
    assert relay.relayed >= 2  # the probe went round through the relay


def test_loop_without_a_loop_probes_once_and_serves(tmp_path: Path, upstream):
    d = Dnsfw(
        f"example.org:$PORT {{\n    bind 127.0.0.1\n    loop\n    forward . {upstream.address}\n}}\n",
        tmp_path,
    )
    d.start()
    try:
        deadline = time.monotonic() + 10
        while not any(s.qtype == "HINFO" for s in upstream.seen):
            assert time.monotonic() < deadline, "no probe reached the upstream"
            time.sleep(0.05)
        (probe,) = [s for s in upstream.seen if s.qtype == "HINFO"]
        assert re.fullmatch(r"\d+\.\d+\.example\.org\.", probe.name)
        # the probe again, as a client: loop counts no more, the server keeps serving
        for _ in range(4):
            assert d.query(probe.name, dns.rdatatype.HINFO).rcode() == dns.rcode.NXDOMAIN
        assert d.proc is not None and d.proc.poll() is None
        assert "loop_detected" not in d.stderr
    finally:
        status = d.stop()
    assert status == 0


def test_loop_takes_no_arguments(tmp_path: Path):
    assert check(".:1053 {\n    loop now\n}\n") == (
        "plugin/loop: Corefile:2 - Error during parsing: Wrong argument count or unexpected "
        "line ending after 'loop'"
    )
    assert check(".:1053 {\n    loop\n    loop\n}\n") == (
        "plugin/loop: Corefile:3 - Error during parsing: this plugin can only be used once per "
        "Server Block"
    )
