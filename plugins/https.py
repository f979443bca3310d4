"""https - options of a server block's DNS-over-HTTPS listeners.

Syntax::

    https {
        max_connections N
        trusted_proxies CIDR...
    }

``max_connections`` (default 200, as CoreDNS's) bounds the open connections of an
``https://`` listener (0: only ``-tcp-max-conns``, which bounds it anyway); more are reset
at once. ``trusted_proxies`` lists the addresses (CIDRs; a bare address is a /32 or /128) of
HTTP proxies in front of dnsfw: only for a connection from one of them is the client of a
query (in rules, logs, rate limits) taken from ``X-Forwarded-For``, as the right-most address
in it that is not a trusted proxy; from any other peer the header is ignored. Without it the
client is always the connection's peer.

As CoreDNS: once per block; with several blocks on one listener, the first block's apply.
Requests, limits and answers are described in README, "Encrypted DNS".

Example::

    https://.:443 {
        tls /etc/dnsfw/dns.crt /etc/dnsfw/dns.key
        https {
            trusted_proxies 10.0.0.5 fd00::/64
        }
        forward . 127.0.0.1:5301
    }
"""

from __future__ import annotations

import ipaddress

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.doh import DoHOptions

ONCE = True


def setup(directive: Directive, ctx: SetupContext) -> None:
    if directive.args:
        raise directive.arg_error()
    options = DoHOptions()
    proxies = []
    for line in directive.block or ():
        name = line.name.text
        if name == "max_connections":
            if len(line.args) != 1 or not line.args[0].text.isdigit():
                raise line.error("max_connections needs a number (0: no bound of its own)")
            options.max_connections = int(line.args[0].text)
        elif name == "trusted_proxies":
            if not line.args:
                raise line.arg_error()
            for token in line.args:
                try:
                    proxies.append(ipaddress.ip_network(token.text, strict=False))
                except ValueError:
                    raise line.error(f"not an address or CIDR: '{token.text}'", token) from None
        else:
            raise line.unknown_property(("max_connections", "trusted_proxies"))
    options.trusted_proxies = tuple(proxies)
    ctx.block.doh = options
    return None
