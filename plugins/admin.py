"""admin - dnsfw's HTTP API: domain lists, rules, explain, stats, reload, cache (JSON, /v1).

Syntax::

    admin [ADDRESS] {
        token_file PATH
    }

ADDRESS defaults to ``127.0.0.1:8053`` (:mod:`proxy.http` for the syntax). ``token_file``
names a file (relative to the Corefile's directory, or absolute) holding one bearer token
(surrounding whitespace ignored; at least 16 characters); with it every ``/v1`` request
needs ``Authorization: Bearer TOKEN`` (401 without, 403 with another token; compared in
constant time). Without ``token_file`` no header is needed, so the stage refuses to start on
an address that is not loopback (``127.0.0.0/8``, ``::1``, ``localhost``) without one, and
``dnsfw check`` reports it. The token is read at setup: a reload re-reads it.

The endpoints, their errors and limits are documented in :mod:`proxy.admin`; the API
describes itself at ``GET /v1/openapi.json``. In short: ``GET /v1/lists``,
``GET|PATCH|PUT /v1/lists/{name}``, ``POST /v1/lists/{name}/refresh``, ``GET /v1/rules``,
``GET /v1/explain?name=&type=&client=``, ``GET /v1/stats``, ``POST /v1/reload``,
``POST /v1/cache/flush``.

As a chain stage it counts, for ``GET /v1/stats``, the queries of its server block: rcodes,
the firewall's decisions (``req.meta["firewall"]``), top blocked and alerted names and top
clients in bounded memory. Put ``admin`` in every block whose traffic the stats should
cover; the counts survive reloads.

The listener is process-wide (one per address, whatever the number of blocks naming it),
kept across reloads, and may share its address with ``health``, ``ready`` and
``prometheus``. Once per server block.

Examples::

    . {
        admin                        # 127.0.0.1:8053, no token
        firewall { ... }
        forward . 169.254.169.253
    }

    . {
        admin 10.0.0.53:8053 {
            token_file /etc/dnsfw/admin.token
        }
        ...
    }

    curl -s -H "Authorization: Bearer $(cat /etc/dnsfw/admin.token)" \\
        -X PATCH -d '{"operation": "ADD", "domains": ["bad.example"]}' \\
        http://10.0.0.53:8053/v1/lists/blocked
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

import structlog

from proxy.admin import STATS_KEY, AdminSite, QueryStats
from proxy.config import SetupContext
from proxy.corefile import Directive, Token
from proxy.http import add_site, parse_address
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect
from proxy.request import Request, Response

ONCE = True
DEFAULT_ADDRESS = "127.0.0.1:8053"
MIN_TOKEN = 16

log = structlog.get_logger("dnsfw.admin")


class Admin(Plugin):
    """The chain side of the stage: feeds the process's :class:`proxy.admin.QueryStats`."""

    name = "admin"
    replays = TAKES_PART

    def __init__(self, stats: QueryStats) -> None:
        self.count = stats.count

    async def serve(self, req: Request, next: Handler) -> Response:
        resp = await next(req)
        req.run(StatsCount(self.count, resp.rcode, req.meta.get("firewall"), req.qname_wire))
        return resp


class StatsCount(Effect):
    """One answered query, counted in the admin API's stats."""

    __slots__ = ("count", "rcode", "decision", "qname_wire")

    def __init__(
        self, count: Callable[..., None], rcode: int, decision: Any, qname_wire: bytes
    ) -> None:
        self.count = count
        self.rcode = rcode
        self.decision = decision
        self.qname_wire = qname_wire

    def __call__(self, client: Any, start: float) -> None:
        self.count(self.rcode, client[0], start, self.decision, self.qname_wire)


def setup(directive: Directive, ctx: SetupContext) -> Admin:
    args = directive.args
    if len(args) > 1:
        raise directive.arg_error()
    address = parse_address(
        args[0].text if args else DEFAULT_ADDRESS, args[0] if args else None, directive
    )
    token: str | None = None
    for line in directive.block or ():
        if line.name.text != "token_file":
            raise line.unknown_property(("token_file",))
        if len(line.args) != 1:
            raise line.arg_error()
        token = _read_token(line, line.args[0], ctx)
    if token is None and not address.loopback:
        raise directive.error(
            f"admin on {address} (not a loopback address) needs a token_file", at=args[0]
        )
    add_site(ctx.app, directive, address, AdminSite(token))
    return Admin(ctx.app.shared.setdefault(STATS_KEY, QueryStats()))


def _read_token(line: Directive, token: Token, ctx: SetupContext) -> str:
    path = os.path.join(os.path.dirname(os.path.abspath(ctx.app.conf_path)), token.text)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise line.error(f"cannot read token_file {token.text}: {reason}", at=token) from None
    if len(text) < MIN_TOKEN or any(c.isspace() for c in text):
        raise line.error(
            f"token_file {token.text} must hold one token of at least {MIN_TOKEN} characters "
            "without spaces",
            at=token,
        )
    if mode & stat.S_IROTH:
        log.warning("admin_token_world_readable", path=path)
    return text
