"""The cache stage without sockets: its serve() driven with a scripted next plugin and a fake
clock, so TTL ageing, expiry, prefetch and serve_stale are exact and instant."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

import plugins
from plugins.cache import Cache
from plugins.cache.store import (
    BYTES_PER_ENTRY,
    MAX_ENTRY_BYTES,
    SUCCESS,
    Store,
    make_entry,
)
from proxy import pipeline, wire
from proxy.config import AppContext, build
from proxy.corefile import parse as parse_corefile
from proxy.names import text_to_wire
from proxy.request import Request, Response, parse
from proxy.wire import AnswerInfo
from tests.kit.corefiles import BLOCK_WHOAMI, corefile

SERVER = "dns://:53"


def make_cache(body: str = "cache") -> Cache:
    text = corefile(BLOCK_WHOAMI, KEYS=".", LINES=body)
    cfg = build(parse_corefile(text, directives=plugins.ORDER), AppContext("Corefile"))
    cache = cfg.blocks[0].plugins[0]
    assert isinstance(cache, Cache)
    cache.clock = Clock()
    return cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query(
    name: str = "example.com.",
    rdtype: str = "A",
    *,
    edns: bool = False,
    do: bool = False,
    cd: bool = False,
    ad: bool = False,
    rd: bool = True,
) -> Request:
    msg = dns.message.make_query(name, rdtype, use_edns=0 if edns or do else None, want_dnssec=do)
    if cd:
        msg.flags |= dns.flags.CD
    if ad:
        msg.flags |= dns.flags.AD
    if not rd:
        msg.flags &= ~dns.flags.RD
    return parse(msg.to_wire(), ("127.0.0.1", 5353), "udp", SERVER)


Builder = Callable[[dns.message.Message], dns.message.Message]


def answer(ttl: int = 300, address: str = "192.0.2.1", *, ad: bool = False) -> Builder:
    def build_reply(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA | (dns.flags.AD if ad else 0)
        r.answer.append(dns.rrset.from_text(q.question[0].name, ttl, "IN", "A", address))
        r.additional.append(
            dns.rrset.from_text("ns.example.com.", ttl + 50, "IN", "A", "192.0.2.53")
        )
        return r

    return build_reply


def negative(rcode: int, *, soa_ttl: int = 300, minimum: int = 60, soa: bool = True) -> Builder:
    def build_reply(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.set_rcode(rcode)
        if soa:
            r.authority.append(
                dns.rrset.from_text(
                    "example.com.",
                    soa_ttl,
                    "IN",
                    "SOA",
                    f"ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 {minimum}",
                )
            )
        return r

    return build_reply


class Backend:
    """The next plugin: answers from ``builder`` and records what it was asked."""

    def __init__(self, builder: Builder | None = None) -> None:
        self.builder = builder or answer()
        self.calls: list[Request] = []
        self.fail = False  # answer like a forward that got nothing back

    async def __call__(self, req: Request) -> Response:
        self.calls.append(req)
        if self.fail:
            return req.reply(wire.SERVFAIL, source="error", error="read udp: i/o timeout")
        reply = self.builder(dns.message.from_wire(req.wire))
        data = reply.to_wire()
        return Response(data, reply.rcode(), "upstream", AnswerInfo(data))


def run(cache: Cache, req: Request, backend: Backend) -> Response:
    """serve() driven as the server drives it; a result that needs no I/O comes at once."""
    result = pipeline.start(cache.serve(req, backend))
    assert isinstance(result, Response), "the cache suspended on a path that needs no I/O"
    return result


def msg(resp: Response) -> dns.message.Message:
    return dns.message.from_wire(resp.wire)


def ttls(resp: Response) -> list[int]:
    m = msg(resp)
    return [rrset.ttl for section in (m.answer, m.authority, m.additional) for rrset in section]


# --- hits ----------------------------------------------------------------------------------


def test_hit_replays_with_client_id_case_and_aged_ttl() -> None:
    cache, backend = make_cache(), Backend()
    first = run(cache, query("example.com."), backend)
    assert first.source == "upstream" and ttls(first) == [300, 300]
    cache.clock.now += 2.9  # whole seconds count, as in CoreDNS
    req = query("ExAmPle.CoM.")
    hit = run(cache, req, backend)
    assert len(backend.calls) == 1
    assert hit.source == "cache" and hit.rcode == 0
    assert hit.wire[:2] == req.wire[:2]
    assert hit.wire[12 : req.qend] == req.wire[12 : req.qend]  # the client's letter case
    assert b"\x07ExAmPle\x03CoM\x00" in hit.wire
    assert ttls(hit) == [298, 298]
    m = msg(hit)
    assert m.flags & dns.flags.QR and m.flags & dns.flags.RA and m.flags & dns.flags.RD
    assert [str(r) for r in m.answer[0]] == ["192.0.2.1"]


def test_hit_carries_the_entry_info_computed_once() -> None:
    cache, backend = make_cache(), Backend()
    run(cache, query(), backend)
    a = run(cache, query(), backend)
    cache.clock.now += 5
    b = run(cache, query(), backend)
    assert a.info is b.info and a.info is not None
    assert a.info.ancount == 1 and a.info.summary() == (("192.0.2.1", "A", "IN"),)


def test_keepttl_keeps_the_stored_ttl_until_expiry() -> None:
    cache, backend = make_cache("cache {\n keepttl\n}"), Backend(answer(ttl=30))
    run(cache, query(), backend)
    cache.clock.now += 20
    assert ttls(run(cache, query(), backend)) == [30, 30]
    cache.clock.now += 10
    run(cache, query(), backend)
    assert len(backend.calls) == 2  # expired all the same


def test_expired_entry_is_fetched_again() -> None:
    cache, backend = make_cache(), Backend(answer(ttl=10))
    run(cache, query(), backend)
    cache.clock.now += 9.5
    assert ttls(run(cache, query(), backend)) == [1, 1]
    cache.clock.now += 0.5
    assert asyncio.run(cache.serve(query(), backend)).source == "upstream"
    assert len(backend.calls) == 2


def test_rd_comes_from_the_client() -> None:
    cache, backend = make_cache(), Backend()
    run(cache, query(), backend)
    hit = run(cache, query(rd=False), backend)
    assert not msg(hit).flags & dns.flags.RD


# --- EDNS, DO, CD, AD ------------------------------------------------------------------------


def test_edns_follows_each_client_on_one_entry() -> None:
    cache, backend = make_cache(), Backend()
    first = run(cache, query(edns=True), backend)
    assert msg(first).edns == 0
    plain = run(cache, query(), backend)
    assert msg(plain).edns == -1 and plain.wire[10:12] == b"\x00\x01"  # only the glue A
    with_opt = run(cache, query(edns=True), backend)
    m = msg(with_opt)
    assert m.edns == 0 and m.payload == 1232 and not m.ednsflags & dns.flags.DO
    assert with_opt.wire[10:12] == b"\x00\x02"
    assert len(backend.calls) == 1


def test_entry_stored_without_edns_gets_opt_for_an_edns_client() -> None:
    cache, backend = make_cache(), Backend()
    run(cache, query(), backend)
    assert msg(run(cache, query(edns=True), backend)).edns == 0
    assert len(backend.calls) == 1


def test_do_and_cd_are_part_of_the_key() -> None:
    cache, backend = make_cache(), Backend()
    for _ in range(2):
        run_any(cache, query(), backend)
        do = run_any(cache, query(do=True), backend)
        run_any(cache, query(cd=True), backend)
        run_any(cache, query(do=True, cd=True), backend)
    assert len(backend.calls) == 4
    m = msg(do)
    assert m.ednsflags & dns.flags.DO
    assert msg(run(cache, query(cd=True), backend)).flags & dns.flags.CD


def run_any(cache: Cache, req: Request, backend: Backend) -> Response:
    return asyncio.run(cache.serve(req, backend))


@pytest.mark.parametrize(
    ("client", "ad_kept"),
    [({}, False), ({"ad": True}, True), ({"do": True}, True), ({"edns": True}, False)],
)
def test_ad_only_for_clients_that_ask(client: dict[str, bool], ad_kept: bool) -> None:
    cache, backend = make_cache(), Backend(answer(ad=True))
    first = run_any(cache, query(**client), backend)
    hit = run(cache, query(**client), backend)
    for resp in (first, hit):
        assert bool(msg(resp).flags & dns.flags.AD) is ad_kept


# --- what is stored, for how long -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "upstream_ttl", "cached"),
    [
        ("cache", 1, 5),
        ("cache", 86400, 3600),
        ("cache 30", 86400, 30),
        ("cache {\n success 1024 100 10\n}", 2, 10),
        ("cache {\n success 1024 100 10\n}", 50, 50),
        ("cache {\n success 1024 7200\n}", 86400, 3600),  # no message TTL is read above 1h
        ("cache {\n success 1024 10 20\n}", 15, 10),  # the cap wins over the minimum
    ],
)
def test_ttl_is_clamped_and_written_into_the_reply(
    body: str, upstream_ttl: int, cached: int
) -> None:
    cache, backend = make_cache(body), Backend(answer(ttl=upstream_ttl))
    assert ttls(run_any(cache, query(), backend)) == [cached, cached]
    cache.clock.now += cached - 1
    assert ttls(run(cache, query(), backend)) == [1, 1]
    cache.clock.now += 1
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2


@pytest.mark.parametrize(
    ("body", "builder", "cached"),
    [
        ("cache", negative(dns.rcode.NXDOMAIN), 60),  # min(SOA TTL, MINIMUM)
        ("cache", negative(dns.rcode.NOERROR), 60),  # NODATA
        ("cache", negative(dns.rcode.NXDOMAIN, soa_ttl=40, minimum=600), 40),
        ("cache", negative(dns.rcode.NXDOMAIN, soa_ttl=7200, minimum=7200), 1800),
        ("cache {\n denial 1024 30\n}", negative(dns.rcode.NXDOMAIN), 30),
        ("cache {\n denial 1024 300 120\n}", negative(dns.rcode.NOERROR), 120),
    ],
)
def test_denials_are_cached_from_the_soa(body: str, builder: Builder, cached: int) -> None:
    cache, backend = make_cache(body), Backend(builder)
    first = run_any(cache, query("nope.example.com."), backend)
    assert ttls(first) == [cached]
    cache.clock.now += 1
    hit = run(cache, query("nope.example.com."), backend)
    assert ttls(hit) == [cached - 1]
    assert hit.rcode == msg(first).rcode()
    assert (len(cache.success), len(cache.denial)) == (0, 1)
    assert cache.stats().denial_hits == 1


def test_nodata_for_another_type_does_not_hide_the_answer() -> None:
    cache = make_cache()
    run_any(cache, query(rdtype="AAAA"), Backend(negative(dns.rcode.NOERROR)))
    resp = run_any(cache, query(rdtype="A"), Backend())
    assert resp.source == "upstream"


@pytest.mark.parametrize(
    ("builder", "why"),
    [
        (negative(dns.rcode.NXDOMAIN, soa=False), "NXDOMAIN without SOA"),
        (negative(dns.rcode.REFUSED, soa=False), "REFUSED"),
        (negative(dns.rcode.FORMERR, soa=False), "FORMERR"),
    ],
)
def test_not_cached(builder: Builder, why: str) -> None:
    cache, backend = make_cache(), Backend(builder)
    run_any(cache, query(), backend)
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2, why
    assert len(cache.success) + len(cache.denial) == 0


def test_dangling_cname_without_soa_is_not_cached() -> None:
    def dangling(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.answer.append(
            dns.rrset.from_text(q.question[0].name, 300, "IN", "CNAME", "gone.example.")
        )
        return r

    cache, backend = make_cache(), Backend(dangling)
    run_any(cache, query(), backend)
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2


def test_cname_chain_answer_is_cached() -> None:
    def chain(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "CNAME", "b.example."))
        r.answer.append(dns.rrset.from_text("b.example.", 100, "IN", "A", "192.0.2.9"))
        return r

    cache, backend = make_cache(), Backend(chain)
    run_any(cache, query(), backend)
    hit = run(cache, query(), backend)
    assert ttls(hit) == [100, 100]
    assert hit.info is not None and hit.info.chain == (b"\x01b\x07example\x00",)


def test_zone_transfers_are_not_cached() -> None:
    cache, backend = make_cache(), Backend(negative(dns.rcode.NOERROR))
    for _ in range(2):
        run_any(cache, query(rdtype="AXFR"), backend)
        run_any(cache, query(rdtype="IXFR"), backend)
    assert len(backend.calls) == 4


def test_truncated_reply_is_not_cached() -> None:
    def truncated(q: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(q)
        r.flags |= dns.flags.TC
        return r

    cache, backend = make_cache(), Backend(truncated)
    run_any(cache, query(), backend)
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2


def test_reply_to_another_question_is_dropped() -> None:
    def other(q: dns.message.Message) -> dns.message.Message:
        return answer()(dns.message.make_query("other.example.", "A"))

    cache, backend = make_cache(), Backend(other)
    run_any(cache, query(), backend)
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2 and cache.stats().drops == 2


def test_servfail_is_cached_five_seconds_by_default() -> None:
    cache, backend = make_cache(), Backend(negative(dns.rcode.SERVFAIL, soa=False))
    run_any(cache, query(), backend)
    cache.clock.now += 4
    assert run(cache, query(), backend).rcode == dns.rcode.SERVFAIL
    cache.clock.now += 1
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2


def test_servfail_zero_disables_and_chain_failures_are_never_cached() -> None:
    cache, backend = make_cache("cache {\n servfail 0\n}"), Backend(negative(2, soa=False))
    run_any(cache, query(), backend)
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2
    cache, backend = make_cache(), Backend()
    backend.fail = True
    failed = run_any(cache, query(), backend)
    assert failed.error == "read udp: i/o timeout"
    run_any(cache, query(), backend)
    assert len(backend.calls) == 2


def test_disable_per_zone() -> None:
    cache = make_cache("cache {\n disable success example.com\n disable denial\n}")
    backend = Backend()
    run_any(cache, query("www.example.com."), backend)
    run_any(cache, query("www.example.com."), backend)
    run_any(cache, query("www.example.org."), backend)
    run_any(cache, query("www.example.org."), backend)
    nx = Backend(negative(dns.rcode.NXDOMAIN))
    run_any(cache, query("nope.example.org."), nx)
    run_any(cache, query("nope.example.org."), nx)
    assert (len(backend.calls), len(nx.calls)) == (3, 2)


def test_names_outside_the_zones_pass_through() -> None:
    cache, backend = make_cache("cache example.org"), Backend()
    for _ in range(2):
        run_any(cache, query("www.example.com."), backend)
        run_any(cache, query("www.Example.ORG."), backend)
    assert len(backend.calls) == 3
    assert cache.stats().requests == 2


# --- bounds ----------------------------------------------------------------------------------


def reply_of_size(name: str, size: int = 0) -> bytes:
    """A TXT answer for ``name`` of about ``size`` bytes (at least one record)."""
    q = dns.message.make_query(name, "TXT")
    r = dns.message.make_response(q)
    strings = max(1, (size - 40) // 201)
    r.answer.append(
        dns.rrset.from_text(name, 300, "IN", "TXT", " ".join(['"' + "x" * 200 + '"'] * strings))
    )
    return r.to_wire()


def entry_for(name: str, size: int = 0, now: float = 0.0):
    data = reply_of_size(name, size)
    key = (text_to_wire(name), 16, 1, 0)
    return make_entry(key, SUCCESS, data, AnswerInfo(data), 300, now)


def test_store_capacity_evicts_the_oldest() -> None:
    store = Store(1024)
    for i in range(1100):
        assert store.put(entry_for(f"n{i}.example.")) == (1 if i >= 1024 else 0)
    assert len(store) == 1024 and store.evictions == 76
    assert (text_to_wire("n75.example."), 16, 1, 0) not in store.entries
    assert (text_to_wire("n76.example."), 16, 1, 0) in store.entries


def test_store_byte_budget_bounds_memory() -> None:
    store = Store(1024)
    big = [entry_for(f"b{i}.example.", 1800) for i in range(400)]
    assert all(e is not None and e.size > 3000 for e in big)
    for e in big:
        store.put(e)
    assert store.used <= 1024 * BYTES_PER_ENTRY
    assert len(store) < 400 and store.evictions == 400 - len(store)


def test_replies_over_the_entry_limit_are_not_stored() -> None:
    assert len(reply_of_size("big.example.", MAX_ENTRY_BYTES + 300)) > MAX_ENTRY_BYTES
    assert entry_for("big.example.", MAX_ENTRY_BYTES + 300) is None
    assert len(reply_of_size("fits.example.", MAX_ENTRY_BYTES - 300)) <= MAX_ENTRY_BYTES
    assert entry_for("fits.example.", MAX_ENTRY_BYTES - 300) is not None


def test_eviction_metric_through_serve() -> None:
    cache, backend = make_cache("cache {\n success 1\n}"), Backend()
    for i in range(1030):
        run_any(cache, query(f"n{i}.example.com."), backend)
    stats = cache.stats()
    assert stats.success_entries == 1024 and stats.success_evictions == 6
    text = cache_metrics(cache)
    assert (
        'coredns_cache_evictions_total{server="dns://:53",type="success",zones=".",view=""} 6'
        in text
    )


def cache_metrics(cache: Cache) -> str:
    from plugins.cache.handler import register_metrics
    from proxy.metrics import Registry

    registry = Registry()
    register_metrics(registry, [cache])
    return registry.render()


# --- prefetch and serve_stale ------------------------------------------------------------------


async def test_prefetch_refreshes_a_popular_entry_before_it_expires() -> None:
    cache = make_cache("cache {\n prefetch 2 1m 50%\n}")
    backend = Backend(answer(ttl=10))
    await cache.serve(query(), backend)
    cache.clock.now += 4  # 6 s left: above 50 %
    run(cache, query(), backend)
    run(cache, query(), backend)
    assert not cache.tasks and len(backend.calls) == 1
    cache.clock.now += 1.5  # 5 s left; the third hit in a row triggers one fetch
    hit = run(cache, query(), backend)
    run(cache, query(), backend)
    assert ttls(hit) == [5, 5] and len(cache.tasks) == 1
    await asyncio.gather(*cache.tasks)
    assert len(backend.calls) == 2 and backend.calls[1] is not backend.calls[0]
    fresh = run(cache, query(), backend)
    assert ttls(fresh) == [10, 10] and cache.stats().prefetches == 1
    assert len(backend.calls) == 2


async def test_prefetch_needs_hits_without_a_long_gap() -> None:
    cache = make_cache("cache {\n prefetch 2 1s 90%\n}")
    backend = Backend(answer(ttl=100))
    await cache.serve(query(), backend)
    for _ in range(3):
        cache.clock.now += 2  # gaps longer than the 1s window: never two in a row
        run(cache, query(), backend)
    assert not cache.tasks and cache.stats().prefetches == 0


async def test_serve_stale_immediate_answers_ttl_zero_and_refreshes() -> None:
    cache = make_cache("cache {\n serve_stale 1m\n}")
    backend = Backend(answer(ttl=10))
    await cache.serve(query(), backend)
    backend.fail = True
    cache.clock.now += 15
    stale = run(cache, query(), backend)
    assert stale.source == "cache" and ttls(stale) == [0, 0]
    run(cache, query(), backend)  # a refresh is already running: no second one
    await asyncio.gather(*cache.tasks)
    assert len(backend.calls) == 2
    backend.fail = False
    run(cache, query(), backend)
    await asyncio.gather(*cache.tasks)
    assert ttls(run(cache, query(), backend)) == [10, 10]
    stats = cache.stats()
    assert (stats.served_stale, stats.prefetches) == (3, 2)
    cache.clock.now += 10 + 61  # past the stale window: a plain miss
    backend.fail = True
    assert (await cache.serve(query(), backend)).error is not None


async def test_serve_stale_verify_asks_first() -> None:
    cache = make_cache("cache {\n serve_stale 1m verify\n}")
    backend = Backend(answer(ttl=10))
    await cache.serve(query(), backend)
    cache.clock.now += 11
    backend.fail = True
    stale = await cache.serve(query(), backend)
    assert stale.source == "cache" and ttls(stale) == [0, 0] and not cache.tasks
    backend.fail = False
    backend.builder = answer(ttl=10, address="192.0.2.2")
    fresh = await cache.serve(query(), backend)
    assert fresh.source == "upstream" and ttls(fresh) == [10, 10]
    assert str(msg(run(cache, query(), backend)).answer[0][0]) == "192.0.2.2"


# --- admin hooks -------------------------------------------------------------------------------


def test_flush_one_name_or_everything() -> None:
    cache, backend = make_cache(), Backend()
    run_any(cache, query("a.example.com."), backend)
    run_any(cache, query("a.example.com.", do=True), backend)
    run_any(cache, query("b.example.com."), backend)
    run_any(cache, query("nx.example.com."), Backend(negative(dns.rcode.NXDOMAIN)))
    assert cache.flush("A.Example.com") == 2
    assert cache.flush("a.example.com.") == 0
    assert cache.stats().success_entries == 1
    assert cache.flush() == 2
    assert (cache.stats().success_entries, cache.stats().denial_entries) == (0, 0)
    with pytest.raises(ValueError):
        cache.flush("bad..name")


def test_metrics_read_the_counters() -> None:
    cache, backend = make_cache(), Backend()
    run_any(cache, query(), backend)
    run(cache, query(), backend)
    text = cache_metrics(cache)
    labels = 'server="dns://:53",zones=".",view=""'
    assert f"coredns_cache_requests_total{{{labels}}} 2" in text
    assert f"coredns_cache_misses_total{{{labels}}} 1" in text
    assert 'coredns_cache_hits_total{server="dns://:53",type="success",zones=".",view=""} 1' in text
    assert 'coredns_cache_entries{server="dns://:53",type="success",zones=".",view=""} 1' in text
