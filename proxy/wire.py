"""Fast DNS wire-format helpers for the hot path.

Nothing here uses dnspython: a query is read as far as its question and OPT record, a
reply is walked once to find what later stages need (TTL offsets, CNAME/DNAME targets,
the negative-caching TTL), and small replies are built from pre-rendered bytes.
Names handled here are *wire* names (length-prefixed labels), lower-cased with
``bytes.lower()``, which only folds ASCII: exactly DNS's case-insensitivity. Names as text,
and zones, are ``proxy.names``.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype

HEADER_LEN = 12

# header flag bits (second 16-bit word)
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# rcodes
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16  # extended: needs OPT

# types and classes
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_DNAME = 39
TYPE_OPT = 41
TYPE_TSIG = 250
CLASS_IN = 1

DO_BIT = 0x8000  # in the OPT record's TTL field, low 16 bits
EDE_OPTION = 15  # RFC 8914 Extended DNS Error

_U16 = struct.Struct("!H")
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


class WireError(ValueError):
    """The bytes are not a well-formed DNS message (as far as we read them)."""


def skip_name(data: bytes, off: int) -> int:
    """Return the offset just past the (possibly compressed) name at ``off``."""
    while True:
        ln = data[off]
        if ln == 0:
            return off + 1
        if ln >= 0xC0:
            if off + 1 >= len(data):
                raise WireError("truncated compression pointer")
            return off + 2
        if ln > 63:
            raise WireError("bad label length")
        off += ln + 1


def read_name(data: bytes, off: int) -> tuple[bytes, int]:
    """Read the name at ``off``, following compression; return (lower-case wire name, end offset)."""
    out = bytearray()
    end = -1
    jumps = 0
    n = len(data)
    while True:
        if off >= n:
            raise WireError("name runs past the message")
        ln = data[off]
        if ln == 0:
            out.append(0)
            if end < 0:
                end = off + 1
            break
        if ln >= 0xC0:
            if off + 1 >= n:
                raise WireError("truncated compression pointer")
            if end < 0:
                end = off + 2
            jumps += 1
            if jumps > 64:
                raise WireError("compression loop")
            off = ((ln & 0x3F) << 8) | data[off + 1]
            continue
        if ln > 63:
            raise WireError("bad label length")
        out += data[off : off + ln + 1]
        off += ln + 1
        if len(out) > 255:
            raise WireError("name longer than 255 bytes")
    return bytes(out).lower(), end


MAX_POINTERS = 16  # compression pointers followed in one name (dnspython's limit)

# what the walk checks inside the rdata of the common class IN types: (bytes before the names,
# names, bytes after them), which must fill the rdata exactly (miekg/dns and dnspython reject
# any other length); other types are opaque bytes within their RDLENGTH
_RDATA: dict[int, tuple[int, int, int]] = {
    TYPE_A: (4, 0, 0),
    TYPE_AAAA: (16, 0, 0),
    TYPE_NS: (0, 1, 0),
    TYPE_CNAME: (0, 1, 0),
    TYPE_PTR: (0, 1, 0),
    TYPE_DNAME: (0, 1, 0),
    TYPE_MX: (2, 1, 0),
    TYPE_SOA: (0, 2, 20),
    TYPE_SRV: (6, 1, 0),
}


def name_end(data: bytes, off: int, end: int, question: int = 0) -> int:
    """Check the (possibly compressed) name at ``off``, which must lie before ``end``; return
    the offset just past it. Raises WireError, and only that, whatever the bytes.

    Names are read as dnspython and BIND read them: labels of at most 63 bytes (the 0x40 and
    0x80 label types are refused); a compression pointer points before the part of the name
    it is read from, which the part it points to must not reach (so pointers only go back
    and a loop cannot be walked: RFC 1035's "prior occurrence"); at most ``MAX_POINTERS``
    of them; at most 255 bytes once expanded. ``question``: the length of the question's
    name at offset 12 when the caller has checked it (most names end with a pointer to it,
    which then needs no walk).
    """
    after = -1  # where the name ends in place: past its first pointer
    start = off  # where the part being read starts
    size = 1  # the root label
    pointers = 0
    while True:
        if off >= end:
            raise WireError("name runs past its end")
        length = data[off]
        if length < 64:
            if not length:
                return off + 1 if after < 0 else after
            size += length + 1
            if size > 255:
                raise WireError("name longer than 255 bytes")
            off += length + 1
        elif length >= 0xC0:
            if off + 1 >= end:
                raise WireError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[off + 1]
            if after < 0:
                after = off + 2
            if target == HEADER_LEN and question:
                if size + question - 1 > 255:
                    raise WireError("name longer than 255 bytes")
                return after
            if target >= start:
                raise WireError("compression pointer does not point back")
            pointers += 1
            if pointers > MAX_POINTERS:
                raise WireError("too many compression pointers")
            end = start
            start = off = target
        else:
            raise WireError("bad label type")


def check_records(data: bytes, off: int, an: int, ns: int, ar: int) -> tuple[int, int]:
    """Walk the ``an + ns + ar`` records from ``off`` as a parser would; return (the offset
    past the last record, the offset of the OPT record or -1). ``off`` is just past the
    message's one question, whose name the caller has checked (it is uncompressed).

    Raises WireError, and only that, for a message that does not parse as its counts say:
    a name :func:`name_end` refuses, a record cut short or whose RDLENGTH runs past the end,
    rdata of a common IN type (:data:`_RDATA`) that is not what the type holds, EDNS options
    that do not fill the OPT rdata, an OPT record outside the additional section, not owned
    by the root or not the only one (RFC 6891), a TSIG record that is not the last one (RFC
    8945). Bytes after the last record are the caller's to judge (miekg/dns ignores them).
    Allocation-free: nothing is built, only offsets are followed.
    """
    size = len(data)
    question = off - 4 - HEADER_LEN
    opt = -1
    answers = an + ns
    count = answers + ar
    for i in range(count):
        if off >= size:
            raise WireError(f"{count} records counted, {i} found")
        start = off
        off = name_end(data, off, size, question)
        if off + 10 > size:
            raise WireError("record truncated")
        rtype, rclass, _, rdlen = _RR_FIXED.unpack_from(data, off)
        off += 10
        rdend = off + rdlen
        if rdend > size:
            raise WireError("RDLENGTH runs past the message")
        layout = _RDATA.get(rtype) if rclass == CLASS_IN else None
        if layout is not None:
            before, names, after = layout
            off += before
            if names:
                off = name_end(data, off, rdend, question)
                if names == 2:
                    off = name_end(data, off, rdend, question)
                off += after
            if off != rdend:
                raise WireError(f"bad rdata for type {rtype}")
        elif rtype == TYPE_OPT:
            if i < answers or opt >= 0 or data[start] != 0:
                raise WireError("misplaced OPT record")
            opt = start
            while off < rdend:
                if off + 4 > rdend:
                    raise WireError("EDNS option truncated")
                off += 4 + ((data[off + 2] << 8) | data[off + 3])
            if off != rdend:
                raise WireError("EDNS option runs past the OPT record")
        elif rtype == TYPE_TSIG and i != count - 1:
            raise WireError("TSIG record not last")
        off = rdend
    return off, opt


def opt_record(udp_size: int = 1232, do: bool = False, options: bytes = b"") -> bytes:
    """A root-owned OPT record (EDNS0, version 0)."""
    return (
        b"\x00"
        + struct.pack("!HHIH", TYPE_OPT, udp_size, DO_BIT if do else 0, len(options))
        + options
    )


def ede_option(code: int, text: str = "") -> bytes:
    """An RFC 8914 Extended DNS Error EDNS option."""
    body = _U16.pack(code) + text.encode("utf-8")
    return _U16.pack(EDE_OPTION) + _U16.pack(len(body)) + body


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = CLASS_IN) -> bytes:
    """A rendered resource record; ``owner`` is wire bytes (``b"\\xc0\\x0c"`` points at the qname)."""
    return owner + _RR_FIXED.pack(rtype, rclass, ttl, len(rdata)) + rdata


QNAME_PTR = b"\xc0\x0c"  # compression pointer to the question name


def build_reply(
    query: bytes,
    qend: int,
    rcode: int,
    *,
    flags: int = 0,
    answer: tuple[bytes, ...] = (),
    authority: tuple[bytes, ...] = (),
    additional: tuple[bytes, ...] = (),
    opt: bytes | None = None,
) -> bytes:
    """A reply to ``query`` echoing its id, opcode, RD and CD bits and its question (client's case).

    ``answer``/``authority``/``additional`` are rendered records (see :func:`rr`); ``opt`` an OPT record to
    append (pass one when the query had EDNS). ``rcode`` above 15 needs ``opt``: its upper bits
    go into the OPT TTL field.
    """
    qflags = (query[2] << 8) | query[3]
    out_flags = QR | (qflags & (OPCODE_MASK | RD | CD)) | flags | (rcode & 0xF)
    ar = len(additional)
    tail = b""
    if opt is not None:
        if rcode > 15:
            # extended rcode: upper 8 bits in the first byte of the OPT TTL field
            opt = opt[:5] + bytes([rcode >> 4]) + opt[6:]
        tail = opt
        ar += 1
    header = query[:2] + _HEADER.pack(out_flags, 1, len(answer), len(authority), ar, 0)[:10]
    return b"".join((header, query[HEADER_LEN:qend], *answer, *authority, *additional, tail))


def answer_chain(data: bytes) -> tuple[bytes, ...]:
    """The CNAME/DNAME targets in a reply's answer section (lower-case wire names, in order).

    Reads only the question and the answer section: what the firewall needs from an answer
    that no cache has analysed (:class:`AnswerInfo` walks every section). Raises WireError.
    """
    if len(data) < HEADER_LEN:
        raise WireError("reply shorter than a header")
    an = (data[6] << 8) | data[7]
    if not an:
        return ()
    off = HEADER_LEN
    for _ in range((data[4] << 8) | data[5]):
        off = skip_name(data, off) + 4
    chain: list[bytes] = []
    for _ in range(an):
        off = skip_name(data, off)
        if off + 10 > len(data):
            raise WireError("record truncated")
        rtype = (data[off] << 8) | data[off + 1]
        if rtype in (TYPE_CNAME, TYPE_DNAME):
            chain.append(read_name(data, off + 10)[0])
        off += 10 + ((data[off + 8] << 8) | data[off + 9])
        if off > len(data):
            raise WireError("rdata truncated")
    return tuple(chain)


class AnswerInfo:
    """What later stages need from one reply, computed once when it arrives from upstream.

    The cache keeps it with the entry, so a hit re-parses nothing: ``ttl_offsets`` age TTLs in
    place, ``chain`` (lower-case wire names of CNAME/DNAME targets in the answer, in order) feeds
    the firewall's redirection inspection, ``opt`` is the offset of the OPT record (-1: none;
    the cache stores the records before it), and ``summary()`` (for query logs) is built lazily
    once and then shared. ``derived`` holds what a stage renders from it once (e.g. the Route 53
    query log's text from the query name to the answers), keyed by the stage's name, for as
    long as the answer lives.
    """

    __slots__ = (
        "rcode",
        "flags",
        "ancount",
        "ttl_offsets",
        "min_ttl",
        "neg_ttl",
        "chain",
        "qend",
        "opt",
        "_wire",
        "_summary",
        "derived",
    )

    def __init__(self, wire: bytes) -> None:
        if len(wire) < HEADER_LEN:
            raise WireError("reply shorter than a header")
        _, flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
        self.flags = flags
        self.rcode = flags & 0xF
        self.ancount = an
        self._wire = wire
        self._summary: tuple[tuple[str, str, str], ...] | None = None
        self.derived: dict[str, object] | None = None
        off = HEADER_LEN
        for _ in range(qd):
            off = skip_name(wire, off) + 4
        self.qend = off
        offsets: list[int] = []
        chain: list[bytes] = []
        min_ttl = 0xFFFFFFFF
        neg_ttl = -1
        opt = -1
        for i in range(an + ns + ar):
            start = off
            off = skip_name(wire, off)
            if off + 10 > len(wire):
                raise WireError("record truncated")
            rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(wire, off)
            rdata_off = off + 10
            if rdata_off + rdlen > len(wire):
                raise WireError("rdata truncated")
            if rtype == TYPE_OPT:
                opt = start
            else:
                offsets.append(off + 4)
                if ttl < min_ttl:
                    min_ttl = ttl
                if i < an and (rtype in (TYPE_CNAME, TYPE_DNAME)):
                    chain.append(read_name(wire, rdata_off)[0])
                elif an <= i < an + ns and rtype == TYPE_SOA and rdlen >= 22:
                    # RFC 2308: negative TTL is min(SOA TTL, SOA MINIMUM)
                    minimum = struct.unpack_from("!I", wire, rdata_off + rdlen - 4)[0]
                    neg_ttl = min(ttl, minimum)
            off = rdata_off + rdlen
        self.ttl_offsets = tuple(offsets)
        self.min_ttl = 0 if min_ttl == 0xFFFFFFFF else min_ttl
        self.neg_ttl = neg_ttl
        self.opt = opt
        self.chain = tuple(chain)

    def summary(self) -> tuple[tuple[str, str, str], ...]:
        """(Rdata, Type, Class) of each answer record in order, as Route 53 query logs show them."""
        if self._summary is None:
            self._summary = _summarise(self._wire)
        return self._summary


def _summarise(wire: bytes) -> tuple[tuple[str, str, str], ...]:
    # Off the hot path (once per upstream answer, on first use), so dnspython is fine here.
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True, one_rr_per_rrset=True)
    except (dns.exception.DNSException, ValueError):
        return ()
    out = []
    for rrset in msg.answer:
        tname = dns.rdatatype.to_text(rrset.rdtype)
        cname = dns.rdataclass.to_text(rrset.rdclass)
        for rdata in rrset:
            out.append((rdata.to_text(), tname, cname))
    return tuple(out)
