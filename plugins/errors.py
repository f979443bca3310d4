"""errors - log the errors the rest of the chain returns.

Syntax::

    errors {
        stacktrace
        consolidate DURATION REGEXP [LEVEL] [show_first]
    }

Once per server block. When a query's reply carries an error (a failed upstream, a missing
next plugin, a firewall evaluation failure...), one service-log line is written::

    level=error event=query_error plugin=errors message="2 example.org. A: upstream timeout"

(``RCODE QNAME QTYPE: ERROR``, as CoreDNS prints it).

* ``stacktrace`` is accepted for compatibility; Python exceptions from plugins are always
  logged with their type by the server.
* ``consolidate DURATION REGEXP [LEVEL] [show_first]``: errors whose message matches REGEXP
  (at most 10000 characters) are counted instead of logged, and every DURATION one line says
  ``N errors like 'REGEXP' occurred in last DURATION``. LEVEL is ``warning``, ``error``
  (default), ``info`` or ``debug``. ``show_first`` logs the first match at once. Several
  ``consolidate`` lines may be given; the first whose REGEXP matches wins.

Example::

    . {
        errors {
            consolidate 5m ".* i/o timeout$" warning
            consolidate 30s "^Failed to .+"
        }
        forward . 127.0.0.1:5301
    }
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import dns.rdatatype
import structlog

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.durations import parse_duration
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

ONCE = True
LEVELS = ("warning", "error", "info", "debug")
log = structlog.get_logger("dnsfw.errors")


@dataclass
class Consolidation:
    pattern: re.Pattern[str]
    every: float
    every_text: str
    level: str
    show_first: bool
    count: int = field(default=0)


def setup(directive: Directive, ctx: SetupContext) -> Errors:
    if directive.args:
        raise directive.arg_error()
    rules: list[Consolidation] = []
    for line in directive.block or ():
        name = line.name.text
        if name == "stacktrace":
            if line.args:
                raise line.arg_error()
        elif name == "consolidate":
            rules.append(_consolidation(line))
        else:
            raise line.unknown_property(("stacktrace", "consolidate"))
    return Errors(rules)


def _consolidation(line: Directive) -> Consolidation:
    values = line.values
    if len(values) < 2 or len(values) > 4:
        raise line.arg_error()
    every = parse_duration(line.args[0])
    if len(values[1]) > 10000:
        raise line.error("regex too long (more than 10000 characters)", line.args[1])
    try:
        pattern = re.compile(values[1])
    except re.error as err:
        raise line.error(f"invalid regex {values[1]!r}: {err}", line.args[1]) from None
    level, show_first = "error", False
    for token in line.args[2:]:
        if token.text in LEVELS and level == "error" and not show_first:
            level = token.text
        elif token.text == "show_first" and not show_first:
            show_first = True
        else:
            raise line.error(f"unknown log level or option '{token.text}'", token)
    return Consolidation(pattern, every, line.args[0].text, level, show_first)


class Errors(Plugin):
    name = "errors"
    replays = TAKES_PART  # it acts on failed queries only, which are never replayed

    def __init__(self, rules: list[Consolidation]) -> None:
        self.rules = rules
        self.timers: list[asyncio.TimerHandle] = []

    async def serve(self, req: Request, next: Handler) -> Response:
        resp = await next(req)
        if resp.error is not None:
            req.no_replay()
            self.report(req, resp)
        return resp

    def report(self, req: Request, resp: Response) -> None:
        message = f"{resp.rcode} {req.qname} {dns.rdatatype.to_text(req.qtype)}: {resp.error}"
        for rule in self.rules:
            if rule.pattern.search(message):
                rule.count += 1
                if rule.show_first and rule.count == 1:
                    _emit(rule.level, message)
                return
        log.error("query_error", message=message)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for rule in self.rules:
            self._schedule(loop, rule)

    def _schedule(self, loop: asyncio.AbstractEventLoop, rule: Consolidation) -> None:
        def flush() -> None:
            if rule.count:
                _emit(
                    rule.level,
                    f"{rule.count} errors like '{rule.pattern.pattern}' occurred in last {rule.every_text}",
                )
                rule.count = 0
            self._schedule(loop, rule)

        self.timers.append(loop.call_later(rule.every, flush))

    async def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()


def _emit(level: str, message: str) -> None:
    getattr(log, level)("query_error", message=message)
