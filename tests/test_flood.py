"""A random-subdomain flood at a zone whose upstream never answers must not starve the others:
the in-flight pool is shared out per client (``-max-inflight-per-client``) and a ``forward``
can bound its own queries (``max_concurrent``). Everything runs on loopback, bounded in count
and time; the dead upstream is a UDP socket of the test that reads nothing."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port
from tests.kit.metrics import get, sample
from tests.kit.upstream import Upstream

# dead.test goes to DEAD (never answers), healthy.test to HEALTHY; DEAD_OPTIONS in its forward
TWO_ZONES = """\
dead.test:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS
    forward . $DEAD {
        $DEAD_OPTIONS
    }
}
healthy.test:$PORT {
    bind 127.0.0.1
    forward . $HEALTHY
}
"""

HEALTHY_ZONE = """\
$ORIGIN healthy.test.
@ 300 IN SOA ns.healthy.test. admin.healthy.test. 1 3600 600 86400 60
@ 300 IN NS ns.healthy.test.
* 300 IN A 192.0.2.7
"""

FLOOD_QUERIES = 3000  # sent over about FLOOD_SECONDS
FLOOD_SECONDS = 3.0
HEALTHY_QUERIES = 100
POOL = ("-max-inflight", "200", "-max-inflight-per-client", "20")


@pytest.fixture
def dead() -> Iterator[socket.socket]:
    """An upstream that takes every query and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.fixture
def healthy() -> Iterator[Upstream]:
    with Upstream(HEALTHY_ZONE) as up:
        yield up


def flood(port: int, sources: list[str], stop: threading.Event) -> None:
    """Random names under dead.test from ``sources`` (addresses on 127.0.0.0/8), about
    FLOOD_QUERIES in FLOOD_SECONDS; replies are not read."""
    socks = []
    for source in sources:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
        socks.append(sock)
    try:
        batch = 30
        pause = FLOOD_SECONDS / (FLOOD_QUERIES / batch)
        for sent in range(0, FLOOD_QUERIES, batch):
            if stop.is_set():
                break
            for i in range(batch):
                name = f"r{random.getrandbits(40):x}.dead.test."
                socks[(sent + i) % len(socks)].sendto(
                    dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port)
                )
            time.sleep(pause)
    finally:
        for sock in socks:
            sock.close()


def healthy_misses(port: int, source: str) -> list[int | None]:
    """HEALTHY_QUERIES new names under healthy.test from ``source``, one after the other,
    spread over the flood: each one's rcode, None when no reply came within 2 s."""
    rcodes: list[int | None] = []
    for i in range(HEALTHY_QUERIES):
        query = dns.message.make_query(f"h{i}-{random.getrandbits(32):x}.healthy.test.", "A")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2, source=source)
            rcodes.append(reply.rcode())
        except dns.exception.Timeout:
            rcodes.append(None)
        time.sleep(FLOOD_SECONDS / HEALTHY_QUERIES / 2)
    return rcodes


def under_flood(port: int, flooders: list[str], source: str) -> list[int | None]:
    """The healthy rcodes seen from ``source`` while ``flooders`` flood the dead zone."""
    stop = threading.Event()
    thread = threading.Thread(target=flood, args=(port, flooders, stop))
    thread.start()
    try:
        time.sleep(0.5)  # the flood has filled whatever it can
        return healthy_misses(port, source)
    finally:
        stop.set()
        thread.join()


def start(dnsfw, dead: socket.socket, healthy: Upstream, dead_options: str = ""):
    metrics = free_port()
    fw = dnsfw(
        corefile(
            TWO_ZONES,
            METRICS=str(metrics),
            DEAD=f"127.0.0.1:{dead.getsockname()[1]}",
            DEAD_OPTIONS=dead_options,
            HEALTHY=healthy.address,
        ),
        extra_args=POOL,
    )
    return fw, metrics


def test_flood_from_other_clients_leaves_healthy_zone_answered(dnsfw, dead, healthy) -> None:
    fw, metrics = start(dnsfw, dead, healthy)
    rcodes = under_flood(fw.port, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], "127.0.0.1")
    answered = rcodes.count(dns.rcode.NOERROR)
    print(f"healthy-zone misses answered NOERROR during the flood: {answered}/{len(rcodes)}")
    assert answered >= 0.9 * len(rcodes), rcodes
    text = get(metrics, "/metrics")[2]
    # the flooders were held to their share, the pool as a whole never filled
    assert sample(text, "dnsfw_inflight_client_overflow_total") > 0
    assert sample(text, "dnsfw_inflight_overflow_total") == 0


def test_flood_from_the_same_client_is_bounded_by_max_concurrent(dnsfw, dead, healthy) -> None:
    # the flooder also asks for healthy names: its own share must not go to the dead zone
    fw, metrics = start(dnsfw, dead, healthy, dead_options="max_concurrent 10")
    rcodes = under_flood(fw.port, ["127.0.0.1"], "127.0.0.1")
    answered = rcodes.count(dns.rcode.NOERROR)
    print(f"healthy-zone misses answered NOERROR during the flood: {answered}/{len(rcodes)}")
    assert answered >= 0.9 * len(rcodes), rcodes
    text = get(metrics, "/metrics")[2]
    assert sample(text, "coredns_forward_max_concurrent_rejects_total") > 0
    assert sample(text, "dnsfw_inflight_client_overflow_total") == 0
