"""counter - a plugin written against the contract in plugins/__init__.py, for the tests.

Syntax: ``counter``. Counts the answered queries of its block by rcode. Its serve has no
replay code: its per-query behaviour is an Effect it runs with ``req.run``.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect
from proxy.request import Request, Response


class CountRcode(Effect):
    __slots__ = ("tally", "rcode")

    def __init__(self, tally: Tally[int], rcode: int) -> None:
        self.tally = tally
        self.rcode = rcode

    def __call__(self, client: Any, start: float) -> None:
        self.tally[self.rcode] += 1


class Counter(Plugin):
    name = "counter"
    replays = TAKES_PART

    def __init__(self) -> None:
        self.tally: Tally[int] = Tally()

    async def serve(self, req: Request, next: Handler) -> Response:
        resp = await next(req)
        req.run(CountRcode(self.tally, resp.rcode))
        return resp


def setup(directive: Directive, ctx: SetupContext) -> Counter:
    if directive.args or directive.block:
        raise directive.arg_error()
    return Counter()
