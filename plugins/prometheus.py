"""prometheus - Prometheus metrics of the DNS traffic, as CoreDNS's ``prometheus`` (``metrics``).

Syntax::

    prometheus [ADDRESS] {
        runtime_metrics
    }

``GET /metrics`` on ADDRESS (default ``localhost:9153``, CoreDNS's default; ``:9153`` for
every address) serves every metric of the process in the Prometheus text format, or
OpenMetrics when the scraper asks for it (prometheus-client's content negotiation):
CoreDNS's metrics of every plugin (``coredns_cache_*``, ``coredns_proxy_*``,
``coredns_forward_*``, ``coredns_reload_*``, ``coredns_panics_total``,
``coredns_build_info``, ``coredns_plugin_enabled``), dnsfw's own (``dnsfw_firewall_*``,
``dnsfw_log_*``, ...) and the process collector's ``process_*`` series; ``runtime_metrics``
is accepted for compatibility (they are always exported). Counters survive reloads
(:mod:`proxy.metrics`), so dashboards see no resets.

As a chain stage (its place in ``plugins.ORDER``, outside ``log`` and the firewall) it counts
the queries of its server block as CoreDNS's metrics plugin does, with the same names and
labels, so CoreDNS dashboards work unchanged:

* ``coredns_dns_requests_total{server,zone,view,proto,family,type}``
* ``coredns_dns_responses_total{server,zone,view,rcode,plugin}``
* ``coredns_dns_request_duration_seconds{server,zone,view}`` (buckets 0.25 ms x 2^k)
* ``coredns_dns_request_size_bytes`` / ``coredns_dns_response_size_bytes{server,zone,view,proto}``
* ``coredns_dns_do_requests_total{server,view,zone}``

``server`` is the listener (``dns://:53``, ``dns://127.0.0.1:53``), ``zone`` the block's zone
the name falls in, ``view`` always empty, ``proto`` the client's transport: ``udp``,
``tcp``, ``tls`` (DNS over TLS), ``https`` (DNS over HTTPS) or ``quic`` (DNS over QUIC)
(CoreDNS says ``tcp`` for DoT and DoH and ``udp`` for DoQ, from the type of the connection's
address; dnsfw tells them apart, so a dashboard summing over ``proto`` counts the same), ``family`` 1 (IPv4) or 2 (IPv6), ``type`` the query
type among CoreDNS's list (A, AAAA, MX, SOA, CNAME, PTR, TXT, NS, SRV, DS, DNSKEY, RRSIG,
NSEC, NSEC3, HTTPS, IXFR, AXFR, ANY) or ``other``. ``plugin`` names the plugin that made the
reply, as CoreDNS documents it: ``forward`` (an upstream's answer), ``cache``, ``firewall``,
and each stage that answers or replaces the answer itself (``acl``, ``dns64``, ``rewrite``
for a ``cname`` or ``rcode`` rule, ``whoami``, ``ratelimit``...: a stage's Response source is
its plugin name); empty when the server wrote it (an error: SERVFAIL from a failed
``forward``, no next plugin). A stage that only edits a reply on its way out (``rewrite``
name rules, ``header``, ``minimal``) leaves the label of the plugin that made it. A query a
stage dropped (``ratelimit`` with ``drop``) counts as a request with no response. The cost per
query is a few dict look-ups and integer additions on children kept by this stage.

The listener is process-wide, kept across reloads, and may share its address with
``health``, ``ready`` and ``admin`` (:mod:`proxy.http`). Once per server block.

Example::

    . {
        prometheus :9153
        firewall { ... }
        cache
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import dns.rcode
from aiohttp import web

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.http import add_site, parse_address, refuse_unless_get
from proxy.metrics import Child, HistogramChild, Metric, Registry, exposition, exposition_registry
from proxy.names import longest_zone, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect
from proxy.request import Request, Response

ONCE = True
DEFAULT_ADDRESS = "localhost:9153"
EXPOSITION_KEY = "prometheus.exposition"  # the prometheus-client registry in ctx.app.shared

# CoreDNS's plugin/pkg/response size buckets
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
TYPE_CODES = {"A": 1, "AAAA": 28, "MX": 15, "SOA": 6, "CNAME": 5, "PTR": 12, "TXT": 16, "NS": 2,
              "SRV": 33, "DS": 43, "DNSKEY": 48, "RRSIG": 46, "NSEC": 47, "NSEC3": 50,
              "HTTPS": 65, "IXFR": 251, "AXFR": 252, "ANY": 255}  # fmt: skip
TYPE_INDEX = {code: i + 1 for i, code in enumerate(TYPE_CODES.values())}  # 0 is "other"
TYPE_LABELS = ("other", *TYPE_CODES)
# Request.transport -> its bits in a requests key (type index << 4 | proto << 1 | ipv6)
PROTO_INDEX = {"udp": 0, "tcp": 1, "tls": 2, "https": 3, "quic": 4}
_monotonic = time.monotonic
# the `plugin` label of a reply whose Response.source is not its maker's plugin name
SOURCE_PLUGIN = {"upstream": "forward", "server": "", "error": ""}


@dataclass(frozen=True)
class MetricsSite:
    name: ClassVar[str] = "prometheus"
    prefix: ClassVar[str] = "/metrics"

    async def handle(self, request: web.BaseRequest, runtime: Any) -> web.StreamResponse:
        refusal = refuse_unless_get(request, self.prefix)
        if refusal is not None:
            return refusal
        exposed = runtime.shared.get(EXPOSITION_KEY)
        if exposed is None:
            exposed = runtime.shared[EXPOSITION_KEY] = exposition_registry(runtime.metrics)
        body, content_type = exposition(exposed, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})


class Series:
    """The children of one (server, zone): found with one dict look-up per query."""

    __slots__ = ("labels", "requests", "responses", "duration", "do", "sizes", "families")

    def __init__(self, labels: tuple[str, str, str], families: dict[str, Metric]) -> None:
        server, zone, view = labels
        self.labels = labels
        self.requests: dict[int, Child] = {}  # type index << 4 | proto << 1 | ipv6
        self.responses: dict[tuple[int, str], Child] = {}
        self.duration: HistogramChild = families["duration"].labels(*labels)  # type: ignore[assignment]
        self.do: Child = families["do"].labels(server, view, zone)  # type: ignore[assignment]
        self.families = families
        # (request size, response size) by proto: udp and tcp at once, as CoreDNS shows them;
        # the encrypted transports once they are used
        self.sizes: dict[str, tuple[HistogramChild, HistogramChild]] = {}
        for proto in ("udp", "tcp"):
            self.size_children(proto)

    def size_children(self, proto: str) -> tuple[HistogramChild, HistogramChild]:
        children = (
            self.families["req_size"].labels(*self.labels, proto),
            self.families["resp_size"].labels(*self.labels, proto),
        )
        self.sizes[proto] = children  # type: ignore[assignment]
        return children  # type: ignore[return-value]


class Prometheus(Plugin):
    name = "prometheus"
    replays = TAKES_PART

    def __init__(self, zones: tuple[str, ...], metrics: Registry) -> None:
        self.zones = {text_to_wire(z): z for z in zones}
        self.zone = zones[0] if len(zones) == 1 else None  # a single zone needs no match
        self.families = _families(metrics)
        self.series: dict[tuple[str, str], Series] = {}

    async def serve(self, req: Request, next: Handler) -> Response:
        resp = await next(req)
        zone = self.zone or self._zone(req.qname_wire)
        series = self.series.get((req.server, zone)) or self._series(req.server, zone)
        rkey = (resp.rcode, resp.source)
        req.run(
            Count(
                self,
                series,
                TYPE_INDEX.get(req.qtype, 0) << 4 | PROTO_INDEX[req.transport] << 1,
                req.transport,
                series.do if req.do else None,
                len(req.wire),
                len(resp.wire),
                (series.responses.get(rkey) or self._response_child(series, rkey))
                if resp.wire
                else None,  # dropped (Request.drop): a request with no response
            )
        )
        return resp

    def _zone(self, qname: bytes) -> str:
        """The longest of the block's zones that ``qname`` is in (routing chose this block)."""
        zone = longest_zone(qname, self.zones)
        return self.zones[zone] if zone is not None else "."

    def _series(self, server: str, zone: str) -> Series:
        series = self.series[(server, zone)] = Series((server, zone, ""), self.families)
        return series

    def _request_child(self, series: Series, key: int, proto: str) -> Child:
        server, zone, view = series.labels
        family = "2" if key & 1 else "1"
        child = self.families["requests"].labels(
            server, zone, view, proto, family, TYPE_LABELS[key >> 4]
        )
        series.requests[key] = child  # type: ignore[assignment]
        return child  # type: ignore[return-value]

    def _response_child(self, series: Series, rkey: tuple[int, str]) -> Child:
        rcode, source = rkey
        try:
            rcode_text = dns.rcode.to_text(dns.rcode.Rcode(rcode))
        except ValueError:
            rcode_text = str(rcode)
        child = self.families["responses"].labels(
            *series.labels, rcode_text, SOURCE_PLUGIN.get(source, source)
        )
        series.responses[rkey] = child  # type: ignore[assignment]
        return child  # type: ignore[return-value]


class Count(Effect):
    """The CoreDNS request and response metrics of one answered query: everything but the
    client's address family and the duration is fixed by the question and the reply."""

    __slots__ = ("prometheus", "series", "key", "transport", "by_family", "do", "sizes", "answered")

    def __init__(
        self,
        prometheus: Prometheus,
        series: Series,
        key: int,
        transport: str,
        do: Child | None,
        req_len: int,
        resp_len: int,
        answered: Child | None,
    ) -> None:
        self.prometheus = prometheus
        self.series = series
        self.key = key  # the requests key without the client's family
        self.transport = transport
        # IPv4 and IPv6 clients' requests series, looked up (made) when first needed
        self.by_family: list[Child | None] = [None, None]
        self.do = do
        req_size, resp_size = series.sizes.get(transport) or series.size_children(transport)
        self.sizes = (req_size, req_len, resp_size, resp_len)
        self.answered = answered

    def __call__(self, client: Any, start: float) -> None:
        family = ":" in client[0]
        child = self.by_family[family]
        if child is None:
            key = self.key | family
            child = self.series.requests.get(key) or self.prometheus._request_child(
                self.series, key, self.transport
            )
            self.by_family[family] = child
        child.value += 1
        if self.do is not None:
            self.do.value += 1
        req_size, req_len, resp_size, resp_len = self.sizes
        req_size.observe(req_len)
        self.series.duration.observe(_monotonic() - start)
        answered = self.answered
        if answered is not None:
            resp_size.observe(resp_len)
            answered.value += 1


def _families(metrics: Registry) -> dict[str, Metric]:
    labels = ("server", "zone", "view")
    return {
        "requests": metrics.counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            (*labels, "proto", "family", "type"),
        ),
        "responses": metrics.counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            (*labels, "rcode", "plugin"),
        ),
        "duration": metrics.histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            labels,
        ),
        "req_size": metrics.histogram(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            (*labels, "proto"),
            SIZE_BUCKETS,
        ),
        "resp_size": metrics.histogram(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            (*labels, "proto"),
            SIZE_BUCKETS,
        ),
        "do": metrics.counter(
            "coredns_dns_do_requests_total",
            "Counter of DNS requests with DO bit set per zone.",
            ("server", "view", "zone"),
        ),
    }


def setup(directive: Directive, ctx: SetupContext) -> Prometheus:
    args = directive.args
    if len(args) > 1:
        raise directive.arg_error()
    for line in directive.block or ():
        if line.name.text != "runtime_metrics":
            raise line.unknown_property(("runtime_metrics",))
        if line.args:
            raise line.arg_error()
    address = parse_address(
        args[0].text if args else DEFAULT_ADDRESS, args[0] if args else None, directive
    )
    add_site(ctx.app, directive, address, MetricsSite())
    return Prometheus(ctx.block.zones, ctx.app.metrics)
