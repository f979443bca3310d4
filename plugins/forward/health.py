"""Health of ``forward``'s upstreams.

A failed exchange (timeout, connection error) adds one to the upstream's ``fails``; any valid
reply sets it back to 0. With ``max_fails`` N > 0, an upstream with N or more consecutive
failures is *down*: queries skip it. The first failure starts a probe loop for that upstream
(unless ``health_check`` is 0 or ``max_fails`` is 0): right away and then every
``health_check`` interval, it sends ``DOMAIN IN NS`` (``.`` unless ``domain`` is given; RD set
unless ``no_rec``) over the upstream's transport (UDP; TCP with ``force_tcp``; TLS for
``tls://``), waiting at most min(1s, read_timeout) as CoreDNS's 1s health-check timeout. A
probe failure adds to ``fails`` and to ``coredns_proxy_healthcheck_failures_total``; any
reply (whatever its rcode) marks the upstream up and ends the loop.
"""

from __future__ import annotations

import asyncio

import structlog

from proxy import wire
from proxy.names import text_to_wire

from .options import ForwardConfig
from .upstream import Upstream

log = structlog.get_logger("dnsfw.forward")

PROBE_TIMEOUT = 1.0


class Prober:
    """Starts and runs the probe loops of one ``forward`` instance's upstreams."""

    def __init__(self, cfg: ForwardConfig) -> None:
        self.interval = cfg.health_check
        self.enabled = cfg.health_check > 0 and cfg.max_fails > 0
        self.qname = text_to_wire(cfg.health_domain)
        flags = wire.RD if cfg.health_rd else 0
        # the probe without its id (the exchange adds a fresh one): header, then the question
        self.tail = wire.TYPE_NS.to_bytes(2, "big") + wire.CLASS_IN.to_bytes(2, "big")
        self.body = (
            flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00" + self.qname + self.tail
        )
        self.timeout = min(PROBE_TIMEOUT, cfg.read_timeout)

    def failed(self, up: Upstream) -> None:
        """An exchange with ``up`` failed: count it and make sure a probe loop runs."""
        up.failed()
        if self.enabled and up.probe is None and not up.stopped:
            up.probe = up.loop.create_task(self.run(up))  # type: ignore[union-attr]

    async def run(self, up: Upstream) -> None:
        try:
            while not up.stopped:
                if up.stream_only:
                    result = await up.exchange_stream(
                        self.body, self.qname, self.tail, self.timeout
                    )
                else:
                    result = await up.ask_udp(self.body, self.qname, self.tail, self.timeout)
                if type(result) is bytes:
                    up.recovered()
                    return
                up.hc_failures.value += 1
                up.failed()
                await asyncio.sleep(self.interval)
        except Exception as exc:  # noqa: BLE001 - a probe bug must not end health checking silently
            log.error("health_check_failed", to=up.address, error=repr(exc))
        finally:
            up.probe = None
