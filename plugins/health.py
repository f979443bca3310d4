"""health - an HTTP liveness endpoint, as CoreDNS's ``health``.

Syntax::

    health [ADDRESS] {
        lameduck DURATION
    }

``GET /health`` (or HEAD) answers ``200 OK`` with the body ``OK`` while the process runs: an
answer at all proves the event loop that also serves DNS is turning. ADDRESS defaults to
``:8080`` (every address, as CoreDNS); see :mod:`proxy.http` for the address syntax.

``lameduck DURATION``: on SIGTERM/SIGINT, keep running for DURATION before stopping (logged as
``lameduck``): ``/health`` still says OK, DNS is still answered, ``/ready`` answers 503, so a
load balancer takes the instance out before it goes. With several ``health`` directives the
longest lameduck applies.

Process-wide: the listener is shared by every server block naming the same address, and it
survives reloads (its socket stays open when the address does not change; see
:mod:`proxy.http`). It may share its address with ``ready``, ``prometheus`` and ``admin``.
Once per server block. No metrics (CoreDNS's self-check histogram is not exported).

Example::

    . {
        health 127.0.0.1:8080 {
            lameduck 5s
        }
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.durations import parse_duration
from proxy.http import add_site, parse_address, refuse_unless_get

ONCE = True
DEFAULT_ADDRESS = ":8080"


@dataclass(frozen=True)
class HealthSite:
    name: ClassVar[str] = "health"
    prefix: ClassVar[str] = "/health"

    async def handle(self, request: web.BaseRequest, runtime: Any) -> web.StreamResponse:
        refusal = refuse_unless_get(request, self.prefix)
        if refusal is not None:
            return refusal
        return web.Response(text="OK")


def setup(directive: Directive, ctx: SetupContext) -> None:
    args = directive.args
    if len(args) > 1:
        raise directive.arg_error()
    address = parse_address(
        args[0].text if args else DEFAULT_ADDRESS, args[0] if args else None, directive
    )
    for line in directive.block or ():
        if line.name.text != "lameduck":
            raise line.unknown_property(("lameduck",))
        if len(line.args) != 1:
            raise line.arg_error()
        seconds = parse_duration(line.args[0])
        if seconds <= 0:
            raise line.error(
                f"lameduck duration must be positive: {line.args[0].text}", line.args[0]
            )
        ctx.app.lameduck = max(ctx.app.lameduck, seconds)
    add_site(ctx.app, directive, address, HealthSite())
    return None
