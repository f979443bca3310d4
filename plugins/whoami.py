"""whoami - answers every query with the client's address and port.

Syntax::

    whoami

No arguments. Every query that reaches it gets an authoritative (AA) reply with an empty
answer section and two additional records: an A (or AAAA) record with the client's IP, owned
by the query name, and ``_udp.<qname>`` (or ``_tcp``) SRV 0 0 <client port> ``.``, both with
TTL 0. Useful to check that a listener and its routing work.

Example::

    .:1053 {
        whoami
    }
"""

from __future__ import annotations

import ipaddress
import struct

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response


def setup(directive: Directive, ctx: SetupContext) -> Whoami:
    if directive.args or directive.block is not None:
        raise directive.arg_error()
    return Whoami()


class Whoami(Plugin):
    name = "whoami"
    replays = TAKES_PART  # its answers name the client: never offered for replay

    async def serve(self, req: Request, next: Handler) -> Response:
        host, port = req.client[0], req.client[1]
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if address.version == 4:
            ip_rr = wire.rr(wire.QNAME_PTR, wire.TYPE_A, 0, address.packed)
        else:
            ip_rr = wire.rr(wire.QNAME_PTR, wire.TYPE_AAAA, 0, address.packed)
        proto = b"\x04_udp" if req.transport == "udp" else b"\x04_tcp"  # DoT, DoH: TCP
        srv = wire.rr(
            proto + wire.QNAME_PTR, wire.TYPE_SRV, 0, struct.pack("!HHH", 0, 0, port) + b"\x00"
        )
        return req.reply(wire.NOERROR, flags=wire.AA, additional=(ip_rr, srv), source=self.name)
