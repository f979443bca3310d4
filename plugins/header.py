"""header - sets or clears header flags of queries and of responses, as CoreDNS's ``header``.

Syntax::

    header {
        SELECTOR ACTION FLAGS...
        SELECTOR ACTION FLAGS...
    }

* **SELECTOR**: ``query`` (the flags of the query the stages behind this one see, and that
  ``forward`` sends) or ``response`` (the flags of every reply that comes back through it).
* **ACTION**: ``set`` or ``clear``; the lines apply in order, so the last one that names a
  flag wins.
* **FLAGS**: ``aa`` (authoritative answer), ``ra`` (recursion available), ``rd`` (recursion
  desired).

At least one rule is needed. Errors are CoreDNS's: ``setting up rule: invalid
selector=X should be query or response``, ``setting up rule: no flag action provided``,
``setting up rule: invalid length for flags, at least one should be provided``, ``setting up
rule: unknown flag action=X, should be set or clear``, ``setting up rule:
unknown/unsupported flag=X``.

Place in the chain (``plugins.ORDER``): after ``cache``, so a cached reply is stored as the
upstream sent it and the flags are changed on the way out of the cache; every reply through
it, cache hits replayed without the chain included, gets the same flags (the response edit is
put on the replay's answer, :class:`proxy.replay.Reshaped`: two byte operations).

Examples::

    . {
        header {
            response set ra
        }
    }

    . {
        header {
            response set ra aa
            response clear rd
        }
    }

    . {
        header {
            query set rd
        }
    }
"""

from __future__ import annotations

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import requery, reshaped, set_flags
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

FLAGS = {"aa": wire.AA, "ra": wire.RA, "rd": wire.RD}


class Masks:
    """The bits a list of rules sets and clears, the last rule naming a flag winning."""

    def __init__(self) -> None:
        self.set = 0
        self.clear = 0

    def add(self, bit: int, state: bool) -> None:
        if state:
            self.set, self.clear = self.set | bit, self.clear & ~bit
        else:
            self.set, self.clear = self.set & ~bit, self.clear | bit

    def __bool__(self) -> bool:
        return bool(self.set or self.clear)

    def apply(self, data: bytes) -> bytes:
        return set_flags(data, self.set, self.clear)


def setup(directive: Directive, ctx: SetupContext) -> Header:
    if directive.args:
        raise directive.arg_error()
    masks = {"query": Masks(), "response": Masks()}
    rules = 0
    for line in directive.block or ():
        selector = line.name.text.lower()
        if selector not in masks:
            raise line.error(
                f"setting up rule: invalid selector={selector} should be query or response"
            )
        args = line.values
        action = args[0] if args else ""
        flags = args[1:]
        if not action:
            raise line.error("setting up rule: no flag action provided")
        if not flags:
            raise line.error(
                "setting up rule: invalid length for flags, at least one should be provided"
            )
        if action.lower() not in ("set", "clear"):
            raise line.error(
                f"setting up rule: unknown flag action={action.lower()}, should be set or clear"
            )
        for flag in flags:
            bit = FLAGS.get(flag.lower())
            if bit is None:
                raise line.error(f"setting up rule: unknown/unsupported flag={flag.lower()}")
            masks[selector].add(bit, action.lower() == "set")
            rules += 1
    if not rules:
        raise directive.arg_error()
    return Header(masks["query"], masks["response"])


class Header(Plugin):
    name = "header"
    replays = TAKES_PART  # the response edit goes on the replay's answer (proxy.message)

    def __init__(self, query: Masks, response: Masks) -> None:
        self.query = query
        self.response = response

    async def serve(self, req: Request, next: Handler) -> Response:
        if self.query:
            req = requery(req, self.query.apply(req.wire))
        resp = await next(req)
        if not self.response:
            return resp
        return reshaped(resp, self.response.apply, names=False)
