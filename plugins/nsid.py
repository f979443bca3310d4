"""nsid - adds an RFC 5001 Name Server Identifier to replies when asked, as CoreDNS's ``nsid``.

Syntax::

    nsid [DATA]

**DATA** (default: the host name; the arguments are joined by spaces) is sent in an NSID EDNS
option to a client whose query carries an (empty) NSID option; other queries are not
touched. A reply that has an OPT record gets the option (an NSID already there from
upstream is replaced); one without gets an OPT record (the query's payload size, DO set, as
CoreDNS does). Once per server block.

Replays: only queries made of the question and a bare OPT record are replayed, so a query
that asks for the NSID never is; nothing to record.

Examples::

    . {
        nsid Use The Force
        whoami
    }

    . {
        nsid
        forward . 9.9.9.9
    }
"""

from __future__ import annotations

import socket
from functools import partial

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import (
    NSID_OPTION,
    assemble,
    encode_options,
    find_opt,
    opt_with,
    options,
    reshaped,
    sections,
)
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

ONCE = True


def setup(directive: Directive, ctx: SetupContext) -> Nsid:
    if directive.block is not None:
        raise directive.arg_error()
    data = " ".join(directive.values) if directive.args else socket.gethostname() or "localhost"
    return Nsid(data.encode())


class Nsid(Plugin):
    name = "nsid"
    replays = TAKES_PART  # queries asking for it are never replayed (see the docstring)

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def serve(self, req: Request, next: Handler) -> Response:
        if len(req.wire) <= req.qend + 11 or not req.edns:  # no EDNS option at all
            return await next(req)
        query_opt = find_opt(sections(req.wire).additional)
        if query_opt is None or all(c != NSID_OPTION for c, _ in options(req.wire, query_opt)):
            return await next(req)
        return reshaped(await next(req), partial(self.add, udp_size=req.udp_size), names=False)

    def add(self, reply: bytes, udp_size: int) -> bytes:
        parts = sections(reply)
        records = [reply[r.start : r.end] for r in parts.additional if r.rtype != wire.TYPE_OPT]
        opt = find_opt(parts.additional)
        if opt is None:
            records.append(
                wire.opt_record(udp_size, True, encode_options([(NSID_OPTION, self.data)]))
            )
        else:
            found = options(reply, opt)
            if any(code == NSID_OPTION for code, _ in found):
                new = [(c, self.data if c == NSID_OPTION else v) for c, v in found]
            else:
                new = [*found, (NSID_OPTION, self.data)]
            records.append(opt_with(reply, opt, new))
        answer = [reply[r.start : r.end] for r in parts.answer]
        authority = [reply[r.start : r.end] for r in parts.authority]
        return assemble(reply, parts.qend, answer, authority, records)
