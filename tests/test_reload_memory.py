"""Reloads free the configuration they replace: a retired configuration is garbage-collected,
and RSS after 10 reloads of a changed large list is that of one configuration."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import weakref
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from plugins.firewall import FIREWALLS
from proxy.runtime import Runtime
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port, with_port
from tests.kit.reloads import rss_kb, write_big_list

# a block with the stages that register per-configuration state: metric collectors
# (firewall, cache), services, a query log, a large file list; HTTP: the admin API and
# prometheus (their listeners are the process's, kept across reloads)
CONF = """
.:$PORT {
    bind 127.0.0.1
    $HTTP
    log . {
        format route53
        output $LOG
    }
    firewall {
        list big file $LIST
        group g 10 {
            rule block-big 10 BLOCK big response nxdomain
        }
    }
    cache
    whoami
}
"""

ENTRIES = 300_000  # about 12 MB of list (blob and table): a leaked one shows beyond the slack
RELOADS = 10
# RSS the process may gain besides the 10 %: the allocator's free lists and arenas, the
# interpreter's caches, the query log's buffer; a leaked list of ENTRIES is three times this
SLACK_KB = 4 * 1024


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def conf(tmp_path: Path, http: str = "") -> str:
    return corefile(CONF, HTTP=http, LOG=tmp_path / "query.log", LIST=tmp_path / "big.txt")


def test_rss_after_reloads_of_a_changed_big_list(dnsfw, tmp_path: Path) -> None:
    write_big_list(tmp_path / "big.txt", ENTRIES, 0)
    http = f"prometheus 127.0.0.1:{free_port()}\nadmin 127.0.0.1:{free_port()}"
    d = dnsfw(conf(tmp_path, http))
    assert d.query("host7.zone7.example").rcode() == dns.rcode.NXDOMAIN
    assert d.proc is not None
    first = rss_kb(d.proc.pid)  # one configuration, its list loaded
    for generation in range(1, RELOADS + 1):
        write_big_list(tmp_path / "big.txt", ENTRIES, generation)
        d.signal(signal.SIGHUP)
        wait_for(lambda g=generation: d.stderr.count("event='reloaded'") == g, "the reload")
    assert d.query(f"gen{RELOADS}.example").rcode() == dns.rcode.NXDOMAIN
    # every replaced configuration stopped (after the grace time) and was let go
    wait_for(lambda: d.stderr.count("event='retired'") == RELOADS, "the old configurations")
    after = rss_kb(d.proc.pid)
    assert after <= first * 1.10 + SLACK_KB, (
        f"RSS {first} kB after the first load, {after} kB after {RELOADS} reloads"
    )


async def test_a_retired_configuration_is_garbage_collected(tmp_path: Path) -> None:
    write_big_list(tmp_path / "big.txt", ENTRIES, 0)
    path = tmp_path / "Corefile"
    path.write_text(with_port(conf(tmp_path), free_port()))
    runtime = Runtime(str(path), shutdown_grace=0.1)
    thresholds = gc.get_threshold()
    runtime.configure()
    serving = asyncio.ensure_future(runtime.run())
    try:
        while not runtime.announced:  # the first configuration serves, its list loaded
            assert not serving.done(), serving.result()
            await asyncio.sleep(0.05)
        old = weakref.ref(runtime.config)
        (firewall,) = runtime.config.app.services.get(FIREWALLS)
        old_firewall = weakref.ref(firewall)
        del firewall
        write_big_list(tmp_path / "big.txt", ENTRIES, 1)
        result = await runtime.reload("test")
        assert result.ok, result.error
        for _ in range(200):  # the grace time, then the old plugins stop
            await asyncio.sleep(0.05)
            gc.collect()
            if old() is None:
                break
        held = old()
        if held is not None:
            referrers = [type(r).__name__ for r in gc.get_referrers(held)]
            pytest.fail(f"the replaced configuration is still referenced by {referrers}")
        assert old_firewall() is None
        (firewall,) = runtime.config.app.services.get(FIREWALLS)
        assert "gen1.example" in firewall.slots["big"].current
    finally:
        runtime.stop()
        await serving
        gc.unfreeze()  # the runtime froze this process's objects (tune_gc)
        gc.set_threshold(*thresholds)


async def test_a_retired_cache_is_freed_without_the_garbage_collector(tmp_path: Path) -> None:
    """The replaced configuration is reference-cyclic, so whatever only it holds waits for a
    full collection, which holds the event loop (tens of ms per 10,000 cache entries): its
    cache lets go of its entries when it stops, so they are freed by reference counting."""
    write_big_list(tmp_path / "big.txt", 10, 0)
    port = free_port()
    path = tmp_path / "Corefile"
    path.write_text(with_port(conf(tmp_path), port))
    runtime = Runtime(str(path), shutdown_grace=0.1)
    thresholds = gc.get_threshold()
    runtime.configure()
    serving = asyncio.ensure_future(runtime.run())
    try:
        while not runtime.announced:
            assert not serving.done(), serving.result()
            await asyncio.sleep(0.05)
        for i in range(50):  # whoami answers every name; the cache keeps each answer
            query = dns.message.make_query(f"name{i}.example", "A")
            reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=3)
            assert reply.rcode() == dns.rcode.NOERROR
        (block,) = runtime.config.blocks
        (cache,) = [p for p in block.plugins if p.name == "cache"]
        entries = [weakref.ref(e) for e in cache.success.entries.values()]
        assert len(entries) == 50
        del cache, block
        gc.disable()  # from here on only reference counting frees anything
        result = await runtime.reload("test")
        assert result.ok, result.error
        for _ in range(100):  # the grace time, then the old plugins stop
            await asyncio.sleep(0.05)
            if all(entry() is None for entry in entries):
                break
        assert [entry() for entry in entries if entry() is not None] == []
    finally:
        gc.enable()
        runtime.stop()
        await serving
        gc.unfreeze()
        gc.set_threshold(*thresholds)
