"""local - answer localhost and the RFC 6761 local names itself, as CoreDNS's ``local``.

Syntax::

    local
    local {
        localhost_prefix on|off
    }

No arguments. Names in the zones ``localhost.``, ``0.in-addr.arpa.``, ``127.in-addr.arpa.``
and ``255.in-addr.arpa.`` are answered at once, so they never escape to the upstreams:

* ``localhost.``: A 127.0.0.1, AAAA ::1, its SOA (``localhost. root.localhost. 1 0 0 0
  604800``) and NS (``localhost.``); any other type: NODATA with that SOA.
* a name under ``.localhost.`` (RFC 6761), and, while ``localhost_prefix`` is ``on`` (the
  default, CoreDNS's legacy behaviour), a name that starts with ``localhost.``
  (``localhost.example.org.``): A 127.0.0.1, AAAA ::1, other types NODATA. These are counted
  in ``coredns_local_localhost_requests_total`` (no labels) and logged at debug level.
* the apexes ``0.in-addr.arpa.``, ``127.in-addr.arpa.``, ``255.in-addr.arpa.``: SOA and NS
  as above, other types NODATA; ``1.0.0.127.in-addr.arpa.`` PTR ``localhost.``, other types
  NODATA;
* any other name in those zones: NXDOMAIN with the zone's SOA.

Every record has TTL 604800 (a week). Replies are NOERROR/NXDOMAIN without AA or RA, as
CoreDNS's. ``ip6.arpa`` is not intercepted (CoreDNS's "Bugs"). Names outside these go on to
the next plugin. ``localhost_prefix on|off``: anything else is an error (``localhost_prefix
expects 'on' or 'off', got "X"``).

The answers depend on the query alone, so repeated queries are replayed (the localhost
counter is an Effect, counted on replays too).

Example::

    . {
        local
        forward . 10.0.0.2
    }
"""

from __future__ import annotations

import ipaddress
import struct

import structlog

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.metrics import Metric
from proxy.names import longest_zone, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect
from proxy.request import Request, Response

log = structlog.get_logger("dnsfw.local")

TTL = 604800
LOCALHOST = text_to_wire("localhost.")
LOCALHOST_LABEL = LOCALHOST[:-1]  # a name that starts with it is a legacy localhost.<domain>
ZONES = frozenset(
    text_to_wire(z)
    for z in ("localhost.", "0.in-addr.arpa.", "127.in-addr.arpa.", "255.in-addr.arpa.")
)
PTR_NAME = text_to_wire("1.0.0.127.in-addr.arpa.")
A_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_A, TTL, ipaddress.IPv4Address("127.0.0.1").packed)
AAAA_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_AAAA, TTL, ipaddress.IPv6Address("::1").packed)
NS_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_NS, TTL, LOCALHOST)
PTR_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_PTR, TTL, LOCALHOST)
SOA_RDATA = LOCALHOST + text_to_wire("root.localhost.") + struct.pack("!IIIII", 1, 0, 0, 0, TTL)


def soa(owner: bytes) -> bytes:
    return wire.rr(owner, wire.TYPE_SOA, TTL, SOA_RDATA)


def setup(directive: Directive, ctx: SetupContext) -> Local:
    if directive.args:
        raise directive.arg_error()
    prefix = True
    for line in directive.block or ():
        if line.name.text != "localhost_prefix":
            raise line.unknown_property(("localhost_prefix",))
        if len(line.args) != 1:
            raise line.arg_error()
        value = line.args[0].text
        if value not in ("on", "off"):
            raise line.error(f"localhost_prefix expects 'on' or 'off', got \"{value}\"")
        prefix = value == "on"
    counter = ctx.app.metrics.counter(
        "coredns_local_localhost_requests_total",
        "Counter of special localhost subdomain requests.",
    )
    return Local(prefix, CountLocalhost(counter))


class CountLocalhost(Effect):
    """One more special localhost query (``coredns_local_localhost_requests_total``)."""

    __slots__ = ("counter",)

    def __init__(self, counter: Metric) -> None:
        self.counter = counter

    def __call__(self, client: object, start: float) -> None:
        self.counter.inc()


class Local(Plugin):
    name = "local"
    replays = TAKES_PART

    def __init__(self, prefix: bool, count: CountLocalhost) -> None:
        self.prefix = prefix  # localhost_prefix: legacy `localhost.<domain>` names too
        self.count = count

    async def serve(self, req: Request, next: Handler) -> Response:
        name = req.qname_wire
        zone = longest_zone(name, ZONES)
        below = len(name) > len(LOCALHOST)
        if below and (zone == LOCALHOST or (self.prefix and name.startswith(LOCALHOST_LABEL))):
            log.debug("localhost_query", qname=req.qname, qtype=req.qtype, client=req.client[0])
            req.run(self.count)
            return self._answer(req, wire.NOERROR, *self._address(req.qtype))
        if zone is None:
            return await next(req)
        if name in ZONES:
            return self._answer(req, wire.NOERROR, *self._apex(name, req.qtype))
        # the zone's SOA is owned by the zone's part of the question name (the client's case)
        zone_soa = soa(struct.pack("!H", 0xC000 | (wire.HEADER_LEN + len(name) - len(zone))))
        if name == PTR_NAME:
            if req.qtype == wire.TYPE_PTR:
                return self._answer(req, wire.NOERROR, (PTR_RR,), ())
            return self._answer(req, wire.NOERROR, (), (zone_soa,))
        return self._answer(req, wire.NXDOMAIN, (), (zone_soa,))

    @staticmethod
    def _address(qtype: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """(answer, authority) for a localhost name: its address, or NODATA."""
        if qtype == wire.TYPE_A:
            return (A_RR,), ()
        if qtype == wire.TYPE_AAAA:
            return (AAAA_RR,), ()
        return (), (soa(wire.QNAME_PTR),)

    @staticmethod
    def _apex(name: bytes, qtype: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """(answer, authority) at one of the zones' apexes."""
        if qtype == wire.TYPE_SOA:
            return (soa(wire.QNAME_PTR),), ()
        if qtype == wire.TYPE_NS:
            return (NS_RR,), ()
        if name == LOCALHOST and qtype in (wire.TYPE_A, wire.TYPE_AAAA):
            return Local._address(qtype)
        return (), (soa(wire.QNAME_PTR),)

    @staticmethod
    def _answer(
        req: Request, rcode: int, answer: tuple[bytes, ...], authority: tuple[bytes, ...]
    ) -> Response:
        return req.fixed_reply(rcode, flags=0, answer=answer, authority=authority, source="local")
