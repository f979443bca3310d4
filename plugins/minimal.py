"""minimal - minimal responses: only the answer section of a successful answer, as CoreDNS's
``minimal`` (BIND's ``minimal-responses``).

Syntax::

    minimal

No arguments. A reply with rcode NOERROR that is an answer (records in the answer section, or
none and neither an SOA nor NS records in the authority section) leaves with its authority and
additional sections emptied; an OPT record stays, without options (as CoreDNS writes it back).
Negative replies (NXDOMAIN, NODATA with an SOA), referrals (NS in authority) and errors pass
unchanged.

Place in the chain (``plugins.ORDER``): after ``cache``, so the cache keeps whole replies and
each reply is made minimal on its way out; replays of cache hits are made minimal by the same
function (:class:`proxy.replay.Reshaped`: one walk over the records' offsets).

Example::

    example.org {
        whoami
        forward . 8.8.8.8
        minimal
    }
"""

from __future__ import annotations

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import assemble, find_opt, reshaped, sections
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

_REFERRAL_OR_DENIAL = frozenset({wire.TYPE_SOA, wire.TYPE_NS})


def setup(directive: Directive, ctx: SetupContext) -> Minimal:
    if directive.args or directive.block is not None:
        raise directive.arg_error()
    return Minimal()


def minimal(data: bytes) -> bytes:
    """``data`` without authority and additional records when it is a NOERROR answer."""
    if data[3] & 0x0F:
        return data
    parts = sections(data)
    if not parts.answer and any(r.rtype in _REFERRAL_OR_DENIAL for r in parts.authority):
        return data
    opt = find_opt(parts.additional)
    kept = [data[opt.start : opt.rdata - 2] + b"\x00\x00"] if opt is not None else []
    if not parts.authority and len(parts.additional) == len(kept):
        return data if opt is None or opt.rdata == opt.end else _rebuild(data, parts, kept)
    return _rebuild(data, parts, kept)


def _rebuild(data: bytes, parts, kept: list[bytes]) -> bytes:
    answer = [data[r.start : r.end] for r in parts.answer]
    return assemble(data, parts.qend, answer, [], kept)


class Minimal(Plugin):
    name = "minimal"
    replays = TAKES_PART  # the edit goes on the replay's answer (proxy.replay.Reshaped)

    async def serve(self, req: Request, next: Handler) -> Response:
        return reshaped(await next(req), minimal, names=True)
