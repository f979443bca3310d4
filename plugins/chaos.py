"""chaos - answer CH-class TXT queries for the server's version, authors and host name, as
CoreDNS's ``chaos``.

Syntax::

    chaos [VERSION] [AUTHORS...]

* **VERSION** is the version to return; default ``dnsfw-<version>`` (``dnsfw-0.1.0``).
* **AUTHORS** are the authors to return; default ``dnsfw``. Given several times, an author
  is returned once; they are kept sorted.

Each text is cut to 255 bytes (one TXT string). No block (``unknown property 'X'``).

A TXT query of class CH (CHAOS) for one of these names is answered at once, with TTL 0,
class CH, NOERROR, no AA or RA:

* ``version.bind.``, ``version.server.``: VERSION;
* ``authors.bind.``: one TXT record per author, in a new random order each time;
* ``hostname.bind.``, ``id.server.``: the host name (``localhost`` when it cannot be read).

Any other query (another name, type or class) goes on to the next plugin. dnsfw refuses
queries of a class other than IN before any plugin sees them, except for blocks with
``chaos``, which take CH queries too (so the next plugin, such as ``forward``, gets the ones
``chaos`` does not answer, as in CoreDNS). Make sure the block gets the queries: its zones
must cover ``version.bind``, ``version.server``, ``authors.bind``, ``hostname.bind`` and
``id.server`` (``.`` does). Version answers are replayed; the others are made per query.

Examples::

    version.bind version.server authors.bind hostname.bind id.server {
        chaos CoreDNS-001 info@coredns.io
    }

    . {
        chaos CoreDNS-001 info@coredns.io
    }

``dig @localhost CH TXT version.bind`` then answers ``version.bind. 0 CH TXT "CoreDNS-001"``.
"""

from __future__ import annotations

import random
import socket

import dns.rdataclass
import dns.rdatatype

from proxy import __version__, wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.names import text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

CLASS_CH = int(dns.rdataclass.CH)
TYPE_TXT = int(dns.rdatatype.TXT)
DEFAULT_VERSION = f"dnsfw-{__version__}"
DEFAULT_AUTHORS = ("dnsfw",)
VERSION_NAMES = frozenset(text_to_wire(n) for n in ("version.bind.", "version.server."))
HOSTNAME_NAMES = frozenset(text_to_wire(n) for n in ("hostname.bind.", "id.server."))
AUTHORS_NAME = text_to_wire("authors.bind.")


def setup(directive: Directive, ctx: SetupContext) -> Chaos:
    args = directive.values
    for line in directive.block or ():
        raise line.unknown_property()
    version = args[0] if args else DEFAULT_VERSION
    authors = tuple(sorted(set(args[1:]))) if len(args) > 1 else DEFAULT_AUTHORS
    return Chaos(version, authors)


def txt(text: str) -> bytes:
    """A TXT record owned by the query name, class CH, TTL 0, with ``text`` cut to 255 bytes."""
    data = text.encode()[:255]
    return wire.rr(wire.QNAME_PTR, TYPE_TXT, 0, bytes((len(data),)) + data, CLASS_CH)


class Chaos(Plugin):
    name = "chaos"
    replays = TAKES_PART
    qclasses = frozenset({CLASS_CH})

    def __init__(self, version: str, authors: tuple[str, ...]) -> None:
        self.version = txt(version)
        self.authors = [txt(a) for a in authors]

    async def serve(self, req: Request, next: Handler) -> Response:
        if req.qclass != CLASS_CH or req.qtype != TYPE_TXT:
            return await next(req)
        name = req.qname_wire
        if name in VERSION_NAMES:
            return req.fixed_reply(wire.NOERROR, flags=0, answer=(self.version,), source=self.name)
        if name in HOSTNAME_NAMES:
            return req.reply(wire.NOERROR, flags=0, answer=(txt(hostname()),), source=self.name)
        if name == AUTHORS_NAME:
            authors = random.sample(self.authors, len(self.authors))
            return req.reply(wire.NOERROR, flags=0, answer=tuple(authors), source=self.name)
        return await next(req)


def hostname() -> str:
    """The host name, as Go's os.Hostname (``localhost`` when it cannot be read)."""
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"
