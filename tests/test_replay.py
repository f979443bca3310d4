"""Replays (proxy.replay): a UDP cache hit answered again without the chain, exactly as the
chain would answer it, and never once anything it depended on changed.

The server runs in the test's event loop (so the test can look at its replay table and
plugins) with real sockets on 127.0.0.1, queried with dnspython, against the upstream fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
import structlog.testing

import plugins
import tests.kit.counter_plugin
from plugins.cache.handler import Cache
from plugins.firewall.lists import DomainList
from plugins.firewall.plugin import Firewall
from plugins.log import Log
from proxy.admin import STATS_KEY
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse_file
from proxy.metrics import exposition, exposition_registry
from proxy.replay import not_replayed
from proxy.server import Listener, Server
from tests.kit.corefiles import corefile
from tests.kit.counter_plugin import Counter
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import sample
from tests.kit.upstream import Upstream


class Running:
    def __init__(self, server: Server, port: int) -> None:
        self.server = server
        self.port = port

    @property
    def listener(self) -> Listener:
        (listener,) = self.server.listeners.values()
        return listener

    def plugin(self, kind: type):
        (found,) = [p for p in self.server.config.blocks[0].plugins if isinstance(p, kind)]
        return found

    async def ask(self, q: dns.message.Message, *, tcp: bool = False) -> dns.message.Message:
        if tcp:
            return await dns.asyncquery.tcp(q, "127.0.0.1", port=self.port, timeout=3)
        return await dns.asyncquery.udp(q, "127.0.0.1", port=self.port, timeout=3)

    def replayed(self, q: dns.message.Message) -> bool:
        return q.to_wire()[2:] in self.listener.replays

    async def make_replay(self, q: dns.message.Message, *, asks: int = 2) -> None:
        """Ask ``q`` ``asks`` times (a miss, then the chain's hit keeps a replay of it)."""
        for _ in range(asks):
            await self.ask(q)
        assert self.replayed(q)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, body: str, *, ready: bool = True, **values: object
) -> AsyncIterator[Running]:
    """A server in this loop whose one block is ``body`` (a template: ``values`` fill it)."""
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(SERVER, PORT=port, BODY=corefile(body, **values)))
    config = build(
        parse_file(str(conf), directives=plugins.ORDER),
        AppContext(conf_path=str(conf)),
    )
    server = Server(config)
    await server.start()
    try:
        for _ in range(200 if ready else 0):  # lists load in the background
            if server.ready():
                break
            await asyncio.sleep(0.02)
        assert server.ready() or not ready
        yield Running(server, port)
    finally:
        await server.stop()


def query(name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    q.id = 4321
    return q


def asked(upstream: Upstream, name: str) -> int:
    return len([s for s in upstream.seen if s.name.lower() == name.lower()])


SERVER = """\
.:$PORT {
    bind 127.0.0.1
    $BODY
}
"""

CACHED = """\
cache
forward . $UPSTREAM"""

FIREWALL = """\
firewall {
    list blocked domains blocked.example
    list watched domains mail.example.com
    group g 10 {
        rule block-listed 10 BLOCK blocked response nxdomain
        rule watch 20 ALERT watched
    }
}
$MORE"""

ROUTE53_LOG = """\
log {
    format route53
    output $OUT
}
$MORE"""


async def test_a_cache_hit_is_replayed_as_the_chain_answers_it(tmp_path, upstream):
    async with running(tmp_path, corefile(FIREWALL, MORE=CACHED), UPSTREAM=upstream.address) as d:
        q = query("www.example.com.", want_dnssec=False, use_edns=0)
        first = await d.ask(q)  # a miss: forwarded, stored
        assert not d.replayed(q)
        hit = await d.ask(q)  # the chain's hit: kept for replay
        assert d.replayed(q)
        replay_ids = []
        for qid in (1, 2, 65535):
            q.id = qid
            again = await d.ask(q)
            replay_ids.append(again.id)
            assert again.answer == hit.answer and again.flags == hit.flags
            assert again.rcode() == dns.rcode.NOERROR and again.edns == 0
        assert replay_ids == [1, 2, 65535]
        assert asked(upstream, "www.example.com.") == 1
        assert first.answer == hit.answer

        # a name in mixed case (as DNS 0x20 randomises it) is a cache hit, never a replay
        mixed = query("WwW.ExAmple.COM.")
        for _ in range(3):
            reply = await d.ask(mixed)
            assert reply.question[0].name.to_text() == "WwW.ExAmple.COM."
            assert reply.edns == -1 and reply.answer == hit.answer
        assert not d.replayed(mixed)

        # TTLs age on replays as on hits
        ttl = hit.answer[0].ttl
        await asyncio.sleep(1.2)
        aged = await d.ask(q)
        assert d.replayed(q) and ttl - 2 <= aged.answer[0].ttl <= ttl - 1
        cache = d.plugin(Cache)
        stats = cache.stats()
        assert (stats.success_hits, stats.misses) == (
            8,
            1,
        )  # one entry: case and EDNS are not in its key


async def test_a_list_change_ends_a_replay_at_once(tmp_path, upstream):
    async with running(tmp_path, corefile(FIREWALL, MORE=CACHED), UPSTREAM=upstream.address) as d:
        fw = d.plugin(Firewall)
        direct, chained = query("gmail.com."), query("a.example.")
        for _ in range(3):
            assert (await d.ask(direct)).rcode() == dns.rcode.NOERROR
            assert (await d.ask(chained)).rcode() == dns.rcode.NOERROR
        assert d.replayed(direct) and d.replayed(chained)

        # block the name itself, and a CNAME target of the other (a.example -> b.tracker.example)
        fw.slots["blocked"]._set(
            DomainList.from_entries(["blocked.example", "gmail.com", "b.tracker.example"]), 0, 0
        )
        for q in (direct, chained):
            blocked = await d.ask(q)
            assert blocked.rcode() == dns.rcode.NXDOMAIN and not blocked.answer
            assert not d.replayed(q)
            assert (await d.ask(q)).rcode() == dns.rcode.NXDOMAIN  # block answers: the chain's

        # unblocked again: answered from the cache, replayed once the chain hit it
        fw.slots["blocked"]._set(DomainList.from_entries(["blocked.example"]), 0, 0)
        for q in (direct, chained):
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR
            assert d.replayed(q)
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR
        assert asked(upstream, "gmail.com.") == 1 and asked(upstream, "a.example.") == 1


async def test_a_replay_ends_with_its_cache_entry(tmp_path, upstream):
    body = "cache {\n    success 100 3600 1\n}\nforward . $UPSTREAM"
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        cache = d.plugin(Cache)
        q = query("example.com.")
        for _ in range(3):
            await d.ask(q)
        assert d.replayed(q) and asked(upstream, "example.com.") == 1
        assert cache.flush("example.com.") == 1
        await d.ask(q)  # the chain again: a miss
        assert asked(upstream, "example.com.") == 2 and not d.replayed(q)

        short = query("short-ttl.example.com.")  # TTL 2 upstream
        for _ in range(3):
            await d.ask(short)
        assert d.replayed(short) and asked(upstream, "short-ttl.example.com.") == 1
        await asyncio.sleep(2.1)
        assert (await d.ask(short)).answer[0].ttl == 2  # expired: fetched again
        assert asked(upstream, "short-ttl.example.com.") == 2


async def test_replays_are_logged_and_counted_like_the_chain(tmp_path, upstream):
    out = tmp_path / "query.log"
    body = corefile(ROUTE53_LOG, OUT=out, MORE=corefile(FIREWALL, MORE=CACHED))
    ports = []
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        for name in ("mail.example.com.", "example.com."):
            q = query(name)
            for _ in range(5):
                port = free_port()
                ports.append((name, port))
                await dns.asyncquery.udp(q, "127.0.0.1", port=d.port, source_port=port, timeout=3)
            assert d.replayed(q)
        fw = d.plugin(Firewall)
        assert {r.name: n for r, n in fw.matches.items()} == {"block-listed": 0, "watch": 5}
        stats = d.plugin(Cache).stats()
        assert (stats.success_hits, stats.misses) == (8, 2)
        assert d.plugin(Log).sink.dropped == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["query_name"], int(r["srcport"])) for r in lines] == ports
    for r in lines:
        assert r["rcode"] == "NOERROR" and r["transport"] == "UDP" and r["answers"]
        alerted = r["query_name"] == "mail.example.com."
        assert ("firewall_rule_action" in r) == alerted
        if alerted:
            assert (r["firewall_rule_action"], r["firewall_domain_list_id"]) == ("ALERT", "watched")
    stamps = {r["query_timestamp"] for r in lines}
    assert all(s.endswith("Z") and len(s) == 20 for s in stamps)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("text log", "log\ncache"),
        ("text log with a class filter", "log {\n    class success\n}\ncache"),
        ("prefetch", "cache {\n    prefetch 2\n}"),
        (
            "client groups",
            "firewall {\n    list l domains blocked.example\n"
            "    group g 1 {\n        clients 10.0.0.0/8\n"
            "        rule r 1 BLOCK l\n    }\n}\ncache",
        ),
    ],
)
async def test_no_replay_where_a_stage_cannot_take_part(tmp_path, upstream, name, body):
    body += "\nforward . $UPSTREAM"
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        q = query("example.com.")
        for _ in range(4):
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR
        assert not d.listener.replays, name
        assert d.plugin(Cache).stats().success_hits == 3


async def test_only_whole_udp_answers_are_replayed(tmp_path, upstream):
    async with running(tmp_path, CACHED, UPSTREAM=upstream.address) as d:
        big = query("big.example.com.", "TXT", use_edns=False)  # more than 512 bytes
        for _ in range(3):
            reply = await d.ask(big)
            assert reply.flags & dns.flags.TC
        assert not d.replayed(big)
        over_tcp = query("example.com.")
        for _ in range(3):
            assert (await d.ask(over_tcp, tcp=True)).answer
        assert not d.listener.replays


async def test_a_reload_drops_the_replays(tmp_path, upstream):
    async with running(tmp_path, CACHED, UPSTREAM=upstream.address) as d:
        q = query("example.com.")
        await d.make_replay(q, asks=3)
        conf = tmp_path / "Corefile"
        new = build(
            parse_file(str(conf), directives=plugins.ORDER),
            AppContext(conf_path=str(conf)),
        )
        await d.server.reload(new)
        assert not d.listener.replays
        await d.ask(q)  # the new chain's cache is empty: a miss
        assert asked(upstream, "example.com.") == 2


async def test_replays_count_in_the_metrics_and_admin_stats(tmp_path, upstream):
    stages = f"prometheus 127.0.0.1:{free_port()}\nadmin 127.0.0.1:{free_port()}\n"
    body = stages + corefile(FIREWALL, MORE=CACHED)
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        plain, alerted = query("example.com."), query("mail.example.com.", want_dnssec=True)
        for _ in range(5):
            await d.ask(plain)
            await d.ask(alerted)
        assert d.replayed(plain) and d.replayed(alerted)
        app = d.server.config.app
        text = exposition(exposition_registry(app.metrics), None)[0].decode()
        base = {"server": f"dns://127.0.0.1:{d.port}", "zone": ".", "view": ""}
        udp_a = {**base, "proto": "udp", "family": "1", "type": "A"}
        assert sample(text, "coredns_dns_requests_total", **udp_a) == 10
        assert sample(text, "coredns_dns_do_requests_total", **base) == 5
        for plugin, count in (("forward", 2), ("cache", 8)):
            labels = {**base, "rcode": "NOERROR", "plugin": plugin}
            assert sample(text, "coredns_dns_responses_total", **labels) == count
        assert sample(text, "coredns_dns_request_duration_seconds_count", **base) == 10
        for size in ("request", "response"):
            name = f"coredns_dns_{size}_size_bytes_count"
            assert sample(text, name, **base, proto="udp") == 10
        hits = {"server": base["server"], "type": "success"}
        assert sample(text, "coredns_cache_hits_total", **hits) == 8
        rule = {"rule": "watch", "action": "ALERT"}
        assert sample(text, "dnsfw_firewall_rule_matches_total", **rule) == 5
        stats = app.shared[STATS_KEY].to_json(top=5)
        assert stats["queries"]["total"] == 10
        assert stats["queries"]["by_rcode"] == {"NOERROR": 10}
        assert stats["firewall_actions"] == {"ALERT": 5}
        assert stats["top"]["alerted"] == [{"name": "mail.example.com.", "count": 5}]
        assert stats["top"]["clients"] == [{"name": "127.0.0.1", "count": 10}]


async def test_only_plain_queries_make_replays(tmp_path, upstream):
    """Trailing bytes and EDNS options are answered as usual, but never kept as replay keys."""
    async with running(tmp_path, CACHED, UPSTREAM=upstream.address) as d:
        plain = query("example.com.")
        await d.make_replay(plain)
        padded = query("example.com.", use_edns=0, options=[dns.edns.GenericOption(12, b"\0" * 64)])
        cookie = query("example.com.", use_edns=0, options=[dns.edns.GenericOption(10, b"c" * 8)])
        for q in (padded, cookie):
            for _ in range(3):
                assert (await d.ask(q)).answer
        junk = plain.to_wire() + b"\xff" * 4000  # ARCOUNT 0: the parser stops at the question
        for _ in range(3):
            reply = dns.message.from_wire(await asyncio.to_thread(raw_udp, d.port, junk))
            assert reply.answer and reply.id == plain.id
        assert list(d.listener.replays) == [plain.to_wire()[2:]]


def raw_udp(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65535)


async def test_fail_open_counts_every_query(tmp_path, upstream):
    """A CNAME target that reaches an unloaded list: fail open, counted for every query."""
    body = """\
firewall {
    list ok domains a.example
    list missing url http://127.0.0.1:9/missing.txt
    fail open
    group g 10 {
        rule allow-a 10 ALLOW ok
        rule block-missing 20 BLOCK missing
    }
}
$CACHED"""
    values = {"UPSTREAM": upstream.address}
    async with running(tmp_path, body.replace("$CACHED", CACHED), ready=False, **values) as d:
        q = query("a.example.")  # a.example -> b.tracker.example -> c.cdn.example
        for _ in range(6):
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR
        assert d.plugin(Firewall).fail_counts == {"open": 6, "closed": 0}
        assert not d.listener.replays


async def test_a_replay_that_raises_is_dropped_and_the_chain_answers(tmp_path, upstream):
    out = tmp_path / "query.log"
    body = corefile(ROUTE53_LOG, OUT=out, MORE=CACHED)
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        q = query("example.com.")
        await d.make_replay(q)

        def broken(second: int) -> None:
            raise RuntimeError("a bug in a replay part")

        route53 = d.plugin(Log).route53
        route53._new_second, route53._second = broken, -1
        for _ in range(3):
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR  # the chain answered
        assert d.server.panics == 1  # the replay failed, was reported and dropped
        assert not d.replayed(q)  # and the chain, whose line failed too, kept no new one


async def test_eviction_ends_a_replay_and_frees_its_entry(tmp_path, upstream):
    async with running(tmp_path, CACHED, UPSTREAM=upstream.address) as d:
        q = query("example.com.")
        for _ in range(2):
            await d.ask(q)
        replay = d.listener.replays[q.to_wire()[2:]]
        hit = replay.answer
        assert hit.entry() is not None
        d.plugin(Cache).success.capacity = 1
        await d.ask(query("mail.example.com."))  # stored: example.com is evicted
        gc.collect()
        assert hit.entry() is None  # the replay did not keep the evicted entry alive
        assert (await d.ask(q)).answer
        assert asked(upstream, "example.com.") == 2


@pytest.fixture
def with_counter(monkeypatch):
    """The test plugin ``counter`` (tests/kit/counter_plugin.py) placed right before ``cache``."""
    order = list(plugins.ORDER)
    order.insert(order.index("cache"), "counter")
    monkeypatch.setattr(plugins, "ORDER", tuple(order))
    monkeypatch.setitem(plugins.IMPLEMENTED, "counter", "tests.kit.counter_plugin")


async def test_a_new_plugin_takes_part_with_only_its_effect(tmp_path, upstream, with_counter):
    body = corefile(FIREWALL, MORE=f"counter\n{CACHED}")
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        q = query("example.com.")
        for _ in range(6):
            assert (await d.ask(q)).rcode() == dns.rcode.NOERROR
        blocked = query("blocked.example.")
        for _ in range(2):
            assert (await d.ask(blocked)).rcode() == dns.rcode.NXDOMAIN
        assert d.replayed(q) and not d.replayed(blocked)
        # 4 of the 6 were replays; the counter (behind the firewall) never saw the blocked ones
        assert d.plugin(Counter).tally == {dns.rcode.NOERROR: 6}
        assert d.plugin(Cache).stats().success_hits == 5


async def test_a_plugin_that_cannot_take_part_says_so(
    tmp_path, upstream, with_counter, monkeypatch
):
    body = f"counter\n{CACHED}"
    monkeypatch.setattr(Counter, "replays", not_replayed("it counts by client"))
    with structlog.testing.capture_logs() as logs:
        async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
            q = query("example.com.")
            for _ in range(4):
                await d.ask(q)
            assert not d.listener.replays and d.plugin(Counter).tally[0] == 4
    (said,) = [e for e in logs if e["event"] == "replays_off"]
    assert said["plugin"] == "counter" and said["reason"] == "it counts by client"
    assert said["block"] == f"{tmp_path / 'Corefile'}:1"


async def test_a_plugin_without_the_contract_is_refused_at_setup(
    tmp_path, with_counter, monkeypatch
):
    class Bare:  # serves, but declares nothing about replays
        name = "counter"

        async def serve(self, req, next):
            return await next(req)

    monkeypatch.setattr(tests.kit.counter_plugin, "setup", lambda directive, ctx: Bare())
    conf = tmp_path / "Corefile"
    conf.write_text(".:53 {\n    counter\n}\n")
    with pytest.raises(CorefileError) as err:
        build(parse_file(str(conf), directives=plugins.ORDER), AppContext(conf_path=str(conf)))
    assert f"{conf}:2" in str(err.value) and "does not meet the plugin contract" in str(err.value)


def test_dnsfw_check_says_which_stage_keeps_queries_off_replays(tmp_path):
    conf = tmp_path / "Corefile"
    conf.write_text(".:53 {\n    log\n    cache {\n        prefetch 2\n    }\n    whoami\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == [
        f"{conf}:1: no replays through log: log format common prints each query's own id and "
        "duration",
        f"{conf}:1: no replays through cache: prefetch counts every hit of an entry as it is "
        "served",
        f"{conf}: OK",
    ]
    conf.write_text(
        ".:53 {\n    log . {\n        format route53\n    }\n    cache\n    whoami\n}\n"
    )
    assert run_cli("check", "-conf", str(conf)).stdout.splitlines()[-1] == f"{conf}: OK"
    assert "no replays" not in run_cli("check", "-conf", str(conf)).stdout


async def test_a_route53_log_with_a_class_filter_takes_part(tmp_path, upstream):
    out = tmp_path / "query.log"
    body = corefile(ROUTE53_LOG, OUT=out, MORE=CACHED).replace(
        f"output {out}\n", f"output {out}\n    class denial\n"
    )
    async with running(tmp_path, body, UPSTREAM=upstream.address) as d:
        kept, filtered = query("nothing-here.example.com."), query("example.com.")
        for _ in range(4):
            assert (await d.ask(kept)).rcode() == dns.rcode.NXDOMAIN
            assert (await d.ask(filtered)).rcode() == dns.rcode.NOERROR
        assert d.replayed(kept) and d.replayed(filtered)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query_name"] for r in lines] == ["nothing-here.example.com."] * 4
