"""The admin API's bounded statistics: Misra-Gries top-k and the per-query counters."""

from __future__ import annotations

import random
from collections import Counter

from plugins.admin import Admin
from plugins.firewall.policy import Decision
from proxy import wire
from proxy.admin import QueryStats, TopK
from proxy.names import text_to_wire
from proxy.request import Request, Response


def test_topk_finds_the_heavy_keys_in_bounded_memory() -> None:
    rng = random.Random(7)
    stream = [f"heavy{i}" for i in range(5) for _ in range(2000 - i * 100)]
    stream += [f"noise{rng.randrange(100_000)}" for _ in range(50_000)]
    rng.shuffle(stream)
    top = TopK(capacity=64)
    for key in stream:
        top.add(key)
        assert len(top.counts) <= 64
    exact = Counter(stream)
    best = top.top(5)
    assert [row["name"] for row in best] == [f"heavy{i}" for i in range(5)]
    for row in best:
        # counts are low by at most the number of decrement passes, never high
        assert exact[row["name"]] - top.passes <= row["count"] <= exact[row["name"]]
    assert top.passes <= len(stream) // 64


def test_topk_exact_while_under_capacity() -> None:
    top = TopK(capacity=4)
    for key in "abacab":
        top.add(key)
    assert top.top(2) == [{"name": "a", "count": 3}, {"name": "b", "count": 2}]
    assert top.passes == 0


def answered(resp: Response):
    async def next_stage(req: Request) -> Response:
        return resp

    return next_stage


def request(name: str, client: str = "192.0.2.1") -> Request:
    qname = text_to_wire(name)
    data = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + b"\x00\x01\x00\x01"
    req = Request(
        data, qname, 1, 1, len(data), False, 512, False, (client, 5353), "udp", "dns://:53"
    )
    req.start = 1000.25  # all in one second of the monotonic clock
    return req


async def test_query_stats_counts_rcodes_actions_names_and_rates() -> None:
    stats = QueryStats()
    observe = Admin(stats).serve  # the chain stage that feeds them
    blocked = Decision("BLOCK", "g", "r", "l")
    via_chain = Decision("BLOCK", "g", "r", "l", "target.example.", True)
    for i in range(3):
        req = request("bad.example", client=f"192.0.2.{i % 2}")
        req.meta["firewall"] = blocked
        await observe(req, answered(Response(b"", wire.NXDOMAIN, "firewall")))
    req = request("www.example")
    req.meta["firewall"] = via_chain
    await observe(req, answered(Response(b"", wire.NXDOMAIN, "firewall")))
    req = request("watch.example")
    req.meta["firewall"] = Decision("ALERT", "g", "a", "l")
    await observe(req, answered(Response(b"", wire.NOERROR, "upstream")))
    await observe(request("ok.example"), answered(Response(b"", wire.NOERROR, "upstream")))
    data = stats.to_json(top=10)
    assert data["queries"]["total"] == 6
    assert data["queries"]["by_rcode"] == {"NOERROR": 2, "NXDOMAIN": 4}
    assert data["firewall_actions"] == {"ALERT": 1, "BLOCK": 4}
    assert data["top"]["blocked"] == [
        {"name": "bad.example.", "count": 3},
        {"name": "target.example.", "count": 1},  # the CNAME target that matched
    ]
    assert data["top"]["alerted"] == [{"name": "watch.example.", "count": 1}]
    assert data["top"]["clients"][0] == {"name": "192.0.2.1", "count": 4}
    assert stats.rate(stats.queries, 10, now=1000.9) == 0.0  # the current second is not over
    assert stats.rate(stats.queries, 10, now=1001.0) == 0.6
    assert stats.rate(stats.queries, 60, now=1001.0) == 0.1
    assert stats.rate(stats.blocks, 60, now=1001.0) == round(4 / 60, 3)
    assert stats.rate(stats.queries, 10, now=1011.0) == 0.0  # out of the window
