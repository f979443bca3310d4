"""reload - re-read the Corefile when it changes, as CoreDNS's ``reload``.

Syntax::

    reload [INTERVAL] [JITTER]

Every INTERVAL (default 30s, at least 2s: ``interval value must be greater or equal to 2s``)
plus a random offset in [-JITTER/2, +JITTER/2) drawn once per configuration (JITTER default
15s; 0 or at least 1s: ``jitter value must be 0 or greater or equal to 1s``; more than
INTERVAL/2 is lowered to INTERVAL/2), dnsfw parses the Corefile (imports and snippets
expanded) and compares the SHA-512 of the parsed structure with the running one's
(:func:`proxy.corefile.fingerprint`): comment and layout edits do not reload, edits inside
imported files do. A change reloads the whole configuration exactly as SIGHUP and
``POST /v1/reload`` do (:mod:`proxy.runtime`): set up in full first, swapped in only if
everything succeeded. A failed reload keeps the old configuration, is logged
(``reload_failed``) and counted in ``coredns_reload_failed_total``; unlike CoreDNS, the same
broken Corefile is not retried (and counted) every interval, only once it changes again.
Domain list files are not watched: their changes are picked up by a reload, by
``POST /v1/lists/NAME/refresh``, or at the list's ``refresh`` interval for url lists.

Process-wide: one watcher whatever the number of blocks; blocks that set ``reload`` must
agree on its values. Once per server block.

Metrics: ``coredns_reload_failed_total``, ``coredns_reload_version_info{hash="sha512",value}``.

Example::

    . {
        reload 10s
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import SetupContext
from proxy.corefile import Directive, Token
from proxy.durations import parse_duration

ONCE = True
DEFAULT_INTERVAL = 30.0
DEFAULT_JITTER = 15.0


@dataclass(frozen=True)
class ReloadSpec:
    interval: float  # seconds
    jitter: float


def _seconds(token: Token) -> float:
    return 0.0 if token.text == "0" else parse_duration(token)  # Go accepts a bare 0


def setup(directive: Directive, ctx: SetupContext) -> None:
    args = directive.args
    if len(args) > 2 or directive.block:
        raise directive.arg_error()
    interval = _seconds(args[0]) if args else DEFAULT_INTERVAL
    if interval < 2:
        raise directive.error("interval value must be greater or equal to 2s", at=args[0])
    jitter = _seconds(args[1]) if len(args) > 1 else DEFAULT_JITTER
    if jitter != 0 and jitter < 1:
        raise directive.error("jitter value must be 0 or greater or equal to 1s", at=args[1])
    spec = ReloadSpec(interval, min(jitter, interval / 2))
    if ctx.app.reload is not None and ctx.app.reload != spec:
        raise directive.error(
            f"reload is set to {ctx.app.reload.interval:g}s/{ctx.app.reload.jitter:g}s in "
            "another server block: every block must use the same values"
        )
    ctx.app.reload = spec
    return None
