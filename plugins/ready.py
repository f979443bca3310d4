"""ready - an HTTP readiness endpoint, as CoreDNS's ``ready``.

Syntax::

    ready [ADDRESS]

``GET /ready`` (or HEAD) answers ``200 OK`` (body ``OK``) when every stage of the running
configuration that can be unready is ready (for example the firewall once its domain lists
are loaded), and ``503 Service Unavailable`` otherwise, with the names of the stages still
waiting, comma-separated (as CoreDNS), each followed by why in parentheses when the stage
knows more than "not yet" (``firewall (list 'x': download of URL failed: HTTP 503 ...; next
try at 12:00:05Z)``). While stopping in lameduck mode (``health``), it
answers 503 with ``lameduck``. A reload swaps in only a configuration whose lists are
loaded, so a reload never makes ``/ready`` fail. ADDRESS defaults to ``:8181``.

Process-wide, kept across reloads, may share its address with ``health``, ``prometheus``
and ``admin`` (:mod:`proxy.http`). Once per server block.

Example::

    . {
        ready 127.0.0.1:8181
        firewall { ... }
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.http import add_site, parse_address, refuse_unless_get

ONCE = True
DEFAULT_ADDRESS = ":8181"


@dataclass(frozen=True)
class ReadySite:
    name: ClassVar[str] = "ready"
    prefix: ClassVar[str] = "/ready"

    async def handle(self, request: web.BaseRequest, runtime: Any) -> web.StreamResponse:
        refusal = refuse_unless_get(request, self.prefix)
        if refusal is not None:
            return refusal
        if runtime.lameduck:
            return web.Response(status=503, text="lameduck")
        waiting = runtime.not_ready()
        if waiting:
            return web.Response(status=503, text=",".join(dict.fromkeys(waiting)))
        return web.Response(text="OK")


def setup(directive: Directive, ctx: SetupContext) -> None:
    args = directive.args
    if len(args) > 1 or directive.block:
        raise directive.arg_error()
    address = parse_address(
        args[0].text if args else DEFAULT_ADDRESS, args[0] if args else None, directive
    )
    add_site(ctx.app, directive, address, ReadySite())
    return None
