"""debug - log debug messages, as CoreDNS's ``debug``.

Syntax::

    debug

No arguments. Process-wide: ``debug`` in any server block turns on debug-level log events
(for instance ``local``'s ``localhost_query``, which CoreDNS logs with ``log.Debug``) from the
moment the configuration is loaded. CoreDNS's other effect, not recovering from a plugin's
panic, is not copied: a plugin that raises still gets its query answered SERVFAIL and counted
in ``coredns_panics_total`` (a test aid there, a crash in production).

Example::

    . {
        debug
        forward . 10.0.0.2
    }
"""

from __future__ import annotations

import logging

import structlog

from proxy.config import SetupContext
from proxy.corefile import Directive


def setup(directive: Directive, ctx: SetupContext) -> None:
    if directive.args or directive.block is not None:
        raise directive.arg_error()
    if not ctx.app.checking:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    return None
