"""dns64 - synthesizes AAAA records from A records (RFC 6147 DNS64), as CoreDNS's ``dns64``,
for IPv6-only networks behind NAT64.

Syntax::

    dns64 [PREFIX]
    dns64 [PREFIX] {
        prefix PREFIX
        translate_all
        allow_ipv4
    }

* **PREFIX** (or ``prefix PREFIX``): the IPv6 prefix the IPv4 addresses are put in, default
  the well-known ``64:ff9b::/96``; its length is 32, 40, 48, 56, 64 or 96 (RFC 6052: bits 64
  to 71, the "u" octet, stay zero).
* ``translate_all``: translate even when the answer has AAAA records.
* ``allow_ipv4``: translate for IPv4 clients too (by default only queries that came in over
  IPv6 are translated; an IPv4-mapped address is an IPv4 client, as in CoreDNS).

For an AAAA query (class IN) from such a client, the rest of the chain answers it first.
That reply goes to the client unchanged when it is NXDOMAIN with no answer records (RFC 6147
5.1.2), when it has an AAAA record (unless ``translate_all``), or when the firewall made it (a
firewall decision on the AAAA query stands). Otherwise (NODATA, SERVFAIL, REFUSED...) the same
name is asked for type A through the rest of the chain (so ``acl``, the firewall, the cache and
``forward`` see that query too), and the reply is CoreDNS's synthesis: rcode NOERROR, the
query's id, opcode, RD and CD, the A reply's TC; every A record of the A reply's answer
becomes an AAAA record (its owner and class, the address in the prefix) with TTL the smaller
of the A record's and the AAAA reply's SOA record's TTL (600 when it has no SOA); other answer
records (CNAMEs) as they are; the A reply's authority and additional sections (its OPT record
too) as they are. An A query that gets no reply at all (a stage dropped it) is SERVFAIL.

One difference from CoreDNS: its A query enters the whole server again, so the stages ahead
of ``dns64`` (``prometheus``, ``log``, ``errors``) see it as a query of its own; dnsfw asks
only the stages behind ``dns64``, so the client's query is counted and logged once (the
firewall's rule counters and the cache see both, as in CoreDNS).

Errors are CoreDNS's: ``invalid CIDR address: X``, ``invalid netmask 32 IPv6 address:
"X"`` (an IPv4 prefix), ``invalid prefix length "X"``, ``unknown property 'X'``, and the
argument count error. Several ``dns64`` lines in one server block make one stage (CoreDNS reads
them as one): options add up, the last prefix wins.

Metrics (CoreDNS's): ``coredns_dns64_requests_translated_total{server}``. A synthesized reply
has ``plugin="dns64"`` in ``coredns_dns_responses_total``.

Replays (:mod:`proxy.replay`): whether a query is translated depends on the client's address
family, and replays are keyed by the query's bytes for every client, so without
``allow_ipv4`` an AAAA query records a :class:`~proxy.replay.Gate` that lets through clients
of the family that recorded it (a client of the other family runs the chain). A synthesized
reply is replayed from the two answers it was made of (:class:`proxy.message.Combined`: e.g.
the cache's AAAA and A entries), synthesized again by the same function, and dropped as soon
as either answer no longer holds or the AAAA answer would no longer be translated. Cost: a
translated reply is decoded and encoded with dnspython (tens of µs), on the chain and on each
replay; queries of other types cost one comparison.

Examples::

    . {
        dns64
        forward . 9.9.9.9
    }

    . {
        dns64 64:1337::/96
        forward . 9.9.9.9
    }

    . {
        dns64 {
            prefix 64:1337::/96
        }
        forward . 9.9.9.9
    }

    . {
        dns64 {
            translate_all
        }
        forward . 9.9.9.9
    }

    . {
        dns64 {
            allow_ipv4
        }
        forward . 9.9.9.9
    }
"""

from __future__ import annotations

import ipaddress
import struct
import weakref
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.AAAA
import dns.rrset

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import ask, combined, sections, with_qtype
from proxy.metrics import Child, Metric
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect, Gate
from proxy.request import Request, Response

DEFAULT_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
NO_SOA_TTL = 600  # RFC 6147 5.1.7: the TTL when the AAAA reply has no SOA
ANSWER_COUNT = struct.Struct("!H")


def ipv6_client(host: str) -> bool:
    """Whether a client address is IPv6; an IPv4-mapped one (``::ffff:192.0.2.1``, from a
    dual-stack socket) is IPv4, as Go's To4 sees it."""
    return ":" in host and "." not in host


class Family(Gate):
    """Lets through the clients of one address family: the family whose query recorded the
    replay (translated or not), so the other family's queries run the chain."""

    __slots__ = ("ipv6",)

    def __init__(self, ipv6: bool) -> None:
        self.ipv6 = ipv6

    def __call__(self, client: Any, now: float) -> bool:
        return ipv6_client(client[0]) == self.ipv6


FAMILIES = (Family(False), Family(True))


class Translated(Effect):
    """One translated query counted in ``coredns_dns64_requests_translated_total``."""

    __slots__ = ("child",)

    def __init__(self, child: Child) -> None:
        self.child = child

    def __call__(self, client: Any, start: float) -> None:
        self.child.value += 1


def to6(prefix: ipaddress.IPv6Network, address: bytes) -> bytes:
    """RFC 6052's address: ``address`` (4 bytes) in ``prefix``, skipping the u octet (byte 8)."""
    head = prefix.prefixlen // 8
    v6 = bytearray(prefix.network_address.packed[:head] + bytes(16 - head))
    i = head
    for octet in address:
        if i == 8:
            i += 1
        v6[i] = octet
        i += 1
    return bytes(v6)


class Dns64(Plugin):
    name = "dns64"
    replays = TAKES_PART  # a Gate per family, the synthesis on a Combined answer (docstring)

    def __init__(self, translated: Metric) -> None:
        self.prefix = DEFAULT_PREFIX
        self.translate_all = False
        self.allow_ipv4 = False
        self.translated = translated
        self.counted: dict[str, Translated] = {}
        self.block: object = None  # the BlockContext it was set up for (setup)

    async def serve(self, req: Request, next: Handler) -> Response:
        if req.qtype != wire.TYPE_AAAA or req.qclass != wire.CLASS_IN:
            return await next(req)
        if not self.allow_ipv4:
            ipv6 = ipv6_client(req.client[0])
            req.admit(FAMILIES[ipv6])  # True for this client: it records the family
            if not ipv6:
                return await next(req)
        resp = await next(req)
        if not resp.wire or resp.source == "firewall" or not self.translates(resp.wire):
            return resp
        query = with_qtype(req.wire, req.qend, wire.TYPE_A)
        found = await ask(req, query, next)
        if not found.wire:
            error = "plugin/dns64: no reply to the A query"
            return req.reply(wire.SERVFAIL, source="error", error=error)
        req.run(self._counter(req.server))
        reply = self.synthesize(req.wire, resp.wire, found.wire)
        replay = combined(resp, found, query, self.translates, self.synthesize)
        return Response(reply, wire.NOERROR, self.name, replay=replay)

    def translates(self, reply: bytes) -> bool:
        """CoreDNS's responseShouldDNS64 for the reply to an AAAA query."""
        rcode, answers = reply[3] & 0x0F, ANSWER_COUNT.unpack_from(reply, 6)[0]
        if rcode == wire.NXDOMAIN and not answers:
            return False
        if self.translate_all:
            return True
        return all(r.rtype != wire.TYPE_AAAA for r in sections(reply).answer)

    def synthesize(self, query: bytes, aaaa: bytes, a: bytes) -> bytes:
        """CoreDNS's Synthesize: the reply to ``query`` made of the A reply ``a``."""
        orig = dns.message.from_wire(aaaa, ignore_trailing=True, one_rr_per_rrset=True)
        found = dns.message.from_wire(a, ignore_trailing=True, one_rr_per_rrset=True)
        soa_ttl = NO_SOA_TTL
        for rrset in orig.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                soa_ttl = rrset.ttl
        out = dns.message.Message(id=(query[0] << 8) | query[1])
        flags = (query[2] << 8) | query[3]
        out.flags = (
            dns.flags.QR
            | (flags & (wire.OPCODE_MASK | wire.RD | wire.CD))
            | (found.flags & dns.flags.TC)
        )
        name, _ = dns.name.from_wire(query, wire.HEADER_LEN)
        out.question = [dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.AAAA)]
        for rrset in found.answer:
            if rrset.rdtype != dns.rdatatype.A:
                out.answer.append(rrset)
                continue
            aaaa_set = dns.rrset.RRset(rrset.name, rrset.rdclass, dns.rdatatype.AAAA)
            address = ipaddress.IPv6Address(to6(self.prefix, rrset[0].to_wire()))
            rdata = dns.rdtypes.IN.AAAA.AAAA(rrset.rdclass, dns.rdatatype.AAAA, str(address))
            aaaa_set.add(rdata, min(rrset.ttl, soa_ttl))
            out.answer.append(aaaa_set)
        out.authority = found.authority
        out.additional = found.additional
        if found.edns >= 0:  # the A reply's OPT record, as CoreDNS passes its Extra on
            out.use_edns(found.edns, found.ednsflags, found.payload, options=found.options)
        out.set_rcode(wire.NOERROR)
        return out.to_wire(max_size=65535)

    def _counter(self, server: str) -> Translated:
        counted = self.counted.get(server)
        if counted is None:
            child = self.translated.labels(server)
            counted = self.counted[server] = Translated(child)  # type: ignore[arg-type]
        return counted


# --- setup -----------------------------------------------------------------------------------


def setup(directive: Directive, ctx: SetupContext) -> Dns64 | None:
    """The block's first ``dns64`` is its stage; a later one sets its options on it (CoreDNS
    reads all of a block's ``dns64`` lines into one plugin)."""
    first = _BY_BLOCK.get(id(ctx.block))
    fresh = first is None or first.block is not ctx.block
    stage = _stage(ctx) if fresh else first
    assert stage is not None
    args = directive.values
    if len(args) > 1:
        raise directive.arg_error()
    if args:
        stage.prefix = _prefix(directive, args[0])
    for line in directive.block or ():
        option = line.name.text
        if option == "prefix":
            if not line.values:
                raise line.arg_error()
            stage.prefix = _prefix(line, line.values[0])
        elif option == "translate_all":
            stage.translate_all = True
        elif option == "allow_ipv4":
            stage.allow_ipv4 = True
        else:
            raise line.unknown_property(("prefix", "translate_all", "allow_ipv4"))
    return stage if fresh else None


# each block's stage while the block is set up (held weakly: a finished setup lets go)
_BY_BLOCK: weakref.WeakValueDictionary[int, Dns64] = weakref.WeakValueDictionary()


def _stage(ctx: SetupContext) -> Dns64:
    translated = ctx.app.metrics.counter(
        "coredns_dns64_requests_translated_total",
        "Counter of DNS requests translated by dns64.",
        ("server",),
    )
    stage = Dns64(translated)
    stage.block = ctx.block
    _BY_BLOCK[id(ctx.block)] = stage
    return stage


def _prefix(line: Directive, text: str) -> ipaddress.IPv6Network:
    """CoreDNS's parsePrefix (Go's net.ParseCIDR, then the length checks)."""
    address, slash, length = text.partition("/")
    try:
        if not slash or not length.isdigit():
            raise ValueError(text)
        network = ipaddress.ip_network(f"{address}/{int(length)}", strict=False)
    except ValueError:
        raise line.error(f"invalid CIDR address: {text}") from None
    if network.version != 6:
        raise line.error(f'invalid netmask 32 IPv6 address: "{network}"')
    if network.prefixlen % 8 or not 32 <= network.prefixlen <= 96:
        raise line.error(f'invalid prefix length "{network}"')
    return network
