"""Discovery of Designated Resolvers (RFC 9462): the SVCB records of dnsfw's encrypted
listeners (RFC 9461 parameters), answered for ``_dns.resolver.arpa`` SVCB.

One record per ``tls://``, ``https://`` and ``quic://`` listener, in the order of the
Corefile: ``alpn=dot`` for DoT, ``alpn=h2,http/1.1 dohpath=/dns-query{?dns}`` for DoH and
``alpn=doq`` for DoQ, the
listener's ``port``, and ``ipv4hint``/``ipv6hint`` when the listener is bound to one address.
The target name is the first DNS name of the certificate's subjectAltName (the name clients
verify, and look up when there is no hint); a listener whose certificate names none is left
out. A client that follows RFC 9462's verified discovery also checks that the certificate
holds the IP address it sent the query to (an IP subjectAltName).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from . import wire
from .names import text_to_wire

RESOLVER_ARPA = text_to_wire("_dns.resolver.arpa")
TYPE_SVCB = 64
TTL = 300
DOH_PATH = b"/dns-query{?dns}"
# SvcParamKeys (RFC 9460, 9461)
ALPN, PORT, IPV4HINT, IPV6HINT, DOHPATH = 1, 3, 4, 6, 7
ALPNS = {"tls": (b"dot",), "https": (b"h2", b"http/1.1"), "quic": (b"doq",)}


def svcb(priority: int, target: str, transport: str, host: str, port: int) -> bytes:
    """One SVCB record of ``_dns.resolver.arpa`` for a listener."""
    params: list[tuple[int, bytes]] = []
    alpn = ALPNS[transport]
    params.append((ALPN, b"".join(bytes([len(a)]) + a for a in alpn)))
    params.append((PORT, struct.pack("!H", port)))
    if host:
        address = ipaddress.ip_address(host)
        params.append((IPV4HINT if address.version == 4 else IPV6HINT, address.packed))
    if transport == "https":
        params.append((DOHPATH, DOH_PATH))
    rdata = struct.pack("!H", priority) + text_to_wire(target)
    rdata += b"".join(struct.pack("!HH", key, len(value)) + value for key, value in params)
    return wire.rr(RESOLVER_ARPA, TYPE_SVCB, TTL, rdata)


def records(listeners: Iterable[tuple[str, str, int, tuple[str, ...]]]) -> tuple[bytes, ...]:
    """The SVCB records for ``(transport, host, port, certificate names)`` of the encrypted
    listeners (other transports are skipped)."""
    found: list[bytes] = []
    for transport, host, port, names in listeners:
        if transport in ALPNS and names:
            found.append(svcb(len(found) + 1, names[0], transport, host, port))
    return tuple(found)
