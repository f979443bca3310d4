"""The answer section as Route 53 logs it, read straight from the wire.

:func:`summarise` gives the same ``(Rdata, Type, Class)`` rows as
``proxy.wire.AnswerInfo.summary()`` (dnspython's presentation format) for the record types
answers are made of: A, AAAA, CNAME, DNAME, NS, PTR, MX, SRV, SOA and TXT. It costs a few
microseconds where a dnspython parse of the whole reply costs about a hundred, which matters on
a forward chain without a cache, where every reply is a new upstream answer. For any other type
(or a reply it cannot read) it returns None and the caller uses ``summary()``.
"""

from __future__ import annotations

import socket
import struct

from proxy import wire

from .text import class_text, name_text, type_text

_RR = struct.Struct("!HHIH")
_SOA_NUMBERS = struct.Struct("!IIIII")
_U16 = struct.Struct("!H")
_NAME_TYPES = frozenset({wire.TYPE_CNAME, wire.TYPE_DNAME, wire.TYPE_NS, 12})  # 12: PTR
TYPE_MX, TYPE_TXT = 15, 16


def summarise(data: bytes) -> tuple[tuple[str, str, str], ...] | None:
    """(Rdata, Type, Class) of each answer record in order, or None (use dnspython)."""
    try:
        an = (data[6] << 8) | data[7]
        off = wire.HEADER_LEN
        for _ in range((data[4] << 8) | data[5]):
            off = wire.skip_name(data, off) + 4
        rows = []
        for _ in range(an):
            off = wire.skip_name(data, off)
            rtype, rclass, _ttl, rdlen = _RR.unpack_from(data, off)
            start = off + 10
            off = start + rdlen
            if off > len(data):
                return None
            rdata = _rdata_text(data, rtype, start, off)
            if rdata is None:
                return None
            rows.append((rdata, type_text(rtype), class_text(rclass)))
    except (wire.WireError, IndexError, struct.error, ValueError):
        return None
    return tuple(rows)


def _rdata_text(data: bytes, rtype: int, start: int, end: int) -> str | None:
    length = end - start
    if rtype == wire.TYPE_A and length == 4:
        return "%d.%d.%d.%d" % tuple(data[start:end])  # noqa: UP031 - the fastest way
    if rtype == wire.TYPE_AAAA and length == 16:
        return socket.inet_ntop(socket.AF_INET6, data[start:end])  # as dnspython writes it
    if rtype in _NAME_TYPES:
        return _name(data, start, end)
    if rtype == TYPE_MX:
        return f"{_U16.unpack_from(data, start)[0]} {_name(data, start + 2, end)}"
    if rtype == wire.TYPE_SRV:
        priority, weight, port = struct.unpack_from("!HHH", data, start)
        return f"{priority} {weight} {port} {_name(data, start + 6, end)}"
    if rtype == wire.TYPE_SOA:
        return _soa(data, start, end)
    if rtype == TYPE_TXT:
        return _txt(data[start:end])
    return None


def _name(data: bytes, off: int, end: int) -> str:
    name, after = wire.read_name(data, off)  # lower case: Route 53 lines lower-case these
    if after > end:
        raise wire.WireError("name runs past its record")
    return name_text(name)


def _soa(data: bytes, off: int, end: int) -> str:
    mname, off = wire.read_name(data, off)
    rname, off = wire.read_name(data, off)
    if off + 20 != end:
        raise wire.WireError("bad SOA")
    numbers = " ".join(str(n) for n in _SOA_NUMBERS.unpack_from(data, off))
    return f"{name_text(mname)} {name_text(rname)} {numbers}"


def _txt(rdata: bytes) -> str:
    strings = []
    off = 0
    while off < len(rdata):
        size = rdata[off]
        text = rdata[off + 1 : off + 1 + size]
        if len(text) != size:
            raise wire.WireError("TXT string runs past its record")
        strings.append('"' + _escape(text) + '"')
        off += 1 + size
    return " ".join(strings)


def _escape(text: bytes) -> str:
    # dnspython's escapify for character-strings: \" and \\, printable ASCII as is, else \DDD
    if text.isascii() and text.isalnum():
        return text.decode("ascii")
    out = []
    for byte in text:
        if byte in b'"\\':
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)
