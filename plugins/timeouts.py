"""timeouts - how long the TCP listeners of a server block wait on a client.

Syntax::

    timeouts {
        read DURATION
        write DURATION
        idle DURATION
    }

``idle`` (default 10s) closes a TCP connection with no query in flight and nothing received
for that long. ``read`` (default 3s) bounds the time a client may take to send the rest of a
query it started; ``write`` (default 5s) the time a reply may wait to be taken by the client.
Each between 1s and 24h. It is a per-listener setting: with several blocks on one port, the
first block's values apply (as in CoreDNS). UDP is not affected.

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
