"""cancel - give up a query that takes too long, as CoreDNS's ``cancel``.

Syntax::

    cancel [TIMEOUT]

**TIMEOUT** (a Go duration) defaults to ``5001ms``: DNS clients give up after 5 seconds, so
work past that is wasted. A query that the stages after ``cancel`` have not answered within
TIMEOUT is given up: what it waits for (an upstream exchange) is cancelled and it is answered
SERVFAIL (``errors`` runs inside ``cancel``: it does not see a query given up here). Errors:
``invalid duration: "X"``, ``invalid negative duration: "X"`` (zero too), more than one
argument.

A query answered at once (a cache hit, a local answer) costs nothing more; one that waits on
I/O runs under a deadline (:func:`proxy.pipeline.deadline`: one asyncio Task for it).

Examples::

    example.org {
        cancel
        whoami
    }

    example.org {
        cancel 1s
        whoami
    }
"""

from __future__ import annotations

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.pipeline import Handler, Plugin, deadline
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

DEFAULT_TIMEOUT = 5.001


def setup(directive: Directive, ctx: SetupContext) -> Cancel:
    args = directive.args
    if len(args) > 1 or directive.block is not None:
        raise directive.arg_error()
    if not args:
        return Cancel(DEFAULT_TIMEOUT)
    token = args[0]
    negative = token.text.startswith("-")
    try:
        seconds = parse_duration(Token(token.text.lstrip("-+"), token.file, token.line))
    except CorefileError:
        raise directive.error(f'invalid duration: "{token.text}"', token) from None
    if negative or seconds <= 0:
        raise directive.error(f'invalid negative duration: "{token.text}"', token)
    return Cancel(seconds)


class Cancel(Plugin):
    name = "cancel"
    replays = TAKES_PART

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def serve(self, req: Request, next: Handler) -> Response:
        try:
            return await deadline(next(req), self.timeout)
        except TimeoutError:
            return req.reply(wire.SERVFAIL, source="error", error="context deadline exceeded")
