"""Changing the configuration under a steady load loses nothing.

While a loader sends a bounded, mixed stream of queries (UDP and TCP, cache hits and misses,
blocked and allowed names) through firewall + cache + forward to the upstream fixture, the
test replaces a 100,000-entry domain list through the admin API ten times and reloads the
Corefile ten times (one of them broken). Every query must be answered (none lost, no
SERVFAIL, each with the rcode its name calls for), and each change must show in answers
right after its reply. Timings are printed, not asserted (see the report for figures).
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.kit.api import Api
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port

RATE = 250  # queries per second, all workers together
WORKERS = 4
LIST_SIZE = 100_000
CHANGES = 10


# the admin API and metrics on ADMIN; FLIP is what each reload changes
BIG_LIST = """
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    prometheus 127.0.0.1:$ADMIN
    firewall {
        list big  file big.txt
        list flip domains $FLIP
        group g 10 {
            rule big  10 BLOCK big  response nxdomain
            rule flip 20 BLOCK flip response nxdomain
        }
    }
    cache
    forward . $UPSTREAM
}
"""


@dataclass
class Load:
    """Counts of a loader run; ``wrong`` lists unexpected answers."""

    sent: int = 0
    answered: int = 0
    lost: int = 0
    servfail: int = 0
    wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def queries():
    """An endless mix: (name, type, tcp, expected rcode)."""
    for n in itertools.count():
        kind = n % 10
        if kind < 4:  # a few names asked again and again: cache hits
            yield f"a{n % 20}.w.example.com", "A", False, "NOERROR"
        elif kind < 6:  # a name in the big list (every version keeps them)
            yield f"d{(n * 7919) % LIST_SIZE}.big.example", "A", False, "NXDOMAIN"
        elif kind < 8:  # a new name every time: a cache miss, forwarded upstream
            yield f"u{n}.w.example.com", "A", False, "NOERROR"
        elif kind == 8:
            yield "example.com", "AAAA", False, "NOERROR"
        else:
            yield f"t{n % 5}.w.example.com", "A", True, "NOERROR"


def loader(port: int, stop: threading.Event, load: Load, source) -> None:
    interval = WORKERS / RATE
    next_at = time.monotonic()
    while not stop.is_set():
        with load.lock:
            name, rdtype, tcp, expected = next(source)
            load.sent += 1
        query = dns.message.make_query(name, rdtype, use_edns=0)
        started = time.monotonic()
        try:
            if tcp:
                reply = dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)
            else:
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
        except (dns.exception.Timeout, OSError) as err:
            with load.lock:
                load.lost += 1
                load.wrong.append(f"{name} {rdtype}: {err!r}")
            continue
        elapsed = time.monotonic() - started
        got = dns.rcode.to_text(reply.rcode())
        with load.lock:
            load.answered += 1
            load.latencies.append(elapsed)
            if got == "SERVFAIL":
                load.servfail += 1
            if got != expected:
                load.wrong.append(f"{name} {rdtype}: {got}, expected {expected}")
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            next_at = time.monotonic()  # behind: do not burst to catch up


def rcode(port: int, name: str) -> str:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
    return dns.rcode.to_text(reply.rcode())


def test_list_replacements_and_reloads_under_load(dnsfw, upstream, tmp_path: Path) -> None:
    base = "".join(f"d{i}.big.example\n" for i in range(LIST_SIZE))
    (tmp_path / "big.txt").write_text(base + "victim-0.w.example.com\n")
    admin = free_port()
    d = dnsfw(
        corefile(BIG_LIST, ADMIN=admin, UPSTREAM=upstream.address, FLIP="reload-0.w.example.com")
    )
    api = Api(admin, token=None)
    api.wait()
    deadline = time.monotonic() + 30
    while api.ok("GET", "/v1/lists/big?limit=1")["list"]["status"] != "loaded":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    load = Load()
    stop = threading.Event()
    source = queries()
    workers = [
        threading.Thread(target=loader, args=(d.port, stop, load, source), daemon=True)
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    put_seconds: list[float] = []
    reload_seconds: list[float] = []
    try:
        time.sleep(1)
        broken_at = 5
        for i in range(1, CHANGES + 1):
            started = time.monotonic()
            done = api.ok("PUT", "/v1/lists/big", base + f"victim-{i}.w.example.com\n")
            put_seconds.append(time.monotonic() - started)
            assert done["entries"] == LIST_SIZE + 1
            assert rcode(d.port, f"victim-{i}.w.example.com") == "NXDOMAIN"
            assert rcode(d.port, f"victim-{i - 1}.w.example.com") == "NOERROR"

            if i == broken_at:
                d.conf.write_text(d.conf.read_text().replace("cache", "cache -1"))
                broken = api.call("POST", "/v1/reload")
                assert broken.status == 400 and "cache TTL" in broken.json["error"]
                assert rcode(d.port, f"reload-{i - 1}.w.example.com") == "NXDOMAIN"
                continue
            flip = f"reload-{i}.w.example.com"
            d.write(corefile(BIG_LIST, ADMIN=admin, UPSTREAM=upstream.address, FLIP=flip))
            started = time.monotonic()
            result = api.ok("POST", "/v1/reload")
            reload_seconds.append(time.monotonic() - started)
            assert result["changed"] is True
            assert result["listeners"]["kept"] == [f"dns://127.0.0.1:{d.port}"]
            assert result["http"]["kept"] == [f"127.0.0.1:{admin}"]
            assert rcode(d.port, flip) == "NXDOMAIN"
            previous = i - 2 if i - 1 == broken_at else i - 1
            assert rcode(d.port, f"reload-{previous}.w.example.com") == "NOERROR"
        # the changes may take less than the load needs to show itself (lists are built off
        # the serving process now): let it run on to its minimum, bounded
        deadline = time.monotonic() + 30
        while load.sent <= RATE * 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)

    stats = api.ok("GET", "/v1/stats")
    assert stats["reloads"]["total"] == CHANGES and stats["reloads"]["failed"] == 1
    latencies = sorted(load.latencies)
    print(
        f"\nqueries sent {load.sent}, answered {load.answered}, lost {load.lost}, "
        f"SERVFAIL {load.servfail}; latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms; PUT of {LIST_SIZE} entries "
        f"{min(put_seconds):.2f}-{max(put_seconds):.2f} s; reload "
        f"{min(reload_seconds):.2f}-{max(reload_seconds):.2f} s"
    )
    assert load.sent > RATE * 5  # the load really ran
    assert load.lost == 0, load.wrong[:10]
    assert load.servfail == 0, load.wrong[:10]
    assert load.wrong == []
    assert load.answered == load.sent
