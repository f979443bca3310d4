"""The ``ratelimit`` plugin: its Corefile options and errors, and over real sockets a client
beyond QPS + burst refused (or dropped) while other clients and exempt networks are not, tokens
refilling, the limit holding for replayed cache hits, and the metrics."""

from __future__ import annotations

import time

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

import plugins
from plugins.ratelimit import RateLimit
from proxy.config import AppContext, Config, build
from proxy.corefile import CorefileError, parse_file
from proxy.corefile import parse as parse_corefile
from proxy.server import Server
from tests.kit.corefiles import BLOCK_WHOAMI, corefile
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, sample


def load(body: str) -> Config:
    text = corefile(BLOCK_WHOAMI, KEYS=".:53", LINES=body)
    return build(parse_corefile(text, directives=plugins.ORDER), AppContext("Corefile"))


def limiter(body: str):
    plugin = load(body).blocks[0].plugins[0]
    assert isinstance(plugin, RateLimit)
    return plugin, plugin.limiter


def error(body: str) -> str:
    with pytest.raises(CorefileError) as info:
        load(body)
    return str(info.value)


def test_defaults() -> None:
    plugin, lim = limiter("ratelimit")
    assert (lim.rate, lim.burst, lim.shifts, lim.exempt, lim.max_clients) == (
        20.0,
        20.0,
        (0, 64),
        (),
        100_000,
    )
    assert plugin.drop is False
    assert plugins.ORDER.index("prometheus") < plugins.ORDER.index("ratelimit")
    assert plugins.ORDER.index("ratelimit") < plugins.ORDER.index("errors")


def test_options() -> None:
    plugin, lim = limiter(
        "ratelimit 0.5 {\n burst 3\n ipv4_prefix 24\n ipv6_prefix 56\n action drop\n"
        " exempt 10.0.0.0/8 fd00::/64\n whitelist 192.0.2.1\n max_clients 10\n }"
    )
    assert (lim.rate, lim.burst, lim.shifts, lim.max_clients) == (0.5, 3.0, (8, 72), 10)
    assert [str(n) for n in lim.exempt] == ["10.0.0.0/8", "fd00::/64", "192.0.2.1/32"]
    assert plugin.drop is True
    assert limiter("ratelimit 2.5")[1].burst == 3.0  # a second's worth, rounded up


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ratelimit 1 2", "Corefile:2 - Error during parsing: Wrong argument count"),
        ("ratelimit x", "Corefile:2 - Error during parsing: ratelimit QPS must be a number above 0, not 'x'"),
        ("ratelimit 0", "ratelimit QPS must be a number above 0, not '0'"),
        ("ratelimit -3", "ratelimit QPS must be a number above 0, not '-3'"),
        ("ratelimit inf", "ratelimit QPS must be a number above 0, not 'inf'"),
        ("ratelimit {\n burst 0\n }", "Corefile:3 - Error during parsing: burst must be an integer of at least 1, not '0'"),
        ("ratelimit {\n burst\n }", "Corefile:3 - Error during parsing: Wrong argument count"),
        ("ratelimit {\n ipv4_prefix 33\n }", "ipv4_prefix must be an integer from 0 to 32, not '33'"),
        ("ratelimit {\n ipv6_prefix /56\n }", "ipv6_prefix must be an integer from 0 to 128, not '/56'"),
        ("ratelimit {\n action slip\n }", "action must be refuse or drop, not 'slip'"),
        ("ratelimit {\n exempt\n }", "Corefile:3 - Error during parsing: Wrong argument count"),
        ("ratelimit {\n\n exempt 10.0.0.0/33\n }", "Corefile:4 - Error during parsing: exempt: invalid CIDR '10.0.0.0/33'"),
        ("ratelimit {\n whitelist example.com\n }", "whitelist: invalid CIDR 'example.com'"),
        ("ratelimit {\n max_clients many\n }", "max_clients must be an integer of at least 1, not 'many'"),
        ("ratelimit {\n window 10\n }", "Corefile:3 - Error during parsing: unknown property 'window'"),
        ("ratelimit {\n burst 2 {\n }\n }", "Corefile:3 - Error during parsing: Wrong argument count"),
    ],
)  # fmt: skip
def test_errors_name_file_and_line(body: str, message: str) -> None:
    text = error(body)
    assert text.startswith("plugin/ratelimit: Corefile:") and message in text


def test_once_per_block() -> None:
    assert "ratelimit" in error("ratelimit\nratelimit 5")


def test_buckets_by_prefix_refill_and_exempt() -> None:
    _, lim = limiter("ratelimit 2 {\n burst 2\n ipv4_prefix 24\n exempt 10.1.2.9/32\n }")
    now = 100.0
    # 10.1.2.1 and 10.1.2.2 share a /24: two tokens between them
    assert [lim(("10.1.2.1", 5), now), lim(("10.1.2.2", 5), now), lim(("10.1.2.2", 5), now)] == [
        True,
        True,
        False,
    ]
    assert lim(("10.1.3.1", 5), now)  # another /24
    assert all(lim(("10.1.2.9", 5), now) for _ in range(50))  # exempt, inside the limited /24
    assert not lim(("10.1.2.1", 5), now + 0.25)  # half a token refilled
    assert lim(("10.1.2.1", 5), now + 0.5)  # one token
    assert [lim(("10.1.2.1", 5), now + 100) for _ in range(3)] == [True, True, False]  # burst


def test_ipv6_clients_share_their_prefix() -> None:
    _, lim = limiter("ratelimit 1 {\n burst 1\n }")
    assert lim(("2001:db8:0:1::1", 5, 0, 0), 0.0)
    assert not lim(("2001:db8:0:1::2", 5, 0, 0), 0.0)  # same /64
    assert lim(("2001:db8:0:2::1", 5, 0, 0), 0.0)


def test_the_table_is_bounded() -> None:
    _, lim = limiter("ratelimit 1 {\n burst 1\n max_clients 100\n }")
    for i in range(1000):
        lim((f"10.0.{i // 250}.{i % 250}", 5), 0.0)  # each takes its one token
    assert len(lim.by_host) <= 100 and len(lim.by_prefix) <= 100
    idle = len(lim.by_prefix)
    lim(("192.0.2.1", 5), 10.0)  # the others refilled: forgotten when the table is full
    assert len(lim.by_prefix) <= idle


# --- over real sockets ----------------------------------------------------------------------

LIMITED = """\
.:$PORT {
    bind 127.0.0.1
    prometheus 127.0.0.1:$METRICS
    ratelimit $QPS {
        burst 5
        exempt 127.0.0.9/32
        $OPTIONS
    }
    cache
    forward . $UPSTREAM
}
"""

NAME = "www.example.com."


def ask(port: int, source: str, times: int, timeout: float = 2.0) -> list[int | None]:
    """``times`` queries for NAME from ``source``, one after the other: each rcode (None: no
    reply within ``timeout``)."""
    rcodes: list[int | None] = []
    for _ in range(times):
        query = dns.message.make_query(NAME, "A")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout, source=source)
            rcodes.append(reply.rcode())
        except dns.exception.Timeout:
            rcodes.append(None)
    return rcodes


def limited(dnsfw, upstream, qps: str = "0.01", options: str = ""):
    metrics = free_port()
    fw = dnsfw(
        corefile(LIMITED, METRICS=str(metrics), QPS=qps, OPTIONS=options, UPSTREAM=upstream.address)
    )
    return fw, metrics


NOERROR, REFUSED = dns.rcode.NOERROR, dns.rcode.REFUSED


def test_a_client_beyond_its_burst_is_refused_and_others_are_not(dnsfw, upstream) -> None:
    # 0.01 qps: no token comes back during the test, so exactly the burst goes through
    fw, metrics = limited(dnsfw, upstream)
    requests = sample(get(metrics, "/metrics")[2], "coredns_dns_requests_total", type="A")
    # a miss, then cache hits, then replays of them: all charged alike
    assert ask(fw.port, "127.0.0.2", 8) == [NOERROR] * 5 + [REFUSED] * 3
    assert ask(fw.port, "127.0.0.3", 5) == [NOERROR] * 5  # another client: its own bucket
    assert ask(fw.port, "127.0.0.9", 20) == [NOERROR] * 20  # exempt
    assert ask(fw.port, "127.0.0.2", 1) == [REFUSED]  # still limited
    text = get(metrics, "/metrics")[2]
    assert sample(text, "dnsfw_ratelimit_limited_total", action="refuse") == 4
    # every query counted as a request, the limited ones as REFUSED responses
    assert sample(text, "coredns_dns_requests_total", type="A") - requests == 34
    assert sample(text, "coredns_dns_responses_total", rcode="REFUSED") == 4
    assert len([s for s in upstream.seen if s.name == NAME]) == 1


def test_drop_sends_nothing(dnsfw, upstream) -> None:
    fw, metrics = limited(dnsfw, upstream, options="action drop")
    assert ask(fw.port, "127.0.0.2", 7, timeout=0.5) == [NOERROR] * 5 + [None] * 2
    assert ask(fw.port, "127.0.0.3", 2) == [NOERROR] * 2
    # over TCP too (one bucket per client address): no reply on the open connection
    with pytest.raises(dns.exception.Timeout):
        query = dns.message.make_query(NAME, "A")
        dns.query.tcp(query, "127.0.0.1", port=fw.port, timeout=0.5, source="127.0.0.2")
    text = get(metrics, "/metrics")[2]
    assert sample(text, "dnsfw_ratelimit_limited_total", action="drop") == 3
    with pytest.raises(AssertionError):  # no response for a dropped query
        sample(text, "coredns_dns_responses_total", rcode="REFUSED")


def test_tokens_refill(dnsfw, upstream) -> None:
    fw, _ = limited(dnsfw, upstream, qps="20")
    rcodes = ask(fw.port, "127.0.0.2", 40, timeout=1)
    assert REFUSED in rcodes  # 40 back to back outrun 5 + 20/s
    time.sleep(0.5)  # refilled to the burst (5 at 20/s takes 0.25 s)
    assert ask(fw.port, "127.0.0.2", 5) == [NOERROR] * 5


def test_dnsfw_check_keeps_replays_on_with_ratelimit(tmp_path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    ratelimit 5\n    cache\n    forward . 127.0.0.1:5301\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
    assert "no replays" not in result.stdout


async def test_a_limited_client_keeps_the_replay_for_the_others(tmp_path, upstream) -> None:
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(
        corefile(
            LIMITED,
            PORT=port,
            METRICS=free_port(),
            QPS="0.01",
            OPTIONS="",
            UPSTREAM=upstream.address,
        )
    )
    server = Server(build(parse_file(str(conf), directives=plugins.ORDER), AppContext(str(conf))))
    await server.start()
    try:
        (listener,) = server.listeners.values()
        query = dns.message.make_query(NAME, "A")
        key = query.to_wire()[2:]

        async def asked(source: str) -> int:
            reply = await dns.asyncquery.udp(
                query, "127.0.0.1", port=port, timeout=2, source=source
            )
            return reply.rcode()

        assert [await asked("127.0.0.2") for _ in range(2)] == [NOERROR] * 2  # miss, hit
        (gate,) = listener.replays[key].gates  # kept for replay, with the limiter's gate
        assert [await asked("127.0.0.2") for _ in range(4)] == [NOERROR] * 3 + [REFUSED]
        assert key in listener.replays  # held back, not dropped
        assert await asked("127.0.0.3") == NOERROR
        assert listener.replays[key].gates == (gate,)
    finally:
        await server.stop()
