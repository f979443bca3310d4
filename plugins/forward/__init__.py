"""forward - send queries to upstream resolvers (CoreDNS's ``forward``).

Syntax::

    forward FROM TO... {
        except IGNORED_NAMES...
        force_tcp
        prefer_udp
        expire DURATION
        max_fails INTEGER
        tls [CERT KEY] [CA]
        tls_servername NAME
        policy random|round_robin|sequential
        health_check DURATION [no_rec] [domain FQDN]
        max_concurrent MAX
        read_timeout DURATION
        failfast_all_unhealthy_upstreams
        next RCODE...
        failover RCODE...
    }

* **FROM** is the zone whose names are forwarded (a CIDR means its first reverse zone). Names
  outside it, and names at or under an ``except`` name (unless equal to FROM), go to the next
  plugin.
* **TO** (1 to 15 in all, else ``more than 15 TOs configured: N``): ``IP``, ``IP:PORT``,
  ``[IPv6]:PORT``, ``dns://IP[:PORT]`` (port 53), ``tls://IP[%SERVERNAME][:PORT]`` (DNS over
  TLS, port 853), ``https://IP[%SERVERNAME][:PORT]`` (DNS over HTTPS, port 443, path
  ``/dns-query``: one HTTP/2 connection per upstream, reused for ``expire`` with many queries in
  flight as streams, each a POST; a reply other than 200 fails that query at once), or a
  resolv.conf-style file whose ``nameserver`` lines each add ``IP:53``. The ``tls`` and
  ``tls_servername`` options apply to tls:// and https:// alike. Host names are not resolved
  (``not an IP address or file: "NAME"``). ``quic://``, ``grpc://`` are refused at setup.
* ``except NAMES...``: names (and their subdomains) not to forward; a CIDR excepts all its
  reverse zones (``10.0.0.0/27``: the 32 of its addresses).
* ``force_tcp``: always TCP to the upstreams. ``prefer_udp``: UDP even for queries that came
  over TCP. Otherwise the client's transport is used (TCP for the stream transports: DoT,
  DoH). ``force_tcp`` wins over ``prefer_udp``.
  A UDP reply with TC set is always fetched again over TCP.
* ``expire`` (10s): UDP sockets are replaced, and TCP/TLS connections stop taking queries,
  at this age. ``0``: sockets are kept, and each TCP/TLS connection carries one query.
* ``max_fails`` (2): consecutive failures that mark an upstream down; 0: never down, no
  health checks. ``health_check`` (0.5s): the probe interval of a failing upstream (``0``: no
  probes); ``no_rec`` clears RD in the probe, ``domain FQDN`` asks for FQDN instead of ``.``.
  See :mod:`plugins.forward.health`.
* ``tls``: no arguments (system CAs), ``CA``, ``CERT KEY`` (client certificate, system CAs)
  or ``CERT KEY CA``; TLS 1.2 at least, the server certificate is always verified against
  ``tls_servername`` (or the per-upstream ``%SERVERNAME``, or the IP). Setting both a
  ``tls_servername`` and a ``%SERVERNAME`` is an error.
* ``policy`` (random): order of upstreams per query, see :mod:`plugins.forward.policy`.
* ``max_concurrent MAX`` (0: no limit): more queries waiting on upstreams at once are answered
  REFUSED with the error ``concurrent queries exceeded maximum MAX`` and counted in
  ``coredns_forward_max_concurrent_rejects_total``, as in CoreDNS; that is not an upstream
  failure. It keeps a zone whose servers stop answering from holding the process's whole
  in-flight pool (``-max-inflight``); pick MAX above the zone's query rate times its upstreams'
  latency.
* ``read_timeout`` (2s): how long one upstream may take; then the next one is tried. Whatever
  happens, a query is given up after 5s in all.
* ``failfast_all_unhealthy_upstreams``: when every upstream is down, answer SERVFAIL at once
  (error ``no healthy proxies``) instead of trying a random one.
* ``failover RCODE...``: a reply with one of these rcodes (not NOERROR) makes the next
  upstream be tried; the last upstream's reply is used as it is.
* ``next RCODE...``: a reply with one of these rcodes is dropped and the query handed to the
  next plugin, only when that is another ``forward`` (several ``forward`` lines in a block
  chain in Corefile order).
* CoreDNS options dnsfw does not implement (``max_connect_attempts``, ``max_idle_conns``,
  ``max_age``, ``next_on_nodata``, ``resolver``, ``doh_method``, ``source_address``) are
  refused at setup: ``forward option 'NAME' is not supported by dnsfw``.

Behaviour: the client's query bytes are sent as they are (EDNS, DO, CD, the client's case), with
a random query id from a random source port (see :mod:`plugins.forward.upstream` for the socket
pool and what replies are accepted). Upstreams are tried in policy order, skipping those that
are down; no reply within ``read_timeout`` moves on to the next. The first valid reply is
returned with the client's id (``Response.source == "upstream"``). When every attempt failed,
the answer is SERVFAIL with the last error (e.g. ``read udp 192.0.2.1:53: i/o timeout``) in
``Response.error`` for the ``errors`` plugin.

Malformed replies: a reply to our question is checked once, here, as a message parser would
read it (:func:`proxy.wire.check_records`: names and their compression pointers, RDLENGTHs,
the records the header counts, the rdata of common types, OPT and TSIG placement). One that
does not parse is a failed attempt, as in CoreDNS (its exchange returns the unpack error): the
upstream's failure is counted (see :mod:`plugins.forward.health`) and the next one is tried.
When the last attempt got such a reply, the answer is SERVFAIL with an RFC 8914 Extended DNS
Error 23 (Network Error) for EDNS clients, and ``Response.error`` set, so the cache never
stores it. Bytes after a reply's last record are ignored (as miekg/dns does) and cut off.

``req.meta["forward/upstream"]``: the ``HOST:PORT`` of the upstream last asked.

Metrics: ``coredns_proxy_request_duration_seconds{proxy_name="forward",to,rcode}``,
``coredns_proxy_healthcheck_failures_total{proxy_name,to}``,
``coredns_forward_healthcheck_broken_total`` (every upstream was down),
``coredns_forward_max_concurrent_rejects_total``, and dnsfw's
``coredns_forward_rejected_replies_total{to,reason}`` (``unknown_id``: no pending query has
that id, e.g. a late reply; ``mismatch``: not a response to our question; both ignored) and
``dnsfw_forward_malformed_replies_total{to}`` (replies to our question that do not parse, see
above). The plugin's
``upstreams()`` returns each upstream's state (registered under ``proxy.services.UPSTREAMS``
for the admin API).

Examples::

    . {
        forward . 169.254.169.253
    }

    . {
        forward corp.example 10.0.0.2 10.0.0.3 {
            policy sequential
        }
        forward . tls://9.9.9.9%dns.quad9.net tls://149.112.112.112%dns.quad9.net {
            health_check 5s
        }
    }
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import random
import struct
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from plugins.bind import local_addresses
from proxy import wire
from proxy.config import ListenerKey, SetupContext
from proxy.corefile import Directive
from proxy.metrics import Child
from proxy.names import in_zones, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response
from proxy.services import UPSTREAMS

from . import options, policy
from .health import Prober
from .options import ForwardConfig
from .upstream import RETRY, Upstream

log = structlog.get_logger("dnsfw.forward")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OVERALL_TIMEOUT = 5.0  # CoreDNS's per-query deadline across all attempts
MAINTENANCE_TICK = 1.0  # seconds between socket rotation checks (at most `expire`)
NO_HEALTHY = "no healthy proxies"
EDE_NETWORK_ERROR = 23  # RFC 8914
MALFORMED_EDE = wire.ede_option(EDE_NETWORK_ERROR, "malformed reply from upstream")
_COUNTS = struct.Struct("!HHH")  # ANCOUNT, NSCOUNT, ARCOUNT
META_UPSTREAM = "forward/upstream"

# the forward instance set up last, and its block: the next one set up in the same block is
# its successor in the chain (setups of a block run in ORDER, so forwards run back to back)
_last_setup: tuple[weakref.ref, weakref.ref] | None = None


def setup(directive: Directive, ctx: SetupContext) -> Forward:
    global _last_setup
    cfg = options.parse(directive)
    plugin = Forward(cfg, ctx)
    ctx.app.listener_checks.append(functools.partial(refuse_own_listeners, directive, cfg))
    if _last_setup is not None and _last_setup[0]() is ctx.block:
        previous = _last_setup[1]()
        if previous is not None:
            previous.next_is_forward = True
    _last_setup = (weakref.ref(ctx.block), weakref.ref(plugin))
    ctx.app.services.add(UPSTREAMS, plugin)
    return plugin


def refuse_own_listeners(
    directive: Directive, cfg: ForwardConfig, listeners: Sequence[ListenerKey]
) -> None:
    """A ``forward`` to one of dnsfw's own DNS listeners sends its queries back to dnsfw,
    which forwards them again: a loop that pins a core. Refused at setup (``dnsfw check``,
    start and reload) with the forward's file and line."""
    local = {str(ipaddress.ip_address(a)) for a in local_addresses()}
    for target in cfg.targets:
        if target.transport != "dns":
            continue  # dnsfw serves no DNS over TLS: a tls:// target is never itself
        host = ipaddress.ip_address(target.host.split("%", 1)[0])
        for key in listeners:
            if key.port == target.port and _reaches(host, key.host, local):
                raise directive.error(
                    f"forward to {target.address} would loop: it is dnsfw's own listener {key}"
                ).with_plugin("forward")


def _reaches(target: IPAddress, listen_host: str, local: set[str]) -> bool:
    """Whether a query sent to ``target`` arrives at a listener on ``listen_host`` ("": every
    address): a wildcard listener (also ``0.0.0.0``, IPv4 only, and ``::``) gets what goes to
    any loopback or local address, and ``0.0.0.0``/``::`` as a target reach this host."""
    listen = ipaddress.ip_address(listen_host) if listen_host else None
    if listen is None or listen.is_unspecified:
        if listen is not None and listen.version == 4 and target.version == 6:
            return False
        return _this_host(target, local)
    if target.is_unspecified:
        return target.version == listen.version and _this_host(listen, local)
    return listen == target


def _this_host(address: IPAddress, local: set[str]) -> bool:
    return address.is_loopback or address.is_unspecified or str(address) in local


@dataclass(frozen=True)
class UpstreamStatus:
    """One upstream as ``Forward.upstreams()`` reports it."""

    address: str  # HOST:PORT
    transport: str  # "dns" or "tls"
    healthy: bool
    fails: int
    answers: int
    avg_latency: float | None  # seconds, mean over every valid reply so far


class Forward(Plugin):
    name = "forward"
    replays = TAKES_PART  # upstream answers are never offered for replay (the cache replays)

    def __init__(self, cfg: ForwardConfig, ctx: SetupContext) -> None:
        metrics = ctx.app.metrics
        self.cfg = cfg
        self.from_wire = text_to_wire(cfg.from_zone)
        self.from_zones = frozenset((self.from_wire,))
        self.from_root = self.from_wire == b"\x00"
        self.except_wires = frozenset(text_to_wire(z) for z in cfg.except_zones)
        self.policy = policy.make(cfg.policy)
        self.proxies = tuple(Upstream(t, cfg, metrics) for t in cfg.targets)
        self.prober = Prober(cfg)
        self.read_timeout = cfg.read_timeout
        self.force_tcp = cfg.force_tcp
        self.prefer_udp = cfg.prefer_udp
        self.limit = cfg.max_concurrent or (1 << 62)
        self.limit_error = f"concurrent queries exceeded maximum {cfg.max_concurrent_text}"
        self.failover = cfg.failover_rcodes
        self.next_rcodes = cfg.next_rcodes
        self.next_is_forward = False
        self.concurrent = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.maintenance: asyncio.Task[None] | None = None
        self.rejects: Child = metrics.counter(
            "coredns_forward_max_concurrent_rejects_total",
            "Queries refused because the number of concurrent queries was at maximum.",
        ).labels()  # type: ignore[assignment]
        self.broken: Child = metrics.counter(
            "coredns_forward_healthcheck_broken_total",
            "Queries that found every upstream down.",
        ).labels()  # type: ignore[assignment]

    # --- the query path ----------------------------------------------------------------
    def forwards(self, qname: bytes) -> bool:
        """Whether queries for ``qname`` (lower-case wire) go upstream: in FROM, not excepted."""
        return (self.from_root or in_zones(qname, self.from_zones)) and not (
            self.except_wires and qname != self.from_wire and in_zones(qname, self.except_wires)
        )

    async def serve(self, req: Request, next: Handler) -> Response:
        qname = req.qname_wire
        if not self.forwards(qname):
            return await next(req)
        if self.concurrent >= self.limit:
            self.rejects.value += 1
            return req.reply(wire.REFUSED, source="error", error=self.limit_error)
        self.concurrent += 1
        try:
            resp = await self._exchange(req, qname)
        finally:
            self.concurrent -= 1
        if resp.rcode in self.next_rcodes and self.next_is_forward and resp.source == "upstream":
            return await next(req)
        return resp

    async def _exchange(self, req: Request, qname: bytes) -> Response:
        """Ask the upstreams in plan order until one gives a reply to keep."""
        loop = self.loop
        assert loop is not None, "forward used before start()"
        plan = self._plan()
        if not plan:
            return req.reply(wire.SERVFAIL, source="error", error=NO_HEALTHY)
        query = req.wire
        body = query[2:]
        tail = query[req.qend - 4 : req.qend]
        stream = self.force_tcp or (req.transport != "udp" and not self.prefer_udp)
        deadline = loop.time() + OVERALL_TIMEOUT
        last = plan[-1]
        error = NO_HEALTHY
        options = b""  # EDNS options of the SERVFAIL for the last failure
        for up in plan:
            start = loop.time()  # libuv's cached clock, in ms: fine for deadlines
            sent = time.perf_counter()  # the round trip needs a clock finer than that
            timeout = deadline - start
            if timeout <= 0:
                break
            if timeout > self.read_timeout:
                timeout = self.read_timeout
            req.meta[META_UPSTREAM] = up.address
            if stream or up.stream_only:
                result = await up.exchange_stream(body, qname, tail, timeout)
            else:
                result = await up.ask_udp(body, qname, tail, timeout)
                if type(result) is bytes and result[2] & 0x02:  # TC: fetch it whole over TCP
                    result = await up.exchange_stream(body, qname, tail, timeout)
            if type(result) is not bytes:
                error = result if result is not RETRY else f"{up.address}: {RETRY}"
                options = b""
                self.prober.failed(up)
                continue
            try:  # the question is ours (checked on arrival): the records start at req.qend
                end = wire.check_records(result, req.qend, *_COUNTS.unpack_from(result, 6))[0]
            except wire.WireError as exc:
                up.malformed.value += 1
                error = f"{up.address}: malformed reply: {exc}"
                options = MALFORMED_EDE
                self.prober.failed(up)
                continue
            rcode = result[3] & 0x0F
            up.answered(rcode, time.perf_counter() - sent)
            if rcode in self.failover and up is not last:
                continue
            return Response(query[:2] + result[2:end], rcode, "upstream")
        return req.reply(wire.SERVFAIL, options=options, source="error", error=error)

    def _plan(self) -> Sequence[Upstream]:
        """Upstreams to try, in policy order, without those that are down."""
        order = self.policy.order(self.proxies)
        for up in order:
            if up.fails >= up.down_at:
                break
        else:
            return order  # all up: the common case builds no list
        plan = [up for up in order if up.fails < up.down_at]
        if plan:
            return plan
        self.broken.value += 1
        if self.cfg.failfast:
            return ()
        return (random.choice(self.proxies),)  # health checking may be what is broken

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for up in self.proxies:
            await up.open(self.loop)
        self.maintenance = self.loop.create_task(self._maintain())

    async def _maintain(self) -> None:
        tick = min(self.cfg.expire, MAINTENANCE_TICK) or MAINTENANCE_TICK
        while True:
            await asyncio.sleep(tick)
            for up in self.proxies:
                try:
                    await up.maintain(self.loop.time())  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001 - keep maintaining the others
                    log.error("forward_maintenance_failed", to=up.address, error=repr(exc))

    async def stop(self) -> None:
        tasks = [t for t in (self.maintenance, *(up.probe for up in self.proxies)) if t]
        for task in tasks:
            task.cancel()
        for up in self.proxies:
            up.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.maintenance = None

    def ready(self) -> bool:
        return self.loop is not None

    # --- introspection -----------------------------------------------------------------
    def upstreams(self) -> list[UpstreamStatus]:
        """Each upstream's address, health, current failure count and mean latency."""
        return [
            UpstreamStatus(
                address=up.address,
                transport=up.target.transport,
                healthy=up.healthy,
                fails=up.fails,
                answers=up.answers,
                avg_latency=up.rtt_sum / up.answers if up.answers else None,
            )
            for up in self.proxies
        ]
