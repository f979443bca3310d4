"""``fallthrough [ZONES...]``, as CoreDNS's ``plugin/pkg/fall`` reads and applies it.

A plugin that answers from its own data (``hosts``, ``file``, ``template``) passes a query it
has no answer for to the next plugin only when the query name is in one of these zones; no
ZONES means every name (the root zone). ZONES are read as server block keys are
(:func:`proxy.names.zones`: a CIDR is its reverse zones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .corefile import Token, zones_of
from .names import in_zones, text_to_wire


@dataclass(frozen=True, slots=True)
class Fall:
    """The zones a plugin falls through for (wire names); empty: it never does."""

    zones: frozenset[bytes] = frozenset()

    def through(self, qname: bytes) -> bool:
        """Whether a query for the wire name ``qname`` goes on to the next plugin."""
        return bool(self.zones) and in_zones(qname, self.zones)


NEVER = Fall()


def from_args(args: Sequence[Token]) -> Fall:
    """The ``fallthrough`` line's zones (none: the root)."""
    if not args:
        return Fall(frozenset({b"\x00"}))
    return Fall(frozenset(text_to_wire(zone) for token in args for zone in zones_of(token)))
