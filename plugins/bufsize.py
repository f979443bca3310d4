"""bufsize - caps the EDNS0 UDP payload size of queries, as CoreDNS's ``bufsize``.

Syntax::

    bufsize [SIZE]

**SIZE** (default 1232, the DNS Flag Day 2020 value): from 512 to 4096; anything else, or more
than one argument, is CoreDNS's ``Wrong argument count or unexpected line ending after
'bufsize'``. A query with an OPT record advertising more than SIZE is handled as if it
advertised SIZE: the stages behind and ``forward`` see SIZE, and a UDP reply larger than SIZE
goes back truncated (TC set, sections emptied, the OPT kept), as CoreDNS's server truncates
to the rewritten size. Queries without EDNS are left alone (512 bytes already).

Replays: a replayed reply is cut by the same function, so it is the same as the chain's.

Examples::

    . {
        bufsize 1232
        forward . 9.9.9.9
    }

    . {
        bufsize
        cache
        forward . 9.9.9.9
    }
"""

from __future__ import annotations

import struct

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import assemble, find_opt, requery, reshaped, sections, set_flags
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

DEFAULT_SIZE = 1232


def setup(directive: Directive, ctx: SetupContext) -> Bufsize:
    args = directive.values
    if directive.block is not None or len(args) > 1:
        raise directive.arg_error()
    if not args:
        return Bufsize(DEFAULT_SIZE)
    text = args[0]
    size = int(text) if text.isascii() and text.lstrip("+-").isdigit() else -1
    if not 512 <= size <= 4096:
        raise directive.arg_error()
    return Bufsize(size)


class Bufsize(Plugin):
    name = "bufsize"
    replays = TAKES_PART  # the cut goes on the replay's answer (proxy.replay.Reshaped)

    def __init__(self, size: int) -> None:
        self.size = size

    async def serve(self, req: Request, next: Handler) -> Response:
        if not req.edns or req.udp_size <= self.size:
            return await next(req)
        opt = find_opt(sections(req.wire).additional)
        assert opt is not None  # req.edns: parse found it
        data = req.wire
        data = data[: opt.start + 3] + struct.pack("!H", self.size) + data[opt.start + 5 :]
        resp = await next(requery(req, data))
        if req.transport != "udp":
            return resp
        return reshaped(resp, self.cut, names=True)

    def cut(self, reply: bytes) -> bytes:
        """``reply`` truncated to this size: the header with TC, the question and the OPT."""
        if len(reply) <= self.size:
            return reply
        parts = sections(reply)
        opt = find_opt(parts.additional)
        kept = [reply[opt.start : opt.end]] if opt is not None else []
        return assemble(set_flags(reply, wire.TC, 0), parts.qend, [], [], kept)
