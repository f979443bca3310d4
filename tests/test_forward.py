"""The ``forward`` plugin end to end: ``dnsfw run`` forwarding to test upstreams on 127.0.0.1.

Most tests start dnsfw as a subprocess (fixture ``dnsfw``) in front of one or two
``tests.kit.upstream.Upstream`` resolvers whose faults are flipped while it runs. The last ones
drive the plugin in-process to read its counters, ``upstreams()`` and its clean stop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import plugins
from plugins.forward import Forward
from proxy import pipeline
from proxy.config import AppContext, build
from proxy.corefile import parse as parse_corefile
from proxy.request import Request, Response
from proxy.request import parse as parse_query
from tests.kit.corefiles import FORWARD, corefile
from tests.kit.dnsfw import free_port
from tests.kit.tls import make_cert
from tests.kit.upstream import Faults, Upstream

FAST = "read_timeout 300ms"  # upstream timeout used by the fault tests

# PLUGINS ("errors" or nothing), then a forward to TO with OPTIONS
FORWARD_WITH = """\
.:$PORT {
    $PLUGINS
    forward . $TO {
        $OPTIONS
    }
}
"""

ERRORS_FORWARD = """\
.:$PORT {
    errors
    forward . $TO
}
"""

# NXDOMAIN from FIRST hands the query to the second forward
NEXT_NXDOMAIN = """\
.:$PORT {
    forward . $FIRST {
        next NXDOMAIN
    }
    forward . $SECOND
}
"""

# example.com but mail.example.com forwarded; whoami answers the rest
EXCEPT_THEN_WHOAMI = """\
.:$PORT {
    forward example.com $UPSTREAM {
        except mail.example.com
    }
    whoami
}
"""

# w.example.com forwarded without a client certificate, the rest with one
CLIENT_CERTIFICATE = """\
.:$PORT {
    forward w.example.com $TO {
        tls $CERT
        $FAST
    }
    forward . $TO {
        tls $CERT $KEY $CERT
    }
}
"""


@pytest.fixture
def second() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def names_seen(up: Upstream, transport: str | None = None) -> list[str]:
    return [s.name for s in up.seen if transport is None or s.transport == transport]


def answer_text(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset]


# --- answers -------------------------------------------------------------------------------


def test_udp_and_tcp_answers(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD, UPSTREAM=upstream.address))
    udp = fw.query("a.example.")
    assert udp.rcode() == dns.rcode.NOERROR
    assert answer_text(udp) == ["b.tracker.example.", "c.cdn.example.", "198.51.100.7"]
    tcp = fw.query("gmail.com.", "MX", tcp=True)
    assert len(tcp.answer[0]) == 5
    # the client's transport is kept (CoreDNS's default)
    assert "a.example." in names_seen(upstream, "udp")
    assert "gmail.com." in names_seen(upstream, "tcp")
    assert fw.query("nope.example.").rcode() == dns.rcode.NXDOMAIN


def test_edns_do_and_case_pass_through(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD, UPSTREAM=upstream.address))
    response = fw.query("C.Cdn.EXAMPLE.", use_edns=0, want_dnssec=True, payload=4096)
    assert response.edns == 0
    assert response.ednsflags & dns.flags.DO  # the upstream saw DO: it copies it
    assert response.question[0].name.to_text() == "C.Cdn.EXAMPLE."  # upstream saw our case
    plain = fw.query("c.cdn.example.")
    assert plain.edns == -1  # no OPT in, none added on the way


def test_client_ids_and_source_ports_are_replaced(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD, UPSTREAM=upstream.address))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        for i in range(24):
            query = dns.message.make_query(f"n{i}.example.com.", "A")
            query.id = 4242
            sock.sendto(query.to_wire(), ("127.0.0.1", fw.port))
            reply = dns.message.from_wire(sock.recv(4096))
            assert reply.id == 4242  # the client's id is restored
    seen = [s for s in upstream.seen if s.name.startswith("n")]
    assert len(seen) == 24
    ids = {s.id for s in seen}
    assert 4242 not in ids or len(ids) > 1
    assert len(ids) > 12  # random ids, not the client's
    assert len({s.client[1] for s in seen}) > 1  # several source ports


def test_truncated_udp_reply_is_fetched_over_tcp(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD, UPSTREAM=upstream.address))
    upstream.faults = Faults(truncate=True, only_names=frozenset({"mail.example.com."}))
    response = fw.query("mail.example.com.")
    assert not response.flags & dns.flags.TC
    assert answer_text(response) == ["192.0.2.25"]
    assert [s.transport for s in upstream.seen if s.name == "mail.example.com."] == ["udp", "tcp"]
    # an answer bigger than the client's UDP size comes whole over TCP, then is cut for the client
    big = dns.message.make_query("big.example.com.", "TXT", use_edns=0, payload=1232)
    truncated = dns.query.udp(big, "127.0.0.1", port=fw.port, timeout=3)
    assert truncated.flags & dns.flags.TC
    full, used_tcp = dns.query.udp_with_fallback(big, "127.0.0.1", port=fw.port, timeout=3)
    assert used_tcp and len(full.answer[0]) == 40


def test_force_tcp_pipelines_on_one_connection(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD_WITH, PLUGINS="", TO=upstream.address, OPTIONS="force_tcp"))
    for i in range(5):
        assert fw.query(f"t{i}.w.example.com.").rcode() == dns.rcode.NOERROR
    seen = [s for s in upstream.seen if s.name.endswith(".w.example.com.")]
    assert {s.transport for s in seen} == {"tcp"}
    assert len({s.client for s in seen}) == 1  # one reused connection


def test_prefer_udp_for_tcp_clients(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD_WITH, PLUGINS="", TO=upstream.address, OPTIONS="prefer_udp"))
    assert fw.query("example.com.", tcp=True).rcode() == dns.rcode.NOERROR
    assert [s.transport for s in upstream.seen if s.name == "example.com."] == ["udp"]


# --- failures ------------------------------------------------------------------------------


def test_dead_upstream_gives_servfail_in_time(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(FORWARD_WITH, PLUGINS="errors", TO=upstream.address, OPTIONS=FAST))
    upstream.faults.drop = True
    started = time.monotonic()
    response = fw.query("example.com.")
    elapsed = time.monotonic() - started
    assert response.rcode() == dns.rcode.SERVFAIL
    assert elapsed < 0.9  # read_timeout 300ms; loose bound
    fw.stop()
    assert f"read udp {upstream.address}: i/o timeout" in fw.stderr  # logged by `errors`


def test_closed_port_fails_at_once(dnsfw) -> None:
    closed = f"127.0.0.1:{free_port()}"
    fw = dnsfw(corefile(ERRORS_FORWARD, TO=closed))
    started = time.monotonic()
    assert fw.query("example.com.").rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - started < 1.0  # the ICMP error, not the 2s read timeout
    fw.stop()
    assert f"read udp {closed}: connection refused" in fw.stderr


def test_failover_to_the_next_upstream(dnsfw, upstream: Upstream, second: Upstream) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS=f"policy sequential\n{FAST}",
        )
    )
    upstream.faults = Faults(drop=True, only_names=frozenset({"gmail.com."}))
    started = time.monotonic()
    response = fw.query("gmail.com.")
    assert time.monotonic() - started < 0.9
    assert answer_text(response) == ["142.250.196.101"]
    assert "gmail.com." in names_seen(upstream) and "gmail.com." in names_seen(second)


def test_failover_rcodes(dnsfw, upstream: Upstream, second: Upstream) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS="policy sequential\nfailover SERVFAIL",
        )
    )
    upstream.faults = Faults(servfail=True, only_names=frozenset({"example.com."}))
    assert answer_text(fw.query("example.com.")) == ["93.184.216.34"]
    second.faults = Faults(servfail=True, only_names=frozenset({"example.com."}))
    # the last upstream's reply is returned as it is
    assert fw.query("example.com.").rcode() == dns.rcode.SERVFAIL


def test_next_rcodes_hand_over_to_the_next_forward(
    dnsfw, upstream: Upstream, second: Upstream
) -> None:
    fw = dnsfw(corefile(NEXT_NXDOMAIN, FIRST=upstream.address, SECOND=second.address))
    second.set_zones("$ORIGIN only.test.\n@ SOA ns h 1 2 3 4 60\nx A 192.0.2.99\n")
    # NXDOMAIN from the first: the second forward answers
    assert answer_text(fw.query("x.only.test.")) == ["192.0.2.99"]
    # NOERROR from the first: returned, the second is not asked
    assert fw.query("example.com.").rcode() == dns.rcode.NOERROR
    assert "example.com." not in names_seen(second)


@pytest.mark.parametrize("fault", ["garbage", "wrong_id", "wrong_question"])
def test_bad_replies_are_ignored(dnsfw, upstream: Upstream, second: Upstream, fault: str) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS=f"policy sequential\nmax_fails 0\n{FAST}",
        )
    )
    setattr(upstream.faults, fault, True)
    upstream.faults.only_names = frozenset({"mail.example.com.", "rr.example.com."})
    # the bad reply is not taken: the query times out on the first, the second answers
    assert answer_text(fw.query("mail.example.com.")) == ["192.0.2.25"]
    second.faults = Faults(drop=True, only_names=frozenset({"rr.example.com."}))
    assert fw.query("rr.example.com.").rcode() == dns.rcode.SERVFAIL


def test_health_check_marks_down_and_up(dnsfw, upstream: Upstream, second: Upstream) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS=f"policy sequential\nmax_fails 2\nhealth_check 100ms\n{FAST}",
        )
    )
    upstream.faults.drop = True
    assert fw.query("example.com.").rcode() == dns.rcode.NOERROR  # via the second, slowly
    # the probe loop (`. NS`) fails too: the first is down, queries go straight to the second
    deadline = time.monotonic() + 3
    while sum(s.name == "." and s.qtype == "NS" for s in upstream.seen) < 2:
        assert time.monotonic() < deadline, "no health-check probes seen"
        time.sleep(0.05)
    before = len(names_seen(upstream))
    for i in range(3):
        assert fw.query(f"h{i}.w.example.com.").rcode() == dns.rcode.NOERROR
    assert not any(n.startswith("h") for n in names_seen(upstream)[before:])
    # it comes back: the next probe gets a reply and marks it up again
    upstream.faults.drop = False
    deadline = time.monotonic() + 3
    while True:
        fw.query("up.w.example.com.")
        if "up.w.example.com." in names_seen(upstream):
            break
        assert time.monotonic() < deadline, "upstream never marked up"
        time.sleep(0.1)


def _fail_until_down(fw, up: Upstream) -> None:
    """Make ``up`` (max_fails 1, health_check 10s) down: a failed query, then a failed probe."""
    up.faults.drop = True
    assert fw.query("example.com.").rcode() == dns.rcode.SERVFAIL
    deadline = time.monotonic() + 2
    while not any(s.name == "." and s.qtype == "NS" for s in up.seen):
        assert time.monotonic() < deadline, "no health-check probe seen"
        time.sleep(0.02)
    time.sleep(0.4)  # the probe's 300ms timeout: it failed; the next one is 10s away
    up.faults.drop = False


def test_all_down_tries_one_anyway(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=upstream.address,
            OPTIONS=f"max_fails 1\nhealth_check 10s\n{FAST}",
        )
    )
    _fail_until_down(fw, upstream)
    # every upstream is down: one is tried anyway (health checking may be what is broken)
    assert answer_text(fw.query("mail.example.com.")) == ["192.0.2.25"]


def test_all_down_fails_fast(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="errors",
            TO=upstream.address,
            OPTIONS=f"max_fails 1\nhealth_check 10s\n{FAST}\nfailfast_all_unhealthy_upstreams",
        )
    )
    _fail_until_down(fw, upstream)
    count = len(upstream.seen)
    assert fw.query("mail.example.com.").rcode() == dns.rcode.SERVFAIL
    assert len(upstream.seen) == count  # not even tried
    fw.stop()
    assert "no healthy proxies" in fw.stderr


def test_max_concurrent(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(
        corefile(FORWARD_WITH, PLUGINS="errors", TO=upstream.address, OPTIONS="max_concurrent 2")
    )
    names = [f"c{i}.w.example.com." for i in range(5)]
    upstream.faults = Faults(delay=0.5, only_names=frozenset(names))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        for i, name in enumerate(names):
            query = dns.message.make_query(name, "A")
            query.id = i
            sock.sendto(query.to_wire(), ("127.0.0.1", fw.port))
        rcodes = sorted(dns.message.from_wire(sock.recv(4096)).rcode() for _ in names)
    assert rcodes == [dns.rcode.NOERROR] * 2 + [dns.rcode.REFUSED] * 3
    fw.stop()
    assert "concurrent queries exceeded maximum 2" in fw.stderr


# --- policies and scope ----------------------------------------------------------------------


def _which(upstream: Upstream, second: Upstream, names: list[str]) -> list[str]:
    first = set(names_seen(upstream))
    other = set(names_seen(second))
    return ["1" if n in first else "2" if n in other else "?" for n in names]


@pytest.mark.parametrize("policy", ["sequential", "round_robin", "random"])
def test_policies(dnsfw, upstream: Upstream, second: Upstream, policy: str) -> None:
    fw = dnsfw(
        corefile(
            FORWARD_WITH,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS=f"policy {policy}",
        )
    )
    names = [f"p{i}.w.example.com." for i in range(40 if policy == "random" else 6)]
    for name in names:
        assert fw.query(name).rcode() == dns.rcode.NOERROR
    used = _which(upstream, second, names)
    if policy == "sequential":
        assert used == ["1"] * len(names)
    elif policy == "round_robin":
        assert used in (["1", "2"] * 3, ["2", "1"] * 3)
    else:
        assert set(used) == {"1", "2"}


def test_from_scope_and_except_go_to_next(dnsfw, upstream: Upstream) -> None:
    fw = dnsfw(corefile(EXCEPT_THEN_WHOAMI, UPSTREAM=upstream.address))
    assert answer_text(fw.query("www.example.com.")) == ["example.com.", "93.184.216.34"]
    assert fw.query("EXAMPLE.com.").rcode() == dns.rcode.NOERROR
    for name in ("gmail.com.", "mail.example.com.", "x.mail.example.com.", "notexample.com."):
        response = fw.query(name)
        assert not response.answer and response.flags & dns.flags.AA  # whoami's answer
        assert response.additional[0].rdtype == dns.rdatatype.A
        assert name not in names_seen(upstream)


def test_resolv_conf_upstream(dnsfw, tmp_path: Path) -> None:
    # resolv.conf nameservers are used on port 53: the upstream listens on 127.53.0.1:53
    try:
        up = Upstream(host="127.53.0.1", port=53).start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot listen on port 53 here ({exc}); parsing is covered by setup tests")
    try:
        conf = tmp_path / "resolv.conf"
        conf.write_text("search example.org\nnameserver 127.53.0.1\n")
        fw = dnsfw(corefile(FORWARD, UPSTREAM=conf))
        assert answer_text(fw.query("mail.example.com.")) == ["192.0.2.25"]
        assert "mail.example.com." in names_seen(up)
    finally:
        up.stop()


# --- DNS over TLS ----------------------------------------------------------------------------


class DotServer:
    """A DNS-over-TLS server on 127.0.0.1 in its own thread, relaying to ``upstream`` over TCP.

    ``client_ca``: require a client certificate signed by it. ``sni`` records the server
    names clients asked for; ``queries`` the names relayed.
    """

    def __init__(self, cert: Path, key: Path, upstream: Upstream, client_ca: Path | None = None):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(client_ca)
        self.context.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)
        self.upstream = upstream
        self.sni: list[str | None] = []
        self.queries: list[str] = []
        self.tasks: set[asyncio.Task] = set()
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DotServer:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(5)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self.stop_event = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        await self.stop_event.wait()
        server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                query = dns.message.from_wire(await reader.readexactly(size))
                self.queries.append(query.question[0].name.to_text().lower())
                reply = await dns.asyncquery.tcp(
                    query, self.upstream.host, port=self.upstream.port, timeout=2
                )
                data = reply.to_wire()
                writer.write(struct.pack("!H", len(data)) + data)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


def test_dns_over_tls(dnsfw, upstream: Upstream, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "dot.test")
    with DotServer(cert, key, upstream) as dot:
        fw = dnsfw(
            corefile(
                FORWARD_WITH,
                PLUGINS="errors",
                TO=f"tls://127.0.0.1:{dot.port}",
                OPTIONS=f"tls_servername dot.test\ntls {cert}",
            )
        )
        assert answer_text(fw.query("mail.example.com.")) == ["192.0.2.25"]
        assert answer_text(fw.query("example.com.", tcp=True)) == ["93.184.216.34"]
        assert "mail.example.com." in dot.queries and "example.com." in dot.queries
        assert "dot.test" in dot.sni
        assert {s.transport for s in upstream.seen if s.name == "mail.example.com."} == {"tcp"}


def test_dns_over_tls_verifies_the_server(dnsfw, upstream: Upstream, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "dot.test")
    with DotServer(cert, key, upstream) as dot:
        fw = dnsfw(
            corefile(
                FORWARD_WITH,
                PLUGINS="errors",
                TO=f"tls://127.0.0.1%wrong.test:{dot.port}",
                OPTIONS=f"tls {cert}\n{FAST}",
            )
        )
        assert fw.query("mail.example.com.").rcode() == dns.rcode.SERVFAIL
        assert "mail.example.com." not in dot.queries
        fw.stop()
        assert "certificate verify failed" in fw.stderr


def test_dns_over_tls_client_certificate(dnsfw, upstream: Upstream, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "dot.test")
    with DotServer(cert, key, upstream, client_ca=cert) as dot:
        to = f"tls://127.0.0.1%dot.test:{dot.port}"
        fw = dnsfw(corefile(CLIENT_CERTIFICATE, TO=to, CERT=cert, KEY=key, FAST=FAST))
        assert answer_text(fw.query("mail.example.com.")) == ["192.0.2.25"]
        # the forward without a client certificate is turned away by the server
        assert fw.query("x.w.example.com.").rcode() == dns.rcode.SERVFAIL
        assert "x.w.example.com." not in dot.queries


# --- in-process: counters, upstreams(), lifecycle ---------------------------------------------


def _setup(text: str) -> tuple[Forward, AppContext]:
    app = AppContext(conf_path="Corefile")
    config = build(parse_corefile(text, directives=plugins.ORDER), app)
    (plugin,) = [p for p in config.blocks[0].plugins if isinstance(p, Forward)]
    return plugin, app


def _request(name: str, qtype: str = "A") -> Request:
    wire = dns.message.make_query(name, qtype).to_wire()
    return parse_query(wire, ("127.0.0.1", 40000), "udp", "dns://:53")


async def _no_next(req: Request) -> Response:
    raise AssertionError("next must not be called")


class _Sink:
    def __init__(self) -> None:
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None:
        self.done.set_result((resp, exc))


async def _drive(plugin: Forward, req: Request) -> Response:
    """Run ``serve`` the way the server does: by hand, with no Task (pipeline.Continuation)."""
    coro = plugin.serve(req, _no_next)
    awaited = pipeline.start(coro)
    if isinstance(awaited, Response):
        return awaited
    sink = _Sink()
    pipeline.Continuation(coro, awaited, req, sink, asyncio.get_running_loop())
    resp, exc = await sink.done
    assert exc is None
    return resp


async def test_counters_upstreams_and_clean_stop(upstream: Upstream, second: Upstream) -> None:
    plugin, app = _setup(
        corefile(
            FORWARD_WITH,
            PORT=53,
            PLUGINS="",
            TO=f"{upstream.address} {second.address}",
            OPTIONS=f"policy sequential\nmax_concurrent 1\n{FAST}",
        )
    )
    await plugin.start()
    try:
        response = await _drive(plugin, _request("example.com."))
        assert response.source == "upstream" and response.info is None
        assert response.rcode == dns.rcode.NOERROR and response.error is None
        upstream.faults = Faults(wrong_question=True, only_names=frozenset({"mail.example.com."}))
        response = await _drive(plugin, _request("mail.example.com."))
        assert response.rcode == dns.rcode.NOERROR  # from the second upstream
        metrics = app.metrics.metrics
        rejected = metrics["coredns_forward_rejected_replies_total"]
        assert rejected.value(upstream.address, "mismatch") == 1
        durations = metrics["coredns_proxy_request_duration_seconds"]
        assert durations.series[("forward", upstream.address, "NOERROR")].count == 1
        assert durations.series[("forward", second.address, "NOERROR")].count == 1
        # the failed exchange counted, and started a probe that gets its answer (`. NS` is not
        # faulted), which clears the count
        for _ in range(100):
            status = {s.address: s for s in plugin.upstreams()}
            if status[upstream.address].fails == 0:
                break
            await asyncio.sleep(0.01)
        assert any(s.name == "." and s.qtype == "NS" for s in upstream.seen)
        assert status[upstream.address].fails == 0 and status[second.address].fails == 0
        assert status[second.address].healthy and status[second.address].answers == 1
        assert status[second.address].avg_latency is not None
        # max_concurrent 1: a second query while one waits is refused at once
        upstream.faults = Faults(delay=0.3, only_names=frozenset({"slow.w.example.com."}))
        slow = asyncio.ensure_future(_drive(plugin, _request("slow.w.example.com.")))
        await asyncio.sleep(0.05)
        refused = await _drive(plugin, _request("fast.w.example.com."))
        assert refused.rcode == dns.rcode.REFUSED
        assert refused.error == "concurrent queries exceeded maximum 1"
        assert metrics["coredns_forward_max_concurrent_rejects_total"].value() == 1
        assert (await slow).rcode == dns.rcode.NOERROR
    finally:
        await plugin.stop()
    for up in plugin.proxies:
        assert not up.udp and not up.retiring and not up.conns and up.probe is None
    assert plugin.maintenance is None


async def test_response_keeps_the_client_id(upstream: Upstream) -> None:
    plugin, _ = _setup(corefile(FORWARD, PORT=53, UPSTREAM=upstream.address))
    await plugin.start()
    try:
        req = _request("example.com.")
        response = await _drive(plugin, req)
        assert response.wire[:2] == req.wire[:2]
        assert req.meta["forward/upstream"] == upstream.address
    finally:
        await plugin.stop()


async def test_stop_ends_pending_queries_at_once(upstream: Upstream) -> None:
    plugin, _ = _setup(corefile(FORWARD, PORT=53, UPSTREAM=upstream.address))
    await plugin.start()
    upstream.faults.drop = True
    pending = asyncio.ensure_future(_drive(plugin, _request("example.com.")))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await plugin.stop()
    response = await asyncio.wait_for(pending, 1)
    assert time.monotonic() - started < 0.5
    assert response.rcode == dns.rcode.SERVFAIL and "connection closed" in response.error


async def test_udp_sockets_are_replaced_after_expire(upstream: Upstream) -> None:
    plugin, _ = _setup(
        corefile(FORWARD_WITH, PORT=53, PLUGINS="", TO=upstream.address, OPTIONS="expire 200ms")
    )
    await plugin.start()
    try:
        up = plugin.proxies[0]
        before = {id(s) for s in up.udp}
        ports = {s.transport.get_extra_info("sockname")[1] for s in up.udp}
        await asyncio.sleep(0.5)
        after = {id(s) for s in up.udp}
        assert len(up.udp) == 4 and not before & after
        assert ports.isdisjoint(s.transport.get_extra_info("sockname")[1] for s in up.udp)
        assert (await _drive(plugin, _request("example.com."))).rcode == dns.rcode.NOERROR
    finally:
        await plugin.stop()


async def test_tcp_connection_is_reused_until_expire(upstream: Upstream) -> None:
    plugin, _ = _setup(
        corefile(
            FORWARD_WITH,
            PORT=53,
            PLUGINS="",
            TO=upstream.address,
            OPTIONS="force_tcp\nexpire 300ms",
        )
    )
    await plugin.start()
    try:
        up = plugin.proxies[0]
        for name in ("e1.w.example.com.", "e2.w.example.com."):
            assert (await _drive(plugin, _request(name))).rcode == dns.rcode.NOERROR
        first = up.conn
        await asyncio.sleep(0.4)
        assert (await _drive(plugin, _request("e3.w.example.com."))).rcode == dns.rcode.NOERROR
        assert up.conn is not first and first is not None and first.closed
        ports = [s.client[1] for s in upstream.seen if s.name.startswith("e")]
        assert ports[0] == ports[1] != ports[2]
        assert all(s.transport == "tcp" for s in upstream.seen)
    finally:
        await plugin.stop()
