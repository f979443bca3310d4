"""Routing: which server block of a listener answers a query (CoreDNS's rule).

The longest zone that the query name is in, or under, wins; a DS query goes to the most
distant non-root zone that matches (DS records live on the parent side of a delegation); no
zone: no block (the query is REFUSED). The server routes every query with :class:`Router`;
the admin API and ``dnsfw explain`` use :func:`routes`, so all three route alike. Nothing here
imports the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Block, ListenerKey

TYPE_DS = 43


class Router:
    """Zone map of one listener: the longest matching zone wins (CoreDNS's rule)."""

    __slots__ = ("zones", "only")

    def __init__(self, zones: dict[bytes, Block]) -> None:
        self.zones = zones
        # the common case, a single root block, needs no walk
        self.only = zones[b"\x00"] if len(zones) == 1 and b"\x00" in zones else None

    def route(self, qname: bytes, qtype: int) -> Block | None:
        if self.only is not None:
            return self.only
        zones = self.zones
        off = 0
        upward: Block | None = None
        while True:
            suffix = qname[off:] if off else qname
            block = zones.get(suffix)
            if block is not None:
                if qtype != TYPE_DS or suffix == b"\x00":
                    return upward or block
                upward = block  # DS belongs to the parent side: keep walking up
            length = qname[off]
            if length == 0:
                return upward
            off += length + 1


def routes(
    listeners: Mapping[ListenerKey, dict[bytes, Block]], qname: bytes, qtype: int
) -> list[tuple[ListenerKey, Block | None]]:
    """The block each listener of a configuration routes a query (wire name) to."""
    return [(key, Router(zones).route(qname, qtype)) for key, zones in listeners.items()]
