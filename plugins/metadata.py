"""metadata - enable the metadata collector, as CoreDNS's ``metadata``.

Syntax::

    metadata [ZONES...]

**ZONES** (default: the server block's zones) are the zones metadata is collected for. No
block. In CoreDNS, plugins that provide metadata (``plugin/NAME`` labels) fill a per-query
context that other plugins read. In dnsfw every stage already shares a query's facts through
``Request.meta`` (the firewall's decision for ``log``, for instance), so ``metadata`` is
accepted, its syntax checked, and nothing else is needed: the stage passes every query on and
costs nothing on replays. Once per server block (a second ``metadata`` is an error, as in
CoreDNS).

Example::

    . {
        metadata
        forward . 10.0.0.2
    }
"""

from __future__ import annotations

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

ONCE = True


def setup(directive: Directive, ctx: SetupContext) -> Metadata:
    if directive.block is not None:
        raise directive.arg_error()
    return Metadata(ctx.zones_from(directive.args))


class Metadata(Plugin):
    name = "metadata"
    replays = TAKES_PART

    def __init__(self, zones: tuple[str, ...]) -> None:
        self.zones = zones

    async def serve(self, req: Request, next: Handler) -> Response:
        return await next(req)
