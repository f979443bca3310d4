"""file - authoritative answers from RFC 1035 zone files (CoreDNS's ``file``).

Syntax::

    file DBFILE [ZONES...] {
        reload DURATION
        reload_by_mtime
        fallthrough [ZONES...]
    }

* **DBFILE**: the zone file (RFC 1035 master file format, read with dnspython; ``$ORIGIN``,
  ``$TTL`` and ``$INCLUDE`` work); a relative path is relative to the Corefile's directory
  (CoreDNS: to the ``root`` plugin's directory, which dnsfw does not have).
* **ZONES**: the zones it is authoritative for, each read from the same file with that origin
  (default: the server block's zones). A file that does not parse, or has no SOA record at
  the origin (CoreDNS takes any SOA it finds), is a setup error (``file "PATH" has no SOA record for origin ZONE``,
  ``failed to parse file "PATH" for origin ZONE with error ...``); one that cannot be opened is
  a warning when it will be tried again (``reload`` above 0: SERVFAIL until it can be read),
  else an error (``open PATH: no such file or directory``).
* ``reload DURATION``: how often the file is read again, default ``1m``; the zone is replaced
  when its SOA serial changed (``0``: never). ``reload_by_mtime``: when its modification time
  is newer instead. A file that fails to parse on a reload keeps the old zone (logged).
* ``fallthrough [ZONES...]``: a name in ZONES (default: every name of the zones) that does not
  exist (NXDOMAIN, or an empty non-terminal) goes to the next plugin.
* Any other property: ``unknown property 'X'``; ``upstream`` is accepted and ignored.

Answers, as CoreDNS's ``plugin/file/lookup.go`` makes them (AA set):

* An existing name and type: the records, the apex NS records in authority, and the A/AAAA
  records of in-zone MX, SRV, SVCB and HTTPS targets in additional. SOA and NS at the apex:
  the SOA with the NS in authority; the NS with their in-zone addresses.
* A name with other types only: NOERROR, no answer, the SOA in authority (NODATA); a name that
  does not exist: NXDOMAIN with the SOA; an empty non-terminal: NODATA.
* CNAME chains inside the zone are followed (up to 8 links); a target in the zone that does
  not exist gives its NXDOMAIN. A target outside the zone ends the answer (CoreDNS would look
  it up through its own chain; dnsfw leaves that to the client's resolver). A DNAME
  synthesises the CNAME for the name below it.
* Wildcards (``*.example.org``) answer names that do not exist below their parent, with the
  query name as owner, unless an empty non-terminal is closer (RFC 4592); as in CoreDNS, an
  empty non-terminal right below the wildcard's parent is answered from the wildcard too.
* Below a delegation (NS records on a name under the apex): a referral, AA clear, the NS
  records in authority and their in-bailiwick addresses (glue) in additional. A DS query at
  the cut is answered from the zone.
* AXFR and IXFR: REFUSED (dnsfw has no ``transfer`` plugin). Names outside the zones: the next
  plugin. A zone that is not loaded: SERVFAIL.
* No DNSSEC processing: RRSIG and NSEC records are answered when asked for by type only.

Replays: a zone is read into one object, swapped whole on a reload; answers are offered for
replay with that object as their guard (one identity check per replay), and a query passed to
the next plugin (``fallthrough``) records the same guard, so nothing stale is replayed once
the zone changes.

Examples::

    example.org {
        file db.example.org
    }

    . {
        file db.example.org example.org example.net {
            reload 30s
            fallthrough
        }
        forward . 8.8.8.8
    }
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone
import structlog

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.fall import NEVER, Fall, from_args
from proxy.names import ROOT, longest_zone, text_to_wire, wire_suffixes
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Guard
from proxy.request import Request, Response

log = structlog.get_logger("dnsfw.file")

DEFAULT_RELOAD = 60.0
MAX_CHASE = 8  # CNAME links followed (CoreDNS's loop limit)
SUCCESS, NAME_ERROR, DELEGATION, NO_DATA, SERVER_FAILURE = range(5)
T_CNAME, T_NS, T_SOA, T_DNAME = wire.TYPE_CNAME, wire.TYPE_NS, wire.TYPE_SOA, wire.TYPE_DNAME
T_DS, T_A, T_AAAA = 43, wire.TYPE_A, wire.TYPE_AAAA
T_AXFR, T_IXFR = 252, 251
ADDITIONAL_TARGETS = frozenset({wire.TYPE_MX, wire.TYPE_SRV, 64, 65})  # MX, SRV, SVCB, HTTPS


def setup(directive: Directive, ctx: SetupContext) -> File:
    args = directive.args
    if not args:
        raise directive.arg_error()
    path = os.path.join(os.path.dirname(os.path.abspath(ctx.app.conf_path)), args[0].text)
    settings = Settings()
    for line in directive.block or ():
        read_option(settings, line, ("fallthrough", "reload", "reload_by_mtime", "upstream"))
    zones = [Zone(origin, path, settings) for origin in ctx.zones_from(args[1:])]
    for zone in zones:
        try:
            zone.data = zone.read(-1)
        except FileNotFoundError as err:
            if settings.reload == 0:
                raise directive.error(f"open {path}: {_os_reason(err)}") from None
            ctx.app.warn(
                directive.file,
                directive.line,
                f'Failed to open "open {path}: {_os_reason(err)}": trying again in '
                f"{_go_duration(settings.reload)}",
            )
        except (OSError, ZoneError) as err:
            raise directive.error(str(err)) from None
    return File("file", zones, settings.fall)


class Settings:
    """The options of a ``file`` (or ``auto``) block."""

    __slots__ = ("reload", "by_mtime", "fall")

    def __init__(self) -> None:
        self.reload = DEFAULT_RELOAD
        self.by_mtime = False
        self.fall: Fall = NEVER


def read_option(settings: Settings, line: Directive, known: Sequence[str]) -> None:
    """One line of the block (CoreDNS's fileParse texts)."""
    word = line.name.text
    if word not in known:
        raise line.error(f"unknown property '{word}'")
    if word == "fallthrough":
        settings.fall = from_args(line.args)
    elif word == "reload":
        if not line.args:
            raise line.error("reload duration value is expected")
        settings.reload = _duration(line.args[0])
    elif word == "reload_by_mtime":
        settings.by_mtime = True


def _duration(token: Token) -> float:
    if token.text.lstrip("+") == "0":  # Go's ParseDuration takes a bare zero
        return 0.0
    try:
        return parse_duration(token)
    except CorefileError:
        raise CorefileError(
            token.file, token.line, f'time: invalid duration "{token.text}"'
        ) from None


def _go_duration(seconds: float) -> str:
    """Go's Duration.String for whole seconds (``1m0s``, ``30s``)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _os_reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


class ZoneError(Exception):
    """A zone file that cannot be used (CoreDNS's Parse errors)."""


# --- zone data -----------------------------------------------------------------------------


class RRSet:
    """One name's records of one type: TTL, rdata in wire form, and the names they point at
    (CNAME/DNAME/NS targets, MX exchanges...) as lower-case wire names."""

    __slots__ = ("rtype", "ttl", "rdatas", "targets")

    def __init__(self, rtype: int, ttl: int, rdatas: list[bytes], targets: list[bytes]) -> None:
        self.rtype = rtype
        self.ttl = ttl
        self.rdatas = rdatas
        self.targets = targets

    def render(self, owner: bytes) -> list[bytes]:
        return [wire.rr(owner, self.rtype, self.ttl, rdata) for rdata in self.rdatas]


Node = dict[int, RRSet]


class ZoneData(Guard):
    """One read of a zone file: the apex SOA and NS apart (as CoreDNS keeps them), every other
    name's records, and the names that have names below them (for empty non-terminals).
    Also the replay guard of its answers: True while it is its zone's current data."""

    __slots__ = ("zone", "serial", "mtime", "soa", "ns", "nodes", "parents")

    def __init__(self, zone: Zone, serial: int, mtime: int) -> None:
        self.zone = zone
        self.serial = serial
        self.mtime = mtime
        self.soa: list[bytes] = []
        self.ns: RRSet | None = None
        self.nodes: dict[bytes, Node] = {}
        self.parents: set[bytes] = set()

    def __call__(self) -> bool:
        return self.zone.data is self


def load(path: str, origin: str, zone: Zone) -> ZoneData:
    """Read ``path`` as the zone ``origin``; ZoneError or OSError when it cannot be used."""
    with open(path, encoding="utf-8") as f:
        mtime = os.fstat(f.fileno()).st_mtime_ns
        try:
            parsed = dns.zone.from_file(
                f,
                origin=origin,
                relativize=False,
                check_origin=False,
                allow_include=True,
                filename=path,
            )
        except (dns.exception.DNSException, ValueError) as err:  # UnicodeDecodeError too
            raise ZoneError(
                f'failed to parse file "{path}" for origin {origin} with error {err}'
            ) from None
    origin_name = dns.name.from_text(origin)
    soa = parsed.get_rdataset(origin_name, "SOA")
    if soa is None:
        raise ZoneError(f'file "{path}" has no SOA record for origin {origin}')
    data = ZoneData(zone, soa[0].serial, mtime)
    origin_wire = _wire(origin_name)
    for name, node in parsed.nodes.items():
        owner = _wire(name)
        for rdataset in node.rdatasets:
            rrset = _rrset(rdataset)
            if owner == origin_wire and rrset.rtype == T_SOA:
                data.soa = rrset.render(owner)[:1]
            elif owner == origin_wire and rrset.rtype == T_NS:
                data.ns = rrset
            else:
                data.nodes.setdefault(owner, {})[rrset.rtype] = rrset
                _add_parents(data, owner, origin_wire)
    return data


def _add_parents(data: ZoneData, owner: bytes, origin: bytes) -> None:
    """Every name between ``owner`` and the apex (the apex included) has a descendant."""
    for parent in wire_suffixes(owner)[1:]:
        if len(parent) < len(origin):
            break
        data.parents.add(parent)


def _wire(name: dns.name.Name) -> bytes:
    return name.canonicalize().to_wire()


def _rrset(rdataset) -> RRSet:
    targets = []
    for rdata in rdataset:
        target = getattr(rdata, "target", None) or getattr(rdata, "exchange", None)
        if isinstance(target, dns.name.Name):
            targets.append(_wire(target))
    return RRSet(int(rdataset.rdtype), rdataset.ttl, [rd.to_wire() for rd in rdataset], targets)


# --- lookup: CoreDNS's plugin/file/lookup.go ------------------------------------------------

Result = tuple[list[bytes], list[bytes], list[bytes], int]


class Lookup:
    """One query's walk through one zone's data."""

    __slots__ = ("data", "origin", "qtype")

    def __init__(self, data: ZoneData, origin: bytes, qtype: int) -> None:
        self.data = data
        self.origin = origin
        self.qtype = qtype

    def apex_ns(self) -> list[bytes]:
        ns = self.data.ns
        return ns.render(self.origin) if ns is not None else []

    def run(self, qname: bytes, depth: int = 0) -> Result:
        data, qtype, origin = self.data, self.qtype, self.origin
        if depth > MAX_CHASE:
            return [], [], [], SERVER_FAILURE
        if qname == origin:
            if qtype == T_SOA:
                return list(data.soa), self.apex_ns(), [], SUCCESS
            if qtype == T_NS and data.ns is not None:
                return self.apex_ns(), [], self.glue(data.ns, origin), SUCCESS
        found: Node | None = None
        wild_node: Node | None = None
        wild_name = b""
        # from the apex down to the query name (CoreDNS's nameFromRight)
        for parts in reversed(wire_suffixes(qname)[: _labels_below(qname, origin) + 1]):
            found = data.nodes.get(parts)
            if found is None:
                wildcard = b"\x01*" + parts[parts[0] + 1 :] if parts != ROOT else b""
                if wildcard in data.nodes:
                    wild_node, wild_name = data.nodes[wildcard], wildcard
                elif wildcard in data.parents:
                    wild_node, wild_name = None, wildcard
                continue
            dname = found.get(T_DNAME)
            if dname is not None and parts != qname:
                return self.dname(qname, parts, dname, depth)
            if parts != origin and T_NS in found and not (qtype == T_DS and parts == qname):
                return [], found[T_NS].render(parts), self.glue(found[T_NS], parts), DELEGATION
        if found is not None:
            return self.answer(qname, qname, found, depth)
        if wild_name and not self.closer_ent(qname, wild_name):
            if wild_node is None:
                return [], list(data.soa), [], NO_DATA
            return self.answer(qname, qname, wild_node, depth)
        rcode = SUCCESS if qname in data.parents else NAME_ERROR
        return [], list(data.soa), [], rcode

    def answer(self, qname: bytes, owner: bytes, node: Node, depth: int) -> Result:
        qtype = self.qtype
        cname = node.get(T_CNAME)
        if cname is not None and qtype != T_CNAME:
            return self.chase(cname.render(owner), cname, depth)
        rrset = node.get(qtype)
        if rrset is None:
            return [], list(self.data.soa), [], NO_DATA
        return rrset.render(owner), self.apex_ns(), self.additional([rrset]), SUCCESS

    def chase(self, answer: list[bytes], cname: RRSet, depth: int) -> Result:
        """Follow a CNAME (CoreDNS's externalLookup): inside the zone, as a lookup of the
        target; outside it, the chain ends here."""
        target = cname.targets[0]
        if _labels_below(target, self.origin) < 0:
            return answer, self.apex_ns(), [], SUCCESS
        more, authority, additional, result = self.run(target, depth + 1)
        if result == NO_DATA and target in self.data.nodes:
            return answer, self.apex_ns(), [], SUCCESS  # CoreDNS: the chain alone, no SOA
        return answer + more, authority, additional, result

    def dname(self, qname: bytes, owner: bytes, dname: RRSet, depth: int) -> Result:
        """A CNAME synthesised from the DNAME at ``owner`` (RFC 6672), then chased."""
        target = qname[: len(qname) - len(owner)] + dname.targets[0]
        if len(target) > 255 or target == qname:
            return [], [], [], SERVER_FAILURE
        synthesised = RRSet(T_CNAME, dname.ttl, [target], [target])
        answer = dname.render(owner)
        if self.qtype == T_CNAME:
            return answer + synthesised.render(qname), self.apex_ns(), [], SUCCESS
        more, authority, additional, result = self.chase(
            synthesised.render(qname), synthesised, depth
        )
        return answer + more, authority, additional, result

    def glue(self, ns: RRSet, owner: bytes) -> list[bytes]:
        """A and AAAA of the NS targets at or below ``owner``."""
        out: list[bytes] = []
        for target in ns.targets:
            if _labels_below(target, owner) >= 0:
                out.extend(self.addresses(target))
        return out

    def additional(self, rrsets: list[RRSet]) -> list[bytes]:
        """A and AAAA of the in-zone targets of MX, SRV, SVCB and HTTPS records, once each."""
        out: list[bytes] = []
        seen: set[bytes] = set()
        for rrset in rrsets:
            if rrset.rtype not in ADDITIONAL_TARGETS:
                continue
            for target in rrset.targets:
                if target not in seen and _labels_below(target, self.origin) >= 0:
                    seen.add(target)
                    out.extend(self.addresses(target))
        return out

    def addresses(self, name: bytes) -> list[bytes]:
        node = self.data.nodes.get(name)
        if node is None:
            return []
        return [rr for t in (T_A, T_AAAA) if t in node for rr in node[t].render(name)]

    def closer_ent(self, qname: bytes, wild_name: bytes) -> bool:
        """Whether an empty non-terminal between the wildcard's parent and ``qname`` is the
        closest encloser (the wildcard then does not apply, RFC 4592)."""
        parent = wild_name[2:]
        for name in wire_suffixes(qname)[1:]:
            if name == parent or len(name) <= len(parent):
                return False
            if name in self.data.parents:
                return True
        return False


def _labels_below(name: bytes, zone: bytes) -> int:
    """How many labels ``name`` has below ``zone`` (0: it is the zone), -1 if not in it."""
    if not name.endswith(zone):
        return -1
    count = 0
    off = 0
    end = len(name) - len(zone)
    while off < end:
        off += name[off] + 1
        count += 1
    return count if off == end else -1


# --- the stage -----------------------------------------------------------------------------


class Zone:
    """One zone served from one file: its current data (None until it could be read)."""

    def __init__(self, origin: str, path: str, settings: Settings) -> None:
        self.origin = origin
        self.origin_wire = text_to_wire(origin)
        self.path = path
        self.settings = settings
        self.data: ZoneData | None = None

    def read(self, serial: int) -> ZoneData | None:
        """The file's data, or None when its serial is still ``serial``."""
        data = load(self.path, self.origin, self)
        return None if data.serial == serial else data

    def reload(self) -> None:
        """CoreDNS's reload tick: read the file when its serial (or mtime) changed."""
        current = self.data
        try:
            if current is not None and self.settings.by_mtime:
                if os.stat(self.path).st_mtime_ns <= current.mtime:
                    return
                data = self.read(-1)
            else:
                data = self.read(current.serial if current is not None else -1)
        except (OSError, ZoneError) as err:
            log.error("zone_reload_failed", zone=self.origin, path=self.path, error=str(err))
            return
        if data is not None:
            self.data = data
            log.info("zone_reloaded", zone=self.origin, path=self.path, serial=data.serial)


class File(Plugin):
    """Serves zones (``file``, and ``auto`` with the zones a directory holds)."""

    replays = TAKES_PART  # answers guarded by their zone data (see the docstring)

    def __init__(self, name: str, zones: list[Zone], fall: Fall) -> None:
        self.name = name
        self.zones = {zone.origin_wire: zone for zone in zones}
        self.fall = fall
        self.tasks: list[asyncio.Task[None]] = []

    def zone_for(self, qname: bytes) -> Zone | None:
        found = longest_zone(qname, self.zones)
        return self.zones[found] if found is not None else None

    async def serve(self, req: Request, next: Handler) -> Response:
        qname = req.qname_wire
        zone = self.zone_for(qname)
        if zone is None:
            return await next(req)
        return await self.answer(req, zone, next)

    async def answer(self, req: Request, zone: Zone, next: Handler) -> Response:
        """The reply from ``zone`` (CoreDNS's ServeDNS once the zone is known)."""
        qname = req.qname_wire
        data = zone.data
        if data is None:
            req.no_replay()
            return req.reply(wire.SERVFAIL, flags=0, source=self.name)
        if req.qtype in (T_AXFR, T_IXFR):  # no transfer plugin: refused
            req.no_replay()
            return req.reply(wire.REFUSED, flags=0, source=self.name)
        answer, authority, additional, result = Lookup(data, zone.origin_wire, req.qtype).run(qname)
        if not answer and result in (NAME_ERROR, SUCCESS) and self.fall.through(qname):
            req.record(data)  # the name may exist after a reload
            return await next(req)
        if result == SERVER_FAILURE:
            req.no_replay()
            return req.reply(wire.SERVFAIL, flags=0, source=self.name)
        flags = 0 if result == DELEGATION and not answer else wire.AA
        return req.fixed_reply(
            wire.NXDOMAIN if result == NAME_ERROR else wire.NOERROR,
            data,
            flags=flags,
            answer=tuple(answer),
            authority=tuple(authority),
            additional=tuple(additional),
            source=self.name,
        )

    async def start(self) -> None:
        for zone in self.zones.values():
            if zone.settings.reload > 0:
                self.tasks.append(asyncio.ensure_future(self._watch(zone)))

    async def _watch(self, zone: Zone) -> None:
        while True:
            await asyncio.sleep(zone.settings.reload)
            zone.reload()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
