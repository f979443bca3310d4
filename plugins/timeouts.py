"""timeouts - how long the TCP listeners of a server block wait on a client.

Syntax::

    timeouts {
        read DURATION
        write DURATION
        idle DURATION
    }

``read`` (default 3s) is one deadline per message: a query must arrive whole within ``read``
of its first byte, however its bytes trickle in (a client sending a byte a second is cut off,
as CoreDNS sets one read deadline per message). ``write`` (default 5s) is one deadline per
reply: the client must take it within ``write`` of its writing, whatever it keeps sending. A
connection past either deadline is reset, which frees its ``-tcp-max-conns`` slot. ``idle``
(default 10s) closes a connection with no query in flight, no reply waiting and nothing
received for that long, one that never sent anything included. (CoreDNS gives the first
message ``read`` from the connection's start and later ones ``idle``; dnsfw gives every
message ``read`` from its first byte, and the time between messages ``idle``.) Each between
1s and 24h. It is a per-listener setting: with several blocks on one port, the first block's
values apply (as in CoreDNS). UDP is not affected. The deadlines are checked every half of
the shortest of them, at most every second, so a connection is closed up to that much later.

Example::

    .:53 {
        timeouts {
            idle 30s
        }
        forward . 127.0.0.1:5301
    }
"""

from __future__ import annotations

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.durations import parse_duration

ONCE = True
LIMITS = (1.0, 86400.0)


def setup(directive: Directive, ctx: SetupContext) -> None:
    if directive.args:
        raise directive.arg_error()
    if not directive.block:
        raise directive.error("timeouts requires at least one of read, write, idle")
    for line in directive.block:
        name = line.name.text
        if name not in ("read", "write", "idle"):
            raise line.unknown_property(("read", "write", "idle"))
        if len(line.args) != 1:
            raise line.arg_error()
        seconds = parse_duration(line.args[0])
        if not LIMITS[0] <= seconds <= LIMITS[1]:
            raise line.error(f"timeout {line.args[0].text} out of range (1s to 24h)", line.args[0])
        ctx.block.timeouts[name] = seconds
    return None
