"""bind - the addresses a server block listens on.

Syntax::

    bind ADDRESS|IFACE ... {
        except ADDRESS|IFACE ...
    }

Without ``bind`` a block listens on every IPv4 and IPv6 address. ADDRESS is an IPv4 or IPv6
address; IFACE a network interface name, which stands for all its addresses at start-up (and
at reload). Several ``bind`` lines in one block are merged; ``except`` removes addresses.
As CoreDNS advises: on one port, use ``bind`` in every block or in none.

Example::

    .:53 {
        bind 127.0.0.1 ::1
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token

SIOCGIFADDR = 0x8915


def setup(directive: Directive, ctx: SetupContext) -> None:
    if not directive.args:
        raise directive.arg_error()
    addresses = [a for token in directive.args for a in _resolve(token)]
    excluded: set[str] = set()
    for line in directive.block or ():
        if line.name.text != "except":
            raise line.unknown_property(("except",))
        if not line.args:
            raise line.arg_error()
        excluded.update(a for token in line.args for a in _resolve(token))
    block = ctx.block
    for address in addresses:
        if address not in excluded and address not in block.bind:
            block.bind.append(address)
    if not block.bind:
        raise directive.error("no address left to bind after 'except'")
    block.bind_token = directive.name
    return None


def _resolve(token: Token) -> list[str]:
    text = token.text
    try:
        return [str(ipaddress.ip_address(text))]
    except ValueError:
        pass
    addresses = interface_addresses(text)
    if addresses is None:
        raise CorefileError(
            token.file, token.line, f"not a valid IP address or interface name: '{text}'"
        )
    return addresses


def local_addresses() -> set[str]:
    """The addresses of every interface of this host (as :func:`interface_addresses`)."""
    return {a for _, name in socket.if_nameindex() for a in interface_addresses(name) or ()}


def interface_addresses(name: str) -> list[str] | None:
    """Every IPv4 and IPv6 address of interface ``name`` (None when there is no such interface)."""
    if name not in {n for _, n in socket.if_nameindex()}:
        return None
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            found.append(socket.inet_ntoa(raw[20:24]))
        except OSError:
            pass  # no IPv4 address
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == name:
                    addr = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
                    if not addr.is_link_local:  # would need a scope id to bind
                        found.append(str(addr))
    except OSError:
        pass
    return found
