"""any - answer ANY queries with a short HINFO record (RFC 8482), as CoreDNS's ``any``.

Syntax::

    any

No arguments, no block (``unknown property 'X'``). A query of type ANY is answered at once
with one record, owned by the query name (in the client's case)::

    example.org.  8482  IN  HINFO  "ANY obsoleted" "See RFC 8482"

NOERROR, no AA, no RA (CoreDNS's reply flags). Every other type goes on to the next plugin.
The answer depends on the query alone, so a repeated one is replayed (see
:mod:`proxy.replay`) and counted by ``log``, ``prometheus`` and ``admin`` like any other.

Example::

    example.org {
        whoami
        any
    }

``dig +nocmd ANY example.org +noall +answer`` then shows the HINFO record above.
"""

from __future__ import annotations

import dns.rdatatype

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

TYPE_ANY = int(dns.rdatatype.ANY)
TYPE_HINFO = int(dns.rdatatype.HINFO)
TTL = 8482
HINFO = wire.rr(wire.QNAME_PTR, TYPE_HINFO, TTL, b"\x0dANY obsoleted\x0cSee RFC 8482")


def setup(directive: Directive, ctx: SetupContext) -> Any:
    if directive.args:
        raise directive.arg_error()
    for line in directive.block or ():
        raise line.unknown_property()
    return Any()


class Any(Plugin):
    name = "any"
    replays = TAKES_PART

    async def serve(self, req: Request, next: Handler) -> Response:
        if req.qtype != TYPE_ANY:
            return await next(req)
        return req.fixed_reply(wire.NOERROR, flags=0, answer=(HINFO,), source=self.name)
