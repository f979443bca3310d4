"""loadbalance - shuffle the A, AAAA and MX records of replies, as CoreDNS's ``loadbalance``.

Syntax::

    loadbalance [round_robin | weighted WEIGHTFILE] {
        reload DURATION
        prefer CIDR [CIDR...]
    }

* ``round_robin`` (the default): every NOERROR reply that passes (from ``forward``, the
  ``cache``, a replay, any stage after it) gets its A, AAAA and MX records in a new random
  order, in each section. The block takes ``prefer CIDR...`` only (addresses in these
  networks are then put first, in the order of the CIDRs; ``invalid CIDR "X": ...``).
* ``weighted WEIGHTFILE``: for A, AAAA and SRV queries, one address record of the answer (and
  of the additional section) is picked at random by its weight and put first; the others keep
  their order. The block takes ``reload DURATION`` only: the file is read again that often
  (default 30s; ``0s``: never) and used when its content changed; a file that does not parse
  then is logged (``weights_reload_failed``) and the old weights kept. A relative WEIGHTFILE
  is read from the Corefile's directory.

Weight file: ``#`` comments and blank lines are ignored; a line with one field is a domain
name, the lines after it ``IP WEIGHT`` (WEIGHT 1 to 255). An address without a weight weighs 1::

    www.example.com
    100.64.1.1 3
    100.64.1.2 1

Errors as CoreDNS's: ``unknown property for round_robin``, ``missing weight file argument``,
``unexpected argument(s)``, ``reload duration value is missing``, ``unexpected argument``,
``invalid reload duration 'X'``, ``unknown policy: X``, ``unknown property 'X'``; in the
weight file ``wrong domain name``, ``wrong IP address``, ``wrong weight value``, ``missing
domain name``, ``could not parse weight line`` (checked by ``dnsfw check``).

Other rcodes, AXFR and IXFR pass unchanged. How the records move: the addresses of one name
and type trade places inside the reply (same layout, so compression and the reply's computed
facts stay valid and nothing is parsed again); records of different names do not trade
places, where CoreDNS may also move them. A section with several MX records of one name is
shuffled through dnspython (slower; MX queries are rare). The shuffle is a
:class:`proxy.replay.Reshaped` on the answer it passes: replays of cached answers are shuffled
too, each time.

Examples::

    . {
        loadbalance round_robin
        forward . 8.8.8.8 8.8.4.4
    }

    example.com {
        loadbalance weighted db.example.com.weights {
            reload 10s
        }
        forward . 10.0.0.2
    }

    . {
        loadbalance round_robin {
            prefer 10.9.20.0/24 192.168.1.0/24
        }
        forward . 1.1.1.1
    }
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import random
import struct

import dns.exception
import dns.message
import dns.rdatatype
import structlog

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.message import reshaped
from proxy.names import text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response
from proxy.wire import WireError

log = structlog.get_logger("dnsfw.loadbalance")

DEFAULT_RELOAD = 30.0
TYPE_AXFR = int(dns.rdatatype.AXFR)
TYPE_IXFR = int(dns.rdatatype.IXFR)
ADDRESS_SIZE = {wire.TYPE_A: 4, wire.TYPE_AAAA: 16}
WEIGHTED_QTYPES = (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_SRV)
_RR_FIXED = struct.Struct("!HHIH")
_HEADER = struct.Struct("!HHHHHH")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Weights = dict[bytes, dict[bytes, int]]  # owner (lower-case wire) -> packed address -> weight


def setup(directive: Directive, ctx: SetupContext) -> LoadBalance:
    args = directive.args
    policy = args[0].text if args else "round_robin"
    if policy == "weighted":
        return LoadBalance(Shuffle(weighted=weights_setup(directive)))
    if policy != "round_robin":
        raise directive.error(f"unknown policy: {policy}", args[0])
    if len(args) > 1:
        raise directive.error("unknown property for round_robin", args[1])
    prefer: list[Network] = []
    for line in directive.block or ():
        if line.name.text != "prefer":
            raise line.unknown_property(("prefer",))
        for token in line.args:
            try:
                prefer.append(ipaddress.ip_network(token.text, strict=False))
            except ValueError:
                raise line.error(
                    f'invalid CIDR "{token.text}": invalid CIDR address: {token.text}', token
                ) from None
    return LoadBalance(Shuffle(prefer=tuple(prefer)))


def weights_setup(directive: Directive) -> WeightFile:
    args = directive.args
    if len(args) < 2:
        raise directive.error("missing weight file argument")
    if len(args) > 2:
        raise directive.error("unexpected argument(s)", args[2])
    reload = DEFAULT_RELOAD
    for line in directive.block or ():
        if line.name.text != "reload":
            raise line.unknown_property(("reload",))
        if not line.args:
            raise line.error("reload duration value is missing")
        if len(line.args) > 1:
            raise line.error("unexpected argument", line.args[1])
        reload = _reload_duration(line.args[0])
    name = args[1].text
    path = (
        name
        if os.path.isabs(name)
        else os.path.join(os.path.dirname(os.path.abspath(args[1].file)), name)
    )
    weights = WeightFile(path, reload)
    try:
        weights.update()
    except FileNotFoundError:
        if not reload:
            raise directive.error(f"weight file open error: {path}", args[1]) from None
        log.warning("weights_missing", file=path, retry_seconds=reload)
    except (OSError, ValueError) as err:
        raise directive.error(str(err), args[1]) from None
    return weights


def _reload_duration(token: Token) -> float:
    try:
        return parse_duration(token)
    except CorefileError:
        raise CorefileError(
            token.file, token.line, f"invalid reload duration '{token.text}'"
        ) from None


class WeightFile:
    """The weights of a ``weighted`` policy, read again every ``reload`` seconds when changed."""

    def __init__(self, path: str, reload: float) -> None:
        self.path = path
        self.reload = reload
        self.digest = b""
        self.weights: Weights = {}

    def update(self) -> bool:
        """Read the file; True when its content changed (and parsed). Raises OSError or
        ValueError (the old weights stay)."""
        with open(self.path, "rb") as f:
            data = f.read()
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        if digest == self.digest:
            return False
        self.weights = parse_weights(data.decode("utf-8", "replace"), self.path)
        self.digest = digest
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload)
            try:
                if self.update():
                    log.info("weights_reloaded", file=self.path)
            except (OSError, ValueError) as err:
                log.error("weights_reload_failed", file=self.path, error=str(err))

    def top(self, owner: bytes, addresses: list[bytes]) -> int:
        """The index of the address to put first, drawn by weight (CoreDNS's order: the
        heaviest first, then the first whose running sum passes the draw)."""
        known = self.weights.get(owner, {})
        weighted = sorted(enumerate(known.get(a, 1) for a in addresses), key=lambda p: -p[1])
        draw = random.randrange(sum(w for _, w in weighted))
        for index, weight in weighted:
            draw -= weight
            if draw < 0:
                return index
        return 0


def parse_weights(text: str, path: str) -> Weights:
    """A weight file's content, with CoreDNS's error texts."""
    weights: Weights = {}
    owner: bytes | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            if _address(fields[0]) is not None:
                raise ValueError(
                    f'wrong domain name:"{fields[0]}" in weight file {path}. '
                    "(Maybe a missing weight value?)"
                )
            try:
                owner = text_to_wire(fields[0] if fields[0].endswith(".") else fields[0] + ".")
            except ValueError:
                raise ValueError(f'wrong domain name:"{fields[0]}" in weight file {path}') from None
            weights.setdefault(owner, {})
        elif len(fields) == 2:
            address = _address(fields[0])
            if address is None:
                raise ValueError(f'wrong IP address:"{fields[0]}" in weight file {path}')
            if not fields[1].isdigit() or not 1 <= int(fields[1]) <= 255:
                raise ValueError(f'wrong weight value:"{fields[1]}" in weight file {path}')
            if owner is None:
                raise ValueError(f"missing domain name in weight file {path}")
            weights[owner][address] = int(fields[1])
        else:
            raise ValueError(f'could not parse weight line:"{line}" in weight file {path}')
    return weights


def _address(text: str) -> bytes | None:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        return None


class Shuffle:
    """The policy, applied to one reply's bytes (a new bytes object; the given one is kept)."""

    __slots__ = ("weighted", "prefer")

    def __init__(self, *, weighted: WeightFile | None = None, prefer: tuple[Network, ...] = ()):
        self.weighted = weighted
        self.prefer = prefer

    def __call__(self, reply: bytes) -> bytes:
        return self.apply(reply)[0]

    def apply(self, reply: bytes) -> tuple[bytes, bool]:
        """(the reply to send, whether it has the layout of ``reply``: the same records at
        the same offsets, so what was computed for ``reply`` holds for it)."""
        if len(reply) < wire.HEADER_LEN or reply[3] & 0xF:  # not NOERROR
            return reply, True
        try:
            groups, qtype, mx = _address_groups(reply)
        except (WireError, IndexError, struct.error):
            return reply, True  # not ours to judge: it goes out as it came
        if qtype in (TYPE_AXFR, TYPE_IXFR):
            return reply, True
        if self.weighted is not None:
            if qtype not in WEIGHTED_QTYPES:
                return reply, True
            return self._weighted(reply, groups), True
        if mx:
            return self._through_dnspython(reply), False
        if not groups:
            return reply, True
        out = bytearray(reply)
        for _, _, size, offsets in groups:
            values = [reply[o : o + size] for o in offsets]
            random.shuffle(values)
            if self.prefer:
                values = self._preferred_first(values)
            for off, value in zip(offsets, values, strict=True):
                out[off : off + size] = value
        return bytes(out), True

    def _preferred_first(self, values: list[bytes]) -> list[bytes]:
        """``values`` (packed addresses) with those in the preferred networks first, in the
        order of the networks (CoreDNS's sortBySubnetPriority)."""
        ips = [ipaddress.ip_address(v) for v in values]
        order: list[int] = []
        for network in self.prefer:
            order += [i for i, ip in enumerate(ips) if i not in order and ip in network]
        order += [i for i in range(len(values)) if i not in order]
        return [values[i] for i in order]

    def _weighted(self, reply: bytes, groups: list[Group]) -> bytes:
        assert self.weighted is not None
        out = bytearray(reply)
        done: set[int] = set()  # the first group of each section (answer, additional)
        for section, owner, size, offsets in groups:
            if section in done or section == 1:
                continue
            done.add(section)
            values = [reply[o : o + size] for o in offsets]
            top = self.weighted.top(owner, values)
            if top:
                first, chosen = offsets[0], offsets[top]
                out[first : first + size], out[chosen : chosen + size] = values[top], values[0]
        return bytes(out)

    def _through_dnspython(self, reply: bytes) -> bytes:
        """Shuffle with dnspython: for sections whose MX records cannot trade places in place
        (their names may be compressed against each other)."""
        try:
            msg = dns.message.from_wire(reply)
        except dns.exception.DNSException:
            return reply
        for section in (msg.answer, msg.authority, msg.additional):
            for rrset in section:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.MX):
                    items = list(rrset)
                    random.shuffle(items)
                    rrset.clear()
                    for rd in items:
                        rrset.add(rd)
        return msg.to_wire()


Group = tuple[int, bytes, int, list[int]]  # section, owner, rdata size, rdata offsets


def _address_groups(reply: bytes) -> tuple[list[Group], int, bool]:
    """(section, owner, rdata size, rdata offsets) of the A/AAAA records of one owner and type that
    share a section, for groups of more than one; the query type; whether a section holds
    several MX records of one owner."""
    _, _, qd, an, ns, ar = _HEADER.unpack_from(reply)
    off = wire.HEADER_LEN
    qtype = 0
    for _ in range(qd):
        off = wire.skip_name(reply, off)
        qtype = (reply[off] << 8) | reply[off + 1]
        off += 4
    groups: dict[tuple[int, bytes, int], list[int]] = {}
    mx: dict[tuple[int, bytes], int] = {}
    for section, count in enumerate((an, ns, ar)):
        for _ in range(count):
            owner, off = wire.read_name(reply, off)
            rtype, _, _, rdlen = _RR_FIXED.unpack_from(reply, off)
            off += 10
            if ADDRESS_SIZE.get(rtype) == rdlen:
                groups.setdefault((section, owner, rtype), []).append(off)
            elif rtype == wire.TYPE_MX:
                mx[(section, owner)] = mx.get((section, owner), 0) + 1
            off += rdlen
    found = [(s, o, ADDRESS_SIZE[t], offs) for (s, o, t), offs in groups.items() if len(offs) > 1]
    return found, qtype, any(n > 1 for n in mx.values())


class LoadBalance(Plugin):
    name = "loadbalance"
    replays = TAKES_PART

    def __init__(self, shuffle: Shuffle) -> None:
        self.shuffle = shuffle
        self._watch: asyncio.Task | None = None

    async def start(self) -> None:
        weighted = self.shuffle.weighted
        if weighted is not None and weighted.reload:
            self._watch = asyncio.ensure_future(weighted.watch())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def serve(self, req: Request, next: Handler) -> Response:
        resp = await next(req)
        data = resp.wire
        if not data:
            return resp
        shuffled, same_layout = self.shuffle.apply(data)
        # the same layout: the reply's computed facts (TTL offsets, chain) hold for it
        return reshaped(resp, self.shuffle, names=not same_layout, wire=shuffled)
