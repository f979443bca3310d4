"""The two objects every stage sees: :class:`Request` (one query) and :class:`Response`.

A Request is built by the server with a fast parse of the header, the question and the OPT
record only (see :func:`parse`); a Response carries the reply's wire bytes plus, for replies
that came from upstream, the :class:`~proxy.wire.AnswerInfo` computed once for them.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from . import names, wire
from .replay import FixedAnswer, Guard
from .wire import AnswerInfo, WireError

_HEADER = struct.Struct("!HHHHHH")
_HEADER_LEN = wire.HEADER_LEN
_QTYPE_QCLASS = struct.Struct("!HH")
_CLASS_TTL = struct.Struct("!HI")  # an OPT record's payload size and extended flags
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


class Request:
    """One DNS query as the pipeline sees it. Cheap to build: slots, no dnspython."""

    __slots__ = (
        "wire",
        "flags",
        "qname_wire",
        "qtype",
        "qclass",
        "qend",
        "edns",
        "udp_size",
        "do",
        "client",
        "transport",
        "server",
        "start",
        "meta",
        "trail",
        "_qname",
    )

    def __init__(
        self,
        data: bytes,
        qname_wire: bytes,
        qtype: int,
        qclass: int,
        qend: int,
        edns: bool,
        udp_size: int,
        do: bool,
        client: tuple[str, int],
        transport: str,
        server: str,
    ) -> None:
        self.wire = data
        self.flags = (data[2] << 8) | data[3]
        self.qname_wire = qname_wire
        self.qtype = qtype
        self.qclass = qclass
        self.qend = qend
        self.edns = edns
        self.udp_size = udp_size
        self.do = do
        self.client = client
        self.transport = transport
        self.server = server
        self.start = time.monotonic()
        # annotations for the stages that wrap this one (e.g. the firewall's decision for `log`)
        self.meta: dict[str, Any] = {}
        # what the stages ran for this query, for a replay (None: it will not be replayed;
        # only UDP queries are, see proxy.replay)
        self.trail: list[Any] | None = [] if transport == "udp" else None
        self._qname: str | None = None

    def record(self, step: Any) -> None:
        """Keep a stage's :class:`~proxy.replay.Guard` (or Effect) for a replay of this query."""
        trail = self.trail
        if trail is not None:
            trail.append(step)

    def run(self, effect: Any) -> None:
        """Do a stage's per-query :class:`~proxy.replay.Effect` for this query, and record it."""
        effect(self.client, self.start)
        trail = self.trail
        if trail is not None:
            trail.append(effect)

    def admit(self, gate: Any) -> bool:
        """Ask a stage's :class:`~proxy.replay.Gate` whether this query may go on, and record
        it for a replay of this query (which asks it again for each client)."""
        trail = self.trail
        if trail is not None:
            trail.append(gate)
        return gate(self.client, self.start)

    def no_replay(self) -> None:
        """This query's answer must not be replayed (a stage decided in a way it cannot record)."""
        self.trail = None

    def derive(self, data: bytes | None = None, qname_wire: bytes | None = None) -> Request:
        """A new Request from the same client, with its own meta, start time and trail: for
        the same query (a background refresh) or for ``data`` asking ``qname_wire`` with this
        query's type, class and EDNS (a sub-query)."""
        if data is None or qname_wire is None:
            data, qname_wire, qend = self.wire, self.qname_wire, self.qend
        else:
            qend = wire.HEADER_LEN + len(qname_wire) + 4
        return Request(
            data,
            qname_wire,
            self.qtype,
            self.qclass,
            qend,
            self.edns,
            self.udp_size,
            self.do,
            self.client,
            self.transport,
            self.server,
        )

    @property
    def id(self) -> int:
        return (self.wire[0] << 8) | self.wire[1]

    @property
    def qname(self) -> str:
        """Lower-case presentation name with a trailing dot (built on first use)."""
        if self._qname is None:
            self._qname = names.wire_to_text(self.qname_wire)
        return self._qname

    @property
    def cd(self) -> bool:
        return bool(self.flags & wire.CD)

    @property
    def question(self) -> bytes:
        """The question section as the client wrote it (its case preserved)."""
        return self.wire[wire.HEADER_LEN : self.qend]

    def opt(self, options: bytes = b"") -> bytes | None:
        """An OPT record for a reply to this query, or None when the query had no EDNS."""
        if not self.edns:
            return None
        return wire.opt_record(1232, self.do, options)

    def reply(
        self,
        rcode: int,
        *,
        flags: int = wire.RA,
        answer: tuple[bytes, ...] = (),
        authority: tuple[bytes, ...] = (),
        additional: tuple[bytes, ...] = (),
        options: bytes = b"",
        source: str = "server",
        error: str | None = None,
    ) -> Response:
        """A locally built reply to this query (see :func:`proxy.wire.build_reply`)."""
        data = wire.build_reply(
            self.wire,
            self.qend,
            rcode,
            flags=flags,
            answer=answer,
            authority=authority,
            additional=additional,
            opt=self.opt(options),
        )
        return Response(data, rcode, source, error=error)

    def fixed_reply(self, rcode: int, guard: Guard | None = None, **parts: Any) -> Response:
        """:meth:`reply` (``parts`` as there) for a reply the stage made from its own data,
        replayed as it is while ``guard`` holds (:class:`~proxy.replay.FixedAnswer`)."""
        resp = self.reply(rcode, **parts)
        resp.replay = FixedAnswer(resp.wire, guard)
        return resp

    def drop(self) -> Response:
        """No reply at all: the server sends nothing for this query (the client times out)."""
        return Response(b"", wire.REFUSED, "drop")


class Response:
    """A reply on its way back through the chain.

    ``source`` says who made it: ``upstream`` (forward), ``error`` (a failure the server
    answers), ``server`` (a reply a stage wrote without naming itself), or the name of the plugin that made it (``cache``, ``firewall``,
    ``acl``, ``dns64``...: the ``plugin`` label of CoreDNS's response metric);
    ``drop`` (empty ``wire``, :meth:`Request.drop`): nothing is sent.
    ``info`` is the shared, computed-once view of an upstream answer (None for local replies
    unless a stage asks for it via :meth:`answer_info`). ``error`` is a message for the
    ``errors`` stage when the chain failed (CoreDNS's returned ``err``). ``replay`` is the
    :class:`~proxy.replay.Answer` that made this reply, when it can answer the same query again
    without the chain (see :mod:`proxy.replay`).
    """

    __slots__ = ("wire", "rcode", "source", "info", "error", "replay")

    def __init__(
        self,
        data: bytes,
        rcode: int,
        source: str,
        info: AnswerInfo | None = None,
        error: str | None = None,
        replay: Any = None,
    ) -> None:
        self.wire = data
        self.rcode = rcode
        self.source = source
        self.info = info
        self.error = error
        self.replay = replay

    def answer_info(self) -> AnswerInfo:
        """The computed facts of this reply (computed now if nobody did yet)."""
        if self.info is None:
            self.info = AnswerInfo(self.wire)
        return self.info


class Malformed(Exception):
    """A query that cannot enter the pipeline. ``reply`` is what to send (None: drop it)."""

    def __init__(self, reply: bytes | None, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


def parse(data: bytes, client: tuple[str, int], transport: str, server: str) -> Request:
    """Build a Request from a query, or raise :class:`Malformed` with the reply to send.

    The rules follow CoreDNS (miekg/dns's accept function, then its unpacking): too short for
    a header, or a response (QR set) → dropped; opcode other than QUERY → NOTIMP; not
    exactly one question, more than 1 answer, 1 authority or 2 additional records → FORMERR;
    a question or a record that does not parse as the header's counts say
    (:func:`proxy.wire.check_records`: names, compression pointers, RDLENGTHs, OPT) → FORMERR;
    EDNS version above 0 → BADVERS. Stricter than miekg/dns in one way: miekg/dns lets a
    count exceed the records when the message ends where a record would start, and CoreDNS
    packs the message again with the counts found; dnsfw forwards the query's bytes, so a
    count that lies is FORMERR. Bytes after the last record are ignored, as miekg/dns does, and cut off
    (CoreDNS's upstreams never see them either, it packs the message again).
    This is the first step of every query that no replay answers, so it reads the header in
    one unpack, walks the question's labels inline, and takes the usual queries (the question
    alone, or with a bare OPT record) without a loop.
    """
    try:
        _, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    except struct.error:
        raise Malformed(None, "shorter than a DNS header") from None
    if flags & 0xF800:  # QR or an opcode
        if flags & wire.QR:
            raise Malformed(None, "a response, not a query")
        raise Malformed(_header_only(data, wire.NOTIMP), "opcode not supported")
    if qd != 1:
        raise Malformed(_header_only(data, wire.FORMERR), f"{qd} questions")
    if an > 1 or ns > 1 or ar > 2:
        raise Malformed(_header_only(data, wire.FORMERR), f"{an}/{ns}/{ar} records")
    off = _HEADER_LEN
    try:
        length = data[off]
        while 0 < length < 64:  # 0 ends the name; above 63 is not a label
            off += length + 1
            length = data[off]
    except IndexError:
        length = -1
    qend = off + 5
    size = len(data)
    if length or qend > size or off > 266:  # 266: a name longer than 255 bytes
        raise Malformed(_header_only(data, wire.FORMERR), "malformed question")
    qtype, qclass = _QTYPE_QCLASS.unpack_from(data, off + 1)
    qname = data[_HEADER_LEN : off + 1].lower()
    if not (an or ns):  # the usual queries: the question alone, or with a bare OPT record
        if not ar:
            if size == qend:
                return Request(
                    data, qname, qtype, qclass, qend, False, 512, False, client, transport, server
                )
        elif ar == 1 and size == qend + 11 and not data[qend]:
            rtype, udp_size, ttl, rdlen = _RR_FIXED.unpack_from(data, qend + 1)
            if rtype == wire.TYPE_OPT and not rdlen:
                return _with_edns(
                    data, qname, qtype, qclass, qend, udp_size, ttl, client, transport, server
                )
    try:
        end, opt = wire.check_records(data, qend, an, ns, ar)
    except WireError as exc:
        raise Malformed(_header_only(data, wire.FORMERR), f"malformed records: {exc}") from None
    if end < size:
        data = data[:end]
    if opt < 0:
        return Request(
            data, qname, qtype, qclass, qend, False, 512, False, client, transport, server
        )
    udp_size, ttl = _CLASS_TTL.unpack_from(data, opt + 3)
    return _with_edns(data, qname, qtype, qclass, qend, udp_size, ttl, client, transport, server)


def _with_edns(
    data: bytes,
    qname: bytes,
    qtype: int,
    qclass: int,
    qend: int,
    udp_size: int,
    ttl: int,
    client: tuple[str, int],
    transport: str,
    server: str,
) -> Request:
    """A Request for a query with an OPT record (``udp_size`` and ``ttl``: its class and TTL
    fields), or :class:`Malformed` with BADVERS for an EDNS version above 0."""
    do = bool(ttl & wire.DO_BIT)
    if ttl & 0xFF0000:  # EDNS version
        reply = wire.build_reply(data, qend, wire.BADVERS, opt=wire.opt_record(1232, do))
        raise Malformed(reply, "EDNS version not supported")
    # RFC 6891: values below 512 are treated as 512
    return Request(
        data, qname, qtype, qclass, qend, True, max(udp_size, 512), do, client, transport, server
    )


def _header_only(data: bytes, rcode: int) -> bytes:
    """An error reply without a question section (for queries whose question we cannot trust)."""
    qflags = (data[2] << 8) | data[3]
    flags = wire.QR | (qflags & (wire.OPCODE_MASK | wire.RD | wire.CD)) | rcode
    return data[:2] + bytes((flags >> 8, flags & 0xFF)) + b"\x00" * 8
