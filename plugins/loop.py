"""loop - detect a forwarding loop at start and stop the server (CoreDNS's ``loop``).

Syntax::

    loop

No arguments; once per server block. At start (and after each reload) the block sends itself
a probe, ``<random number>.<random number>.ZONE`` of type HINFO (ZONE: the block's first
zone), over UDP to its first listen address (its first ``bind`` address, or 127.0.0.1 when it
listens on every address) and port. If that query reaches ``loop`` more than twice, the
server's queries come back to it: ``loop`` logs the error ``loop_detected`` (the client and
listener it came through, the zone and the probe) and dnsfw stops with exit status 1, as
CoreDNS does (``Loop (127.0.0.1:55953 -> :1053) detected for zone "."``), instead of spending
a core on queries that circle for ever. The probe is tried for up to 30 seconds (2 s for an
answer, then 1 s before the next try) to give the server time to start; once a probe was
answered, ``loop`` counts nothing more (a query of death cannot stop the server later).

A loop is usually a ``forward`` to dnsfw itself (``forward . 127.0.0.1`` on port 53, or a
resolv.conf that lists a local address) or to a resolver that forwards back to dnsfw. dnsfw
refuses the first kind at setup anyway (a ``forward`` target that is one of dnsfw's own
listeners is a Corefile error, with or without ``loop``); ``loop`` catches the loops through
other servers.

Limitations (CoreDNS's): only a loop present at start, and only one the HINFO probe takes: a
stage before ``loop`` in ``plugins.ORDER`` that answers the probe itself (a ``firewall`` that
blocks it, a ``cache`` entry) hides the loop. ``loop`` takes part in replays: it does nothing
for any query but its probe.

Example::

    . {
        loop
        forward . 10.0.0.2
    }
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype
import structlog

from proxy import wire
from proxy.config import AppContext, SetupContext
from proxy.corefile import Directive
from proxy.names import text_to_wire, wire_to_text
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

log = structlog.get_logger("dnsfw.loop")

ONCE = True
TYPE_HINFO = int(dns.rdatatype.HINFO)
PROBE_FOR = 30.0  # seconds to keep trying the probe at start (CoreDNS)
PROBE_TIMEOUT = 2.0  # seconds for its answer (CoreDNS's dns.Exchange)
RETRY_AFTER = 1.0
SEEN_MAX = 2  # the probe passing more often than this is a loop


def setup(directive: Directive, ctx: SetupContext) -> Loop:
    if directive.args or directive.block is not None:
        raise directive.arg_error()
    block = ctx.block
    host = block.bind[0] if block.bind else "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return Loop(block.zones[0], host, block.keys[0].port, ctx.app)


class Loop(Plugin):
    name = "loop"
    replays = TAKES_PART  # nothing to replay: only its probe is looked at

    def __init__(self, zone: str, host: str, port: int, app: AppContext) -> None:
        self.zone = zone
        self.address = (host, port)
        self.app = app
        labels = f"{random.getrandbits(63)}.{random.getrandbits(63)}"
        self.qname = text_to_wire(labels if zone == "." else f"{labels}.{zone}")
        self.seen = 0
        self.off = False
        self.task: asyncio.Task[None] | None = None

    async def serve(self, req: Request, next: Handler) -> Response:
        if req.qtype == TYPE_HINFO and not self.off and req.qname_wire == self.qname:
            self.seen += 1
            if self.seen > SEEN_MAX:
                self.off = True
                self._detected(req)
                return req.reply(wire.SERVFAIL, source="loop", error="plugin/loop: loop detected")
        return await next(req)

    def _detected(self, req: Request) -> None:
        client = f"{req.client[0]}:{req.client[1]}"
        probe = f"HINFO {wire_to_text(self.qname)}"
        log.error(
            "loop_detected",
            zone=self.zone,
            client=client,
            listener=req.server,
            probe=probe,
            hint="a forward of this block, or a resolver it asks, sends queries back to dnsfw",
        )
        if self.app.fatal is not None:
            self.app.fatal(
                f'plugin/loop: Loop ({client} -> {req.server}) detected for zone "{self.zone}". '
                f'Query: "{probe}"'
            )

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        """Send the probe until it is answered (or for PROBE_FOR seconds), then stop counting."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROBE_FOR
        query = dns.message.make_query(wire_to_text(self.qname), TYPE_HINFO)
        host, port = self.address
        while loop.time() < deadline and not self.off:
            try:
                await dns.asyncquery.udp(query, host, port=port, timeout=PROBE_TIMEOUT)
                break
            except (dns.exception.DNSException, OSError):
                self.seen = 0  # not started yet, or no answer: count the next try afresh
                await asyncio.sleep(RETRY_AFTER)
        self.off = True

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
