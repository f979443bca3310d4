"""A recursive-resolver look-alike on 127.0.0.1 for dnsfw's end-to-end tests.

`Upstream` answers DNS over UDP and TCP on one port number (ephemeral by default) from an
asyncio event loop in a daemon thread, so sync and async tests can both use it while the
dnsfw under test runs as a subprocess forwarding to `upstream.address`.

Zones are zone-file text made of `$ORIGIN` blocks: every `$ORIGIN <absolute name>` line
starts a new zone that ends at the next `$ORIGIN`; each zone needs an SOA at its apex.
`$TTL 300` applies unless a block sets its own `$TTL`. Only comments and blank lines may
precede the first `$ORIGIN`. Errors raise ValueError naming the line.

Answers are built like a recursive resolver would return them:

- the zone is the longest `$ORIGIN` that is a suffix of the name; none: REFUSED;
- an rrset of the query type at the name (or `*.<closest encloser>`, RFC 4592): NOERROR;
- a CNAME there (for a non-CNAME query) is added and its target resolved, across zones,
  up to 16 hops; a loop, a longer chain or a target in no zone ends in SERVFAIL with the
  CNAMEs collected so far; the final rcode is the target's (NXDOMAIN if it does not exist);
- a DNAME above the name adds the DNAME and a synthesised CNAME (TTL of the DNAME), then
  continues with the new name (YXDOMAIN if that name would be too long);
- the name exists without such data (also an empty non-terminal): NOERROR, no answer;
  the name does not exist: NXDOMAIN; both with the zone SOA in the authority section, its
  TTL capped at the SOA minimum (RFC 2308);
- qtype ANY returns every rrset at the name; a class other than IN: REFUSED;
- flags QR and RA set, RD copied, AA clear; opcode other than QUERY: NOTIMP;
- a query with OPT gets OPT back (payload 1232, DO copied; EDNS version > 0: BADVERS);
- over UDP a reply larger than the client's size (its EDNS payload, 512 without EDNS) is
  sent with TC=1 and empty answer/authority/additional sections;
- TCP: 2-byte length prefix, any number of queries per connection, each answered as soon
  as it is ready (a delayed one does not hold back the others); idle connections close
  after 30 s;
- a message whose header parses but the rest does not gets FORMERR; shorter input and
  responses (QR=1) are ignored. Handler errors are logged, never fatal to the thread.

`Faults` (mutable while running) turn it into a bad upstream (`broken`: replies with the
right id and question whose answer section does not parse, one of `BROKEN_REPLIES`);
`only_names` limits them to some query names. `seen` records every parsed query, before
faults apply; `unparsed` every message that did not parse (dnspython's exception name and
the bytes).

DEFAULT_ZONES serves the scenario data (docs/scenario.md), the bench CNAME chain
a.example -> b.tracker.example -> c.cdn.example (three zones), example.com with sizes and
TTLs for truncation and cache tests, a DNAME (dname.example -> example.com), CNAME loops
and a root zone, so unknown names get NXDOMAIN as from a real resolver; pass zones without
`.` to see REFUSED.

`python -m tests.kit.upstream --port 5301 [--host H] [--zones FILE]` runs it in the foreground
and prints the bound address.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import signal
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset
import dns.zone

log = logging.getLogger(__name__)

MAX_CHAIN = 16
OUR_PAYLOAD = 1232
NO_EDNS_UDP_SIZE = 512
TCP_IDLE_TIMEOUT = 30.0
_HEADER = struct.Struct("!HHHHHH")
_WRONG_NAMES = (
    dns.name.from_text("wrong-question.invalid."),
    dns.name.from_text("other-question.invalid."),
)


def _txt_set(owner: str, count: int) -> str:
    """`count` TXT records of 60 characters each, to push answers past a size limit."""
    filler = "abcdefghijklmnopqrstuvwxyz0123456789" * 2
    return "\n".join(
        f'{owner} TXT "{(f"{owner}-record-{i:02d}-" + filler)[:60]}"' for i in range(1, count + 1)
    )


_APEX = """\
@ SOA ns1 hostmaster 2024010101 7200 3600 1209600 60
@ NS ns1
@ NS ns2"""

DEFAULT_ZONES: str = f"""\
; Root: names under no other zone get NXDOMAIN, as from a real resolver.
$ORIGIN .
@ 86400 SOA a.root-servers.net. nstld.verisign-grs.com. 2024010101 1800 900 604800 60
@ 86400 NS a.root-servers.net.

; Bench chain a.example -> b.tracker.example -> c.cdn.example, across three zones.
$ORIGIN example.
{_APEX}
a CNAME b.tracker.example.
ads A 192.0.2.81
dname DNAME example.com.

$ORIGIN tracker.example.
{_APEX}
b CNAME c.cdn.example.

$ORIGIN cdn.example.
{_APEX}
c A 198.51.100.7
c AAAA 2001:db8::7

$ORIGIN example.com.
{_APEX}
@ A 93.184.216.34
@ AAAA 2606:2800:220:1:248:1893:25c8:1946
@ MX 10 mail.example.com.
@ TXT "v=spf1 -all"
www CNAME example.com.
mail A 192.0.2.25
ns1 A 192.0.2.53
ns2 A 192.0.2.54
rr A 192.0.2.10
rr A 192.0.2.11
rr A 192.0.2.12
short-ttl 2 A 192.0.2.2
long-ttl 86400 A 192.0.2.3
*.w A 192.0.2.77
x.ent A 192.0.2.88
dangling CNAME gone.example.com.
loop1 CNAME loop2.example.com.
loop2 CNAME loop1.example.com.
chain1 CNAME chain2.example.com.
chain2 CNAME chain3.example.com.
chain3 CNAME www.example.com.
{_txt_set("medium", 12)}
{_txt_set("big", 40)}

; Scenario 1 (docs/scenario.md): Gmail allowed, Yahoo! JAPAN blocked.
$ORIGIN gmail.com.
{_APEX}
@ A 142.250.196.101
@ MX 5 gmail-smtp-in.l.google.com.
@ MX 10 alt1.gmail-smtp-in.l.google.com.
@ MX 20 alt2.gmail-smtp-in.l.google.com.
@ MX 30 alt3.gmail-smtp-in.l.google.com.
@ MX 40 alt4.gmail-smtp-in.l.google.com.

$ORIGIN google.com.
{_APEX}
@ A 142.250.196.110
www CNAME www3.l.google.com.
www3.l A 142.250.207.4
gmail-smtp-in.l A 142.250.157.26
alt1.gmail-smtp-in.l A 142.250.141.26
alt2.gmail-smtp-in.l A 64.233.171.26
alt3.gmail-smtp-in.l A 142.250.152.26
alt4.gmail-smtp-in.l A 74.125.126.26
; A chain leaving the allowed domain.
cdn-redirect CNAME edge.akamaiedge.net.

$ORIGIN akamaiedge.net.
{_APEX}
edge A 203.0.113.9

$ORIGIN yahoo.co.jp.
{_APEX}
@ A 183.79.219.252
@ MX 10 mx1.mail.yahoo.co.jp.
@ MX 10 mx2.mail.yahoo.co.jp.
@ MX 10 mx3.mail.yahoo.co.jp.
@ MX 10 mx5.mail.yahoo.co.jp.
mx1.mail A 183.79.57.116
mx2.mail A 183.79.57.117
mx3.mail A 182.22.12.116
mx5.mail A 182.22.12.117
ads A 183.79.250.123
beacon A 183.79.250.124

$ORIGIN pool.ntp.org.
{_APEX}
0.amazon A 169.254.169.123
1.amazon A 52.68.54.233
2.amazon A 13.230.178.110

$ORIGIN amazonaws.com.
{_APEX}
ssm.ap-northeast-1 A 52.119.221.50
ssm.ap-northeast-1 AAAA 2406:da14:7ff:f800::50
ssmmessages.ap-northeast-1 A 52.119.221.60
ec2messages.ap-northeast-1 A 52.119.221.70
logs.ap-northeast-1 A 52.119.221.80
amazonlinux-2-repos-ap-northeast-1.s3.dualstack.ap-northeast-1 CNAME s3-r-w.dualstack.ap-northeast-1.amazonaws.com.
s3-r-w.dualstack.ap-northeast-1 A 52.219.16.50
s3-r-w.dualstack.ap-northeast-1 AAAA 2406:da14:fff:f800::50
; AWS-published test names of the managed domain lists (scenario 2).
controldomain1.aggregatelist.firewall.route53resolver.us-east-1 A 1.2.3.4
controldomain1.malwarelist.firewall.route53resolver.us-east-1 A 1.2.3.4
controldomain1.botnetlist.firewall.route53resolver.us-east-1 A 1.2.3.4
controldomain1.threatintelligencelist.firewall.route53resolver.us-east-1 A 1.2.3.4

$ORIGIN fedoraproject.org.
{_APEX}
mirrors CNAME wildcard.fedoraproject.org.
wildcard A 38.145.60.21
wildcard AAAA 2600:2701:4000:5211:dead:beef:fe:fed3

$ORIGIN ap-northeast-1.compute.internal.
{_APEX}
ip-10-0-0-150 A 10.0.0.150
instance-data A 169.254.169.254
"""


@dataclass
class Faults:
    """Misbehaviour switches, read per query: tests flip them while the server runs."""

    delay: float = 0.0  # seconds before answering (other queries are not held back)
    drop: bool = False  # never answer
    servfail: bool = False  # answer SERVFAIL, empty sections
    truncate: bool = False  # over UDP: TC=1 and empty sections (forces a TCP retry)
    garbage: bool = False  # query id, then bytes that never parse as a DNS message
    wrong_id: bool = False  # answer with query id + 1
    wrong_question: bool = False  # answer with another question name
    broken: str = ""  # one of BROKEN_REPLIES: the right id and question, an unparseable answer
    only_names: frozenset[str] | None = None  # faults apply only to these lower-case FQDNs


@dataclass(frozen=True)
class Seen:
    """One query as received."""

    name: str  # lower-case FQDN with the trailing dot
    qtype: str  # "A", "MX", ...
    transport: str  # "udp" or "tcp"
    id: int
    client: tuple[str, int]


# ---------------------------------------------------------------------------- zone data


@dataclass(frozen=True)
class _Zone:
    origin: dns.name.Name
    soa: dns.rrset.RRset  # TTL capped at the SOA minimum: the negative-answer TTL
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]]
    existing: frozenset[dns.name.Name]  # owner names plus empty non-terminals


_ORIGIN_LINE = re.compile(r"^\$ORIGIN\s+(\S+)\s*(;.*)?$", re.IGNORECASE)
_DNSPYTHON_WHERE = re.compile(r"^<string>:(\d+): ")


def _parse_zones(text: str) -> dict[dns.name.Name, _Zone]:
    zones: dict[dns.name.Name, _Zone] = {}
    for line_no, origin, lines in _origin_blocks(text):
        if origin in zones:
            raise ValueError(f"zones line {line_no}: zone {origin} defined twice")
        zones[origin] = _load_zone(line_no, origin, lines)
    if not zones:
        raise ValueError("zones: no $ORIGIN block")
    return zones


def _origin_blocks(text: str) -> list[tuple[int, dns.name.Name, list[str]]]:
    """(line number of the $ORIGIN, origin, the lines after it) per block."""
    blocks: list[tuple[int, dns.name.Name, list[str]]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        match = _ORIGIN_LINE.match(line.strip())
        if match:
            if not match.group(1).endswith("."):
                raise ValueError(f"zones line {line_no}: $ORIGIN must be absolute (end in '.')")
            try:
                origin = dns.name.from_text(match.group(1))
            except dns.exception.DNSException as exc:
                raise ValueError(f"zones line {line_no}: bad $ORIGIN: {exc}") from exc
            blocks.append((line_no, origin, []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip() and not line.lstrip().startswith(";"):
            raise ValueError(f"zones line {line_no}: data before the first $ORIGIN")
    return blocks


def _zone_from_lines(origin: dns.name.Name, lines: list[str]) -> dns.zone.Zone:
    text = "$TTL 300\n" + "\n".join(lines) + "\n"  # a block's own $TTL comes later and wins
    return dns.zone.from_text(text, origin, relativize=False, check_origin=False)


def _locate_error(
    origin: dns.name.Name, line_no: int, lines: list[str], exc: dns.exception.DNSException
) -> str:
    """'line N: message'. dnspython's own line number is one too high when it had already
    read the end of the line, so find the first line that fails on its own."""
    for offset, line in enumerate(lines, start=1):
        if "(" in line or ")" in line:
            continue  # part of a multi-line record: only parses whole
        try:
            _zone_from_lines(origin, [line])
        except dns.exception.DNSException as line_exc:
            return f"line {line_no + offset}: {_DNSPYTHON_WHERE.sub('', str(line_exc))}"
    where = _DNSPYTHON_WHERE.match(str(exc))
    near = f"near line {line_no + int(where.group(1)) - 1}" if where else f"line {line_no}"
    return f"{near}: {_DNSPYTHON_WHERE.sub('', str(exc))}"


def _load_zone(line_no: int, origin: dns.name.Name, lines: list[str]) -> _Zone:
    try:
        zone = _zone_from_lines(origin, lines)
    except dns.exception.DNSException as exc:
        where = _locate_error(origin, line_no, lines, exc)
        raise ValueError(f"zones {where} (zone {origin})") from exc
    soa_set = zone.get_rdataset(origin, dns.rdatatype.SOA)
    if soa_set is None:
        raise ValueError(f"zones line {line_no}: zone {origin} has no SOA at its apex")
    soa = dns.rrset.from_rdata_list(origin, min(soa_set.ttl, soa_set[0].minimum), list(soa_set))
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
    existing: set[dns.name.Name] = set()
    for name, node in zone.nodes.items():
        nodes[name] = {rds.rdtype: _rrset(name, rds) for rds in node.rdatasets}
        ancestor = name
        while ancestor not in existing:  # ancestors up to the origin exist (empty non-terminals)
            existing.add(ancestor)
            if ancestor == origin:
                break
            ancestor = ancestor.parent()
    return _Zone(origin, soa, nodes, frozenset(existing))


def _rrset(owner: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset))


# ---------------------------------------------------------------------------- resolution


@dataclass
class _Answer:
    rcode: int
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)


def _find_zone(zones: dict[dns.name.Name, _Zone], name: dns.name.Name) -> _Zone | None:
    while True:
        zone = zones.get(name)
        if zone is not None or name == dns.name.root:
            return zone
        name = name.parent()


def _covering_dname(zone: _Zone, name: dns.name.Name) -> dns.rrset.RRset | None:
    """A DNAME at a strict ancestor of `name` inside the zone (the owner's own data is normal)."""
    while name != zone.origin:
        name = name.parent()
        rrset = zone.nodes.get(name, {}).get(dns.rdatatype.DNAME)
        if rrset is not None:
            return rrset
    return None


def _lookup(zone: _Zone, name: dns.name.Name) -> dict[int, dns.rrset.RRset] | None:
    """The rrsets at `name`, wildcard-expanded; {} for a name without data; None: NXDOMAIN."""
    rrsets = zone.nodes.get(name)
    if rrsets is not None:
        return rrsets
    if name in zone.existing:
        return {}
    encloser = name.parent()
    while encloser not in zone.existing:
        encloser = encloser.parent()
    wild = zone.nodes.get(dns.name.Name((b"*", *encloser.labels)))
    if wild is None:
        return None
    return {rdtype: _rrset(name, rrset) for rdtype, rrset in wild.items()}


def _resolve(zones: dict[dns.name.Name, _Zone], qname: dns.name.Name, qtype: int) -> _Answer:
    result = _Answer(dns.rcode.NOERROR)
    name, visited = qname, {qname}
    for _ in range(MAX_CHAIN + 1):
        zone = _find_zone(zones, name)
        if zone is None:
            result.rcode = dns.rcode.SERVFAIL if result.answer else dns.rcode.REFUSED
            return result
        target = _follow_dname(zone, name, result)
        if target is None:
            rrsets = _lookup(zone, name)
            if rrsets is None:
                result.rcode = dns.rcode.NXDOMAIN
                result.authority.append(zone.soa)
                return result
            if qtype == dns.rdatatype.ANY and rrsets:
                result.answer.extend(rrsets.values())
                return result
            if qtype in rrsets:
                result.answer.append(rrsets[qtype])
                return result
            cname = rrsets.get(dns.rdatatype.CNAME)
            if cname is None:
                result.authority.append(zone.soa)  # NODATA
                return result
            result.answer.append(cname)
            target = cname[0].target
        if result.rcode != dns.rcode.NOERROR:  # DNAME synthesis overflowed
            return result
        if target in visited:
            break
        visited.add(target)
        name = target
    result.rcode = dns.rcode.SERVFAIL  # loop, or a chain longer than MAX_CHAIN
    return result


def _follow_dname(zone: _Zone, name: dns.name.Name, result: _Answer) -> dns.name.Name | None:
    """Apply a covering DNAME: record DNAME + synthesised CNAME, return the new name."""
    dname = _covering_dname(zone, name)
    if dname is None:
        return None
    result.answer.append(dname)
    try:
        target = name.relativize(dname.name).derelativize(dname[0].target)
    except dns.name.NameTooLong:
        result.rcode = dns.rcode.YXDOMAIN
        return name
    rdata = dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, target)
    result.answer.append(dns.rrset.from_rdata(name, dname.ttl, rdata))
    return target


def _build_response(
    zones: dict[dns.name.Name, _Zone], query: dns.message.Message
) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True, our_payload=OUR_PAYLOAD)
    if query.ednsflags & dns.flags.DO:
        response.want_dnssec(True)
    if query.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
    elif query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    elif query.question[0].rdclass != dns.rdataclass.IN:
        response.set_rcode(dns.rcode.REFUSED)
    else:
        question = query.question[0]
        result = _resolve(zones, question.name, question.rdtype)
        response.set_rcode(result.rcode)
        response.answer = result.answer
        response.authority = result.authority
    return response


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a message whose header parses; None for anything shorter or a response."""
    if len(wire) < _HEADER.size:
        return None
    query_id, flags = struct.unpack_from("!HH", wire)
    if flags & dns.flags.QR:
        return None
    flags = dns.flags.QR | (flags & 0x7800) | (flags & dns.flags.RD) | dns.flags.RA
    return _HEADER.pack(query_id, flags | dns.rcode.FORMERR, 0, 0, 0, 0)


# replies with the query's id and question whose answer section does not parse
BROKEN_REPLIES = (
    "owner_loop",  # the answer's owner name is a compression pointer to itself
    "target_loop",  # a CNAME whose target is a compression pointer to itself
    "rdlength",  # an A record whose RDLENGTH runs past the end of the message
    "ancount",  # ANCOUNT 2, one record
    "label_type",  # an owner name with the reserved 0x40 label type
)


def _broken(query: dns.message.Message, kind: str) -> bytes:
    question = query.question[0]
    qsection = question.name.to_wire() + struct.pack("!HH", question.rdtype, question.rdclass)
    qend = _HEADER.size + len(qsection)
    a_fixed = struct.pack("!HHIH", dns.rdatatype.A, dns.rdataclass.IN, 300, 4)
    records = {
        "owner_loop": struct.pack("!H", 0xC000 | qend) + a_fixed + b"\xc0\x00\x02\x01",
        "target_loop": b"\xc0\x0c"
        + struct.pack("!HHIH", dns.rdatatype.CNAME, dns.rdataclass.IN, 300, 2)
        + struct.pack("!H", 0xC000 | (qend + 12)),
        "rdlength": b"\xc0\x0c" + a_fixed[:-2] + struct.pack("!H", 200) + b"\xc0\x00\x02\x01",
        "ancount": b"\xc0\x0c" + a_fixed + b"\xc0\x00\x02\x01",
        "label_type": b"\x41abc\x00" + a_fixed + b"\xc0\x00\x02\x01",
    }
    flags = dns.flags.QR | dns.flags.RA | (query.flags & dns.flags.RD)
    header = _HEADER.pack(query.id, flags, 1, 2 if kind == "ancount" else 1, 0, 0)
    return header + qsection + records[kind]


def _garbage(query_id: int) -> bytes:
    # The id matches so a client's id check passes and its parser must cope: QDCOUNT 65535
    # with at most 32 random bytes after the header can never parse.
    header = _HEADER.pack(query_id, 0x8180, 0xFFFF, 0, 0, 0)
    return header + os.urandom(1 + os.urandom(1)[0] % 32)


# ---------------------------------------------------------------------------- server


def _faults_apply(faults: Faults, qname: str) -> bool:
    names = faults.only_names
    return names is None or qname in names or qname.rstrip(".") in names  # dot optional


def _qname(query: dns.message.Message) -> str:
    return query.question[0].name.to_text().lower() if query.question else ""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        transport = self._transport

        def send(reply: bytes) -> None:
            if transport is not None and not transport.is_closing():
                transport.sendto(reply, addr)

        self._upstream._dispatch(data, "udp", (addr[0], addr[1]), send)

    def error_received(self, exc: Exception) -> None:
        log.debug("upstream fixture: UDP error %s", exc)  # e.g. ICMP unreachable: harmless


class Upstream:
    """The upstream resolver fixture; see the module docstring."""

    def __init__(
        self, zones: str = DEFAULT_ZONES, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._zones = _parse_zones(zones)
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.unparsed: list[tuple[str, bytes]] = []  # (dnspython's exception, the message)
        self._record_seen = True
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def set_zones(self, zones: str) -> None:
        self._zones = _parse_zones(zones)  # parsed first: a bad text leaves the old data

    def start(self) -> Upstream:
        if self._thread is not None:
            raise RuntimeError("upstream fixture already started")
        udp, tcp = _bind_pair(self.host, self.port)
        self.port = udp.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(udp, tcp, ready), name=f"upstream-{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("upstream fixture failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- event-loop thread

    def _run(self, udp: socket.socket, tcp: socket.socket, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(udp, tcp, ready))
        finally:
            self._loop.close()

    async def _serve(self, udp: socket.socket, tcp: socket.socket, ready: threading.Event) -> None:
        assert self._loop is not None and self._stopping is not None
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=udp
            )
            server = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException as exc:
            udp.close()
            tcp.close()
            self._startup_error = exc
            ready.set()
            return
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            transport.close()
            server.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    def _track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or ("?", 0)

        def send(reply: bytes) -> None:
            if not writer.is_closing():
                writer.write(struct.pack("!H", len(reply)) + reply)

        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                wire = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", prefix)[0]), TCP_IDLE_TIMEOUT
                )
                self._dispatch(wire, "tcp", (peer[0], peer[1]), send)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # client closed, went idle, or reset: all normal ends of a connection
        finally:
            self._writers.discard(writer)
            writer.close()

    def _dispatch(
        self, wire: bytes, transport: str, client: tuple[str, int], send: Callable[[bytes], None]
    ) -> None:
        try:
            query = self._admit(wire, transport, client, send)
            if query is None:
                return
            faults = self.faults
            delay = faults.delay if _faults_apply(faults, _qname(query)) else 0.0
            if delay > 0:
                assert self._loop is not None
                self._track(self._loop.create_task(self._later(delay, query, transport, send)))
            else:
                self._answer(query, transport, send)
        except Exception:
            log.exception("upstream fixture: failed on a %s message from %s", transport, client)

    def _admit(
        self, wire: bytes, transport: str, client: tuple[str, int], send: Callable[[bytes], None]
    ) -> dns.message.Message | None:
        """Parse and record a query; answer FORMERR (or nothing) for what does not parse."""
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:  # dnspython raises more than DNSException on hostile input
            if self._record_seen:
                self.unparsed.append((type(exc).__name__, wire))
            reply = _formerr(wire)
            if reply is not None:
                send(reply)
            return None
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: answering could start a loop
        if self._record_seen:
            qtype = dns.rdatatype.to_text(query.question[0].rdtype) if query.question else ""
            self.seen.append(Seen(_qname(query), qtype, transport, query.id, client))
        return query

    async def _later(
        self,
        delay: float,
        query: dns.message.Message,
        transport: str,
        send: Callable[[bytes], None],
    ) -> None:
        await asyncio.sleep(delay)
        try:
            self._answer(query, transport, send)
        except Exception:
            log.exception("upstream fixture: failed on a delayed %s query", transport)

    def _answer(
        self, query: dns.message.Message, transport: str, send: Callable[[bytes], None]
    ) -> None:
        faults = self.faults
        active = _faults_apply(faults, _qname(query))
        if active and faults.drop:
            return
        if active and faults.garbage:
            send(_garbage(query.id))
            return
        if active and faults.broken and query.question:
            send(_broken(query, faults.broken))
            return
        if active and faults.servfail:
            response = dns.message.make_response(
                query, recursion_available=True, our_payload=OUR_PAYLOAD
            )
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            response = _build_response(self._zones, query)
        if active and faults.wrong_question and response.question:
            question = response.question[0]
            other = _WRONG_NAMES[question.name == _WRONG_NAMES[0]]
            response.question = [dns.rrset.RRset(other, question.rdclass, question.rdtype)]
        if active and faults.wrong_id:
            response.id = (query.id + 1) & 0xFFFF
        send(_render(response, query, transport, truncate=active and faults.truncate))


def _render(
    response: dns.message.Message, query: dns.message.Message, transport: str, *, truncate: bool
) -> bytes:
    try:
        # An explicit max_size: the default is the client's payload, which would raise here.
        wire = response.to_wire(max_size=65535)
    except dns.exception.TooBig:  # more than 64 KiB of data: a resolver would fail too
        response.answer, response.authority, response.additional = [], [], []
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    if transport != "udp":
        return wire
    limit = max(NO_EDNS_UDP_SIZE, query.payload) if query.edns >= 0 else NO_EDNS_UDP_SIZE
    if truncate or len(wire) > limit:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        wire = response.to_wire()
    return wire


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port (ephemeral when `port` is 0)."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    retries = 0 if port else 20  # an ephemeral UDP port may be taken for TCP: try another
    while True:
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(128)
        except OSError:
            udp.close()
            tcp.close()
            if retries == 0:
                raise
            retries -= 1
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kit.upstream", description="Run the test upstream resolver."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="UDP and TCP port (default: ephemeral)")
    parser.add_argument("--zones", help="zone-file text of $ORIGIN blocks (default: DEFAULT_ZONES)")
    args = parser.parse_args(argv)
    zones = DEFAULT_ZONES
    if args.zones:
        with open(args.zones, encoding="utf-8") as handle:
            zones = handle.read()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    upstream = Upstream(zones, host=args.host, port=args.port)
    # Nobody reads `seen` here, and a long benchmark run would grow it without bound.
    upstream._record_seen = False
    with upstream:
        print(f"upstream listening on {upstream.address} (udp+tcp)", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
