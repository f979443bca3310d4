"""ratelimit - limit the queries per second each client may send (a token bucket per client).

Syntax::

    ratelimit [QPS] {
        burst N
        ipv4_prefix LENGTH
        ipv6_prefix LENGTH
        action refuse|drop
        exempt CIDR...
        max_clients N
    }

Off unless the directive is in a block; once per server block, for every query of the block
(UDP and TCP).

* **QPS** (20, AdGuard Home's default): queries per second a client may send on average; a
  decimal number above 0 (``0.5``: one query every two seconds).
* ``burst N`` (QPS, at least 1): queries a client may send at once above the average; an idle
  client's bucket refills to N at QPS tokens a second, and each query takes one.
* ``ipv4_prefix LENGTH`` (32) and ``ipv6_prefix LENGTH`` (64): clients whose addresses share
  this prefix share one bucket (``ipv4_prefix 24``, ``ipv6_prefix 56``: AdGuard Home's and
  BIND RRL's grouping; the defaults are Blocky's: one host, whose IPv6 addresses come and go
  within its /64).
* ``action`` (``refuse``): a query beyond the limit is answered REFUSED; ``drop`` sends nothing
  (the client times out and retries: cheaper for us, slower for a client that is only bursty).
* ``exempt CIDR...`` (several lines add up): addresses never limited, e.g. the monitoring
  host or a downstream resolver. ``whitelist`` is the same (CoreDNS's external ``ratelimit``).
* ``max_clients N`` (100000): buckets kept at most; when the table is full, buckets that
  refilled (idle clients) are forgotten, and all of them if that frees less than a quarter.

Errors name the file and line of the offending token (``ratelimit QPS must be a number above
0, not 'x'``, ``unknown property 'foo'``, ``exempt: invalid CIDR '10.0.0.0/33'``...).

Place in the chain (``plugins.ORDER``): right after ``prometheus`` and before ``errors`` and
``log``. A limited query is counted in CoreDNS's request metrics (the flood stays visible on
the dashboards), but costs no query-log line, no error line, no firewall decision, no cache
or upstream look-up: under a flood the limit sheds that work, and the log is not flooded.
Its only trace is the counter below.

Replays (:mod:`proxy.replay`): the decision depends on the client and the time, and replays
are keyed by the query's bytes for every client, so the bucket is a replay
:class:`~proxy.replay.Gate`: ``serve`` asks it with ``req.admit`` and every replay of a cached
answer asks it again for that query's client, so a replayed query is charged like any other.
A client beyond its limit is not answered by the replay: that query runs the chain, which
answers REFUSED (or drops it) and counts it; the replay stays for every other client. Cost:
one dict look-up and a few float operations per query, about 0.3 µs (timeit), against
11-13 µs of server CPU per replayed cache hit: ``bench/run.sh -p "cache:hit ratelimit:hit"``
measured no difference beyond the run's noise (1.05x the QPS, 0.90x the CPU per query, on
a shared 2-core machine). A limited query costs a chain run up to this stage (a parse and two
stages), much less than a miss. One inexactness: when a replay's gate let a query through and its
cached answer turns out to have expired, the chain asks the gate again, so that query takes
two tokens (at most once per cached answer's lifetime).

Metrics: ``dnsfw_ratelimit_limited_total{action="refuse"|"drop"}``, queries beyond the limit.

Examples::

    . {
        prometheus
        ratelimit 50 {
            burst 100
            exempt 10.0.0.2/32 fd00::/64
        }
        cache
        forward . 169.254.169.253
    }

    . {
        ratelimit 20 {
            ipv4_prefix 24
            ipv6_prefix 56
            action drop
        }
        forward . 9.9.9.9
    }
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.metrics import Child
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Gate
from proxy.request import Request, Response

ONCE = True
DEFAULT_QPS = 20.0
DEFAULT_MAX_CLIENTS = 100_000
ACTIONS = ("refuse", "drop")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Bucket:
    """One client's (or prefix's) tokens at monotonic time ``stamp``."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


EXEMPT = Bucket(math.inf, 0.0)  # the bucket of every exempt address: never asked


class Limiter(Gate):
    """The buckets of one ``ratelimit``: ``limiter(client, now)`` takes a token from the
    client's bucket, False when it has none (the query is beyond the limit)."""

    __slots__ = ("rate", "burst", "shifts", "exempt", "max_clients", "by_host", "by_prefix")

    def __init__(
        self,
        rate: float,
        burst: float,
        prefixes: tuple[int, int],
        exempt: tuple[Network, ...],
        max_clients: int,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.shifts = (32 - prefixes[0], 128 - prefixes[1])  # bits dropped from an address
        self.exempt = exempt
        self.max_clients = max_clients
        self.by_host: dict[str, Bucket] = {}  # the bucket of each address seen (a memo)
        self.by_prefix: dict[tuple[int, int], Bucket] = {}

    def __call__(self, client: Any, now: float) -> bool:
        bucket = self.by_host.get(client[0])
        if bucket is None:
            bucket = self._bucket(client[0], now)
        if bucket is EXEMPT:
            return True
        tokens = bucket.tokens + (now - bucket.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket.stamp = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return True
        bucket.tokens = tokens
        return False

    def _bucket(self, host: str, now: float) -> Bucket:
        """The bucket of an address not seen yet (its prefix's, or a new full one)."""
        if len(self.by_host) >= self.max_clients:
            self._prune(now)
        address = ipaddress.ip_address(host.partition("%")[0])
        if any(address in network for network in self.exempt):
            bucket = EXEMPT
        else:
            family = address.version == 6
            key = (family, int(address) >> self.shifts[family])
            bucket = self.by_prefix.get(key)  # type: ignore[assignment]
            if bucket is None:
                bucket = self.by_prefix[key] = Bucket(self.burst, now)
        self.by_host[host] = bucket
        return bucket

    def _prune(self, now: float) -> None:
        """Forget idle clients (their buckets refilled): a new bucket would be the same."""
        self.by_host.clear()
        rate, burst = self.rate, self.burst
        active = {
            key: bucket
            for key, bucket in self.by_prefix.items()
            if bucket.tokens + (now - bucket.stamp) * rate < burst
        }
        self.by_prefix = active if len(active) < self.max_clients * 3 // 4 else {}


class RateLimit(Plugin):
    name = "ratelimit"
    replays = TAKES_PART  # as a Gate: replays ask it for each client (see the docstring)

    def __init__(self, limiter: Limiter, drop: bool, limited: Child) -> None:
        self.limiter = limiter
        self.drop = drop
        self.limited = limited

    async def serve(self, req: Request, next: Handler) -> Response:
        if req.admit(self.limiter):
            return await next(req)
        self.limited.value += 1
        if self.drop:
            return req.drop()
        return req.reply(wire.REFUSED, source=self.name)


# --- setup -----------------------------------------------------------------------------------


def setup(directive: Directive, ctx: SetupContext) -> RateLimit:
    if len(directive.args) > 1:
        raise directive.arg_error()
    qps = _number(directive.args[0], "ratelimit QPS") if directive.args else DEFAULT_QPS
    burst: float | None = None
    prefixes = [32, 64]
    action = "refuse"
    exempt: list[Network] = []
    max_clients = DEFAULT_MAX_CLIENTS
    for line in directive.block or ():
        name = line.name.text
        if line.block is not None:
            raise line.arg_error()
        if name in ("exempt", "whitelist"):
            if not line.args:
                raise line.arg_error()
            exempt.extend(_network(token, name) for token in line.args)
            continue
        if len(line.args) != 1:
            raise line.arg_error() if name in OPTIONS else line.unknown_property(PROPERTIES)
        token = line.args[0]
        if name == "burst":
            burst = float(_integer(token, "burst", 1))
        elif name in ("ipv4_prefix", "ipv6_prefix"):
            family = name == "ipv6_prefix"
            prefixes[family] = _integer(token, name, 0, 128 if family else 32)
        elif name == "action":
            if token.text not in ACTIONS:
                raise _err(token, f"action must be refuse or drop, not '{token.text}'")
            action = token.text
        elif name == "max_clients":
            max_clients = _integer(token, "max_clients", 1)
        else:
            raise line.unknown_property(PROPERTIES)
    limiter = Limiter(
        qps,
        burst if burst is not None else max(float(math.ceil(qps)), 1.0),
        (prefixes[0], prefixes[1]),
        tuple(exempt),
        max_clients,
    )
    limited = ctx.app.metrics.counter(
        "dnsfw_ratelimit_limited_total",
        "Queries beyond their client's rate limit, by what was done with them.",
        ("action",),
    ).labels(action)
    return RateLimit(limiter, action == "drop", limited)  # type: ignore[arg-type]


OPTIONS = ("burst", "ipv4_prefix", "ipv6_prefix", "action", "max_clients")
PROPERTIES = (*OPTIONS, "exempt", "whitelist")


def _number(token: Token, what: str) -> float:
    try:
        value = float(token.text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise _err(token, f"{what} must be a number above 0, not '{token.text}'")
    return value


def _integer(token: Token, what: str, low: int, high: int | None = None) -> int:
    text = token.text
    value = int(text) if text.isascii() and text.isdigit() else -1
    if value < low or (high is not None and value > high):
        limits = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _err(token, f"{what} must be an integer {limits}, not '{text}'")
    return value


def _network(token: Token, what: str) -> Network:
    try:
        return ipaddress.ip_network(token.text, strict=False)
    except ValueError:
        raise _err(token, f"{what}: invalid CIDR '{token.text}'") from None


def _err(token: Token, message: str) -> CorefileError:
    return CorefileError(token.file, token.line, message)
