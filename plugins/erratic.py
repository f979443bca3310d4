"""erratic - a test server answering erratically: dropped, delayed or truncated replies, as
CoreDNS's ``erratic``.

Syntax::

    erratic {
        drop [AMOUNT]
        truncate [AMOUNT]
        delay [AMOUNT [DURATION]]
    }

* ``drop``: drop 1 of every AMOUNT queries (default 2);
* ``truncate``: set TC on 1 of every AMOUNT replies (default 2);
* ``delay``: delay 1 of every AMOUNT replies by DURATION (default 2 and ``100ms``).

With no block, or a block without ``delay`` and ``truncate``, 1 query in 2 is dropped; once
``delay`` or ``truncate`` is given, nothing is dropped unless ``drop`` is given too. An AMOUNT
of 0 turns that behaviour off. Queries are numbered from 0 and the rules are CoreDNS's: query N
is dropped when N % drop == 0, delayed when N % delay == 0, and truncated when N & truncate
== 0 (CoreDNS tests the bitwise AND, so ``truncate 2`` truncates queries 0, 1, 4, 5, ...).

Answers (authoritative, TTL 0): A 192.0.2.53 (RFC 5737), AAAA 2001:db8::53 (RFC 3849), an AXFR
a small zone (SOA, two NS, two AAAA, and the closing SOA unless truncated); any other type
SERVFAIL. ``erratic`` is the last stage: nothing after it is asked. It is ready (``/ready``)
only while it has seen 3 or 4 queries, as CoreDNS's, to test readiness checks. Its answers
are never replayed (each query counts). Errors: ``illegal amount value given "X"`` for a
negative AMOUNT, ``strconv.ParseInt: parsing "X": invalid syntax``, a Go duration error
(``time: invalid duration "X"``), more arguments than shown, ``unknown property 'X'``.

Examples::

    example.org {
        erratic {
            drop 3
        }
    }

    example.org {
        erratic {
            delay 3 50ms
            truncate 5
        }
    }
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import dns.rdatatype

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

TYPE_AXFR = int(dns.rdatatype.AXFR)
A_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_A, 0, ipaddress.IPv4Address("192.0.2.53").packed)
AAAA_RR = wire.rr(wire.QNAME_PTR, wire.TYPE_AAAA, 0, ipaddress.IPv6Address("2001:db8::53").packed)


def setup(directive: Directive, ctx: SetupContext) -> Erratic:
    if directive.args:
        raise directive.arg_error()
    drop, delay, truncate, duration = 2, 0, 0, 0.0
    seen_drop = False
    for line in directive.block or ():
        word = line.name.text
        if word not in ("drop", "delay", "truncate"):
            raise line.unknown_property(("drop", "delay", "truncate"))
        args = line.args
        if len(args) > (2 if word == "delay" else 1):
            raise line.arg_error()
        if word == "drop":
            if args:
                drop, seen_drop = _amount(line, args[0]), True
        elif word == "truncate":
            truncate = _amount(line, args[0]) if args else 2
        else:
            delay = _amount(line, args[0]) if args else 2
            duration = _duration(line, args[1]) if len(args) > 1 else 0.1
    if (delay or truncate) and not seen_drop:
        drop = 0
    return Erratic(drop, delay, truncate, duration)


def _amount(line: Directive, token: Token) -> int:
    text = token.text
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or int(text) >= 1 << 31:
        raise line.error(f'strconv.ParseInt: parsing "{text}": invalid syntax', token)
    if int(text) < 0:
        raise line.error(f'illegal amount value given "{text}"', token)
    return int(text)


def _duration(line: Directive, token: Token) -> float:
    try:
        return parse_duration(token)
    except CorefileError:
        raise line.error(f'time: invalid duration "{token.text}"', token) from None


def _zone(truncate: bool) -> tuple[bytes, ...]:
    """CoreDNS's small AXFR zone at the query name (the closing SOA left out when truncated)."""
    name = wire.QNAME_PTR
    soa = wire.rr(
        name,
        wire.TYPE_SOA,
        0,
        bytes.fromhex("03736e7303646e73056963616e6e036f726700")  # sns.dns.icann.org.
        + bytes.fromhex("036e6f6303646e73056963616e6e036f726700")  # noc.dns.icann.org.
        + struct.pack("!IIIII", 2018050825, 7200, 3600, 1209600, 3600),
    )
    records = (
        soa,
        wire.rr(name, wire.TYPE_NS, 0, b"\x01b" + name),
        wire.rr(name, wire.TYPE_NS, 0, b"\x01a" + name),
        wire.rr(b"\x01a" + name, wire.TYPE_AAAA, 0, ipaddress.IPv6Address("2001:bd8::53").packed),
        wire.rr(b"\x01b" + name, wire.TYPE_AAAA, 0, ipaddress.IPv6Address("2001:500::54").packed),
    )
    return records if truncate else (*records, soa)


class Erratic(Plugin):
    name = "erratic"
    replays = TAKES_PART  # its answers carry no replay: every query is counted

    def __init__(self, drop: int, delay: int, truncate: int, duration: float) -> None:
        self.drop = drop
        self.delay = delay
        self.truncate = truncate
        self.duration = duration
        self.queries = 0

    def ready(self) -> bool:
        return 3 <= self.queries < 5

    async def serve(self, req: Request, next: Handler) -> Response:
        number = self.queries
        self.queries += 1
        drop = bool(self.drop) and number % self.drop == 0
        delay = bool(self.delay) and number % self.delay == 0
        truncate = bool(self.truncate) and number & self.truncate == 0
        if drop:
            return req.drop()
        if delay:
            await asyncio.sleep(self.duration)
        flags = wire.AA | (wire.TC if truncate else 0)
        if req.qtype == wire.TYPE_A:
            return req.reply(wire.NOERROR, flags=flags, answer=(A_RR,), source=self.name)
        if req.qtype == wire.TYPE_AAAA:
            return req.reply(wire.NOERROR, flags=flags, answer=(AAAA_RR,), source=self.name)
        if req.qtype == TYPE_AXFR:
            return req.reply(wire.NOERROR, flags=wire.AA, answer=_zone(truncate), source=self.name)
        return req.reply(wire.SERVFAIL, flags=0, source=self.name)
