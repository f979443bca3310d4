"""Editing DNS messages as bytes, for the stages that change queries and replies on their way
(``rewrite``, ``header``, ``minimal``, ``nsid``, ``bufsize``, ``dns64``), and for the stages that ask
the rest of the chain a second question for one query (``dns64``'s A lookup, ``rewrite``'s
CNAME target): :func:`ask` and :class:`Combined`.

No dnspython: these run on every query through such a stage, and on every replay of it (a
stage that edits a reply passes it through :func:`reshaped`, which wraps the Response's replay
in a :class:`proxy.replay.Reshaped`, so the replayed reply is edited by the very same function). Records are read as offsets, never decoded unless edited.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from .pipeline import Handler
from .replay import Answer, Reshaped
from .request import Request, Response, parse
from .wire import HEADER_LEN, TYPE_OPT, skip_name

_HEADER = struct.Struct("!HHHHHH")
_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_U16 = struct.Struct("!H")

NSID_OPTION = 3
SUBNET_OPTION = 8


class Record(NamedTuple):
    """Where one record lies in a message: ``start`` (its owner name), ``rtype``, ``rdata``
    (where its rdata starts) and ``end``."""

    start: int
    rtype: int
    rdata: int
    end: int


class Sections(NamedTuple):
    qend: int
    answer: list[Record]
    authority: list[Record]
    additional: list[Record]


def sections(data: bytes) -> Sections:
    """The question's end and the records of the three sections. Raises IndexError,
    struct.error or WireError for a message that does not parse (the caller's own answer, or
    an upstream's that :func:`proxy.wire.check_records` already checked)."""
    _, _, qd, an, ns, ar = _HEADER.unpack_from(data)
    off = HEADER_LEN
    for _ in range(qd):
        off = skip_name(data, off) + 4
    qend = off
    found: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    for section, count in zip(found, (an, ns, ar), strict=True):
        for _ in range(count):
            fixed = skip_name(data, off)
            rtype, _, _, rdlen = _FIXED.unpack_from(data, fixed)
            end = fixed + 10 + rdlen
            if end > len(data):
                raise IndexError("record runs past the message")
            section.append(Record(off, rtype, fixed + 10, end))
            off = end
    return Sections(qend, *found)


def assemble(
    data: bytes, qend: int, answer: list[bytes], authority: list[bytes], additional: list[bytes]
) -> bytes:
    """``data``'s header (counts set for the sections given) and question, then the records."""
    counts = struct.pack("!HHH", len(answer), len(authority), len(additional))
    return b"".join((data[:6], counts, data[HEADER_LEN:qend], *answer, *authority, *additional))


def options(data: bytes, opt: Record) -> list[tuple[int, bytes]]:
    """The EDNS options (code, data) of the OPT record ``opt`` of ``data``."""
    found = []
    off = opt.rdata
    while off + 4 <= opt.end:
        code, length = struct.unpack_from("!HH", data, off)
        found.append((code, data[off + 4 : off + 4 + length]))
        off += 4 + length
    return found


def encode_options(found: list[tuple[int, bytes]]) -> bytes:
    """The EDNS options (code, data) as an OPT record's rdata."""
    return b"".join(_U16.pack(code) + _U16.pack(len(value)) + value for code, value in found)


def opt_with(data: bytes, opt: Record, new: list[tuple[int, bytes]]) -> bytes:
    """The OPT record ``opt`` of ``data`` (owner, size, flags kept) with the options ``new``."""
    body = encode_options(new)
    return data[opt.start : opt.rdata - 2] + _U16.pack(len(body)) + body


def find_opt(records: list[Record]) -> Record | None:
    return next((r for r in records if r.rtype == TYPE_OPT), None)


def set_flags(data: bytes, set_mask: int, clear_mask: int) -> bytes:
    """``data`` with header flag bits ``set_mask`` set and ``clear_mask`` cleared."""
    flags = (((data[2] << 8) | data[3]) | set_mask) & ~clear_mask
    return data[:2] + _U16.pack(flags) + data[4:]


def requery(req: Request, data: bytes) -> Request:
    """A Request for the edited query ``data`` that is still this query: the same client,
    start time, annotations and replay trail (what the stages behind record belongs to the
    client's query, whose replay answers with the stage's edit again)."""
    new = parse(data, req.client, req.transport, req.server)
    new.start = req.start
    new.meta = req.meta
    new.trail = req.trail
    return new


async def ask(req: Request, data: bytes, next: Handler) -> Response:
    """The rest of the chain's reply to ``data`` (an edited query, or a second question a stage
    asks for this query), as part of ``req`` (see :func:`requery`). A stage behind that keeps
    the second query from being replayed (``req.no_replay()``) keeps the client's too."""
    sub = requery(req, data)
    resp = await next(sub)
    if sub.trail is None:
        req.no_replay()
    return resp


def with_qtype(data: bytes, qend: int, qtype: int) -> bytes:
    """The query ``data`` (question ending at ``qend``) asking its name for ``qtype``."""
    return data[: qend - 4] + _U16.pack(qtype) + data[qend - 2 :]


def reshaped(
    resp: Response, reshape: Callable[[bytes], bytes], *, names: bool, wire: bytes | None = None
) -> Response:
    """``resp`` with its bytes passed through ``reshape`` (and its replay, if any, too: a
    :class:`~proxy.replay.Reshaped`). ``names``: the edit may change records, so the computed
    AnswerInfo is dropped (a later reader computes it again from the new bytes). ``wire``: the
    edited bytes, when the stage made them itself (it needed more than the bytes back)."""
    if not resp.wire:
        return resp
    replay = Reshaped(resp.replay, reshape) if resp.replay is not None else None
    return Response(
        reshape(resp.wire) if wire is None else wire,
        resp.rcode,
        resp.source,
        info=None if names else resp.info,
        error=resp.error,
        replay=replay,
    )


class Combined(Answer):
    """An :class:`~proxy.replay.Answer` for a reply a stage made from two: the chain's reply to
    the query (``first``) and its reply to a second query the stage asked for it (``second``,
    asked with ``query``: the query's bytes with the second question, its id put on each time).
    ``holds(first)`` says whether the stage would still ask (else the replay is dropped and
    the chain decides again); ``combine(data, first, second)`` is the stage's own reply, the
    very function its ``serve`` used."""

    __slots__ = ("first", "second", "query", "holds", "combine")

    def __init__(
        self,
        first: Answer,
        second: Answer,
        query: bytes,
        holds: Callable[[bytes], bool],
        combine: Callable[[bytes, bytes, bytes], bytes],
    ) -> None:
        self.first = first
        self.second = second
        self.query = query
        self.holds = holds
        self.combine = combine

    def __call__(self, data: bytes, now: float) -> bytes | None:
        first = self.first(data, now)
        if first is None or not self.holds(first):
            return None
        second = self.second(data[:2] + self.query[2:], now)
        return None if second is None else self.combine(data, first, second)


def combined(
    first: Response,
    second: Response,
    query: bytes,
    holds: Callable[[bytes], bool],
    combine: Callable[[bytes, bytes, bytes], bytes],
) -> Combined | None:
    """The replay of a reply made from ``first`` and ``second``: None unless both have one."""
    if first.replay is None or second.replay is None:
        return None
    return Combined(first.replay, second.replay, query, holds, combine)
