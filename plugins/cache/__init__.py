"""cache - a CoreDNS-compatible answer cache, replayed at wire level.

Syntax::

    cache [TTL] [ZONES...] {
        success CAPACITY [TTL] [MINTTL]
        denial CAPACITY [TTL] [MINTTL]
        prefetch AMOUNT [[DURATION] [PERCENTAGE%]]
        serve_stale [DURATION] [immediate|verify]
        servfail DURATION
        disable success|denial [ZONES...]
        keepttl
    }

Once per server block. Replies for names in ZONES (default: the block's zones) are cached;
queries for other names go straight to the next plugin. ZONES are read as server block keys
are (``proxy.names``): ``straße.de`` is ``xn--strae-oqa.de.``, ``10.0.0.0/27`` the 32 zones
``0.0.0.10.in-addr.arpa.`` .. ``31.0.0.10.in-addr.arpa.``.

* **TTL** (the first argument, when it is an integer): the maximum cache time of both
  caches, in seconds (> 0, else ``cache TTL can not be zero or negative: N``). Defaults: 3600
  for answers (success), 1800 for denials (NXDOMAIN, NODATA, SERVFAIL).
* ``success`` / ``denial CAPACITY [TTL] [MINTTL]``: the capacity of that cache, its maximum
  and its minimum TTL (default 5; ``cache min TTL can not be negative: N``). A capacity is
  rounded as CoreDNS rounds it (256 shards of CAPACITY/256 entries, at least 4 each): the
  default 10000 gives 9984 entries, and anything below 1024 gives 1024.
* ``prefetch AMOUNT [[DURATION] [PERCENTAGE%]]``: an entry hit AMOUNT times, no two hits more
  than DURATION (default 1m) apart, is fetched again in the background once at most
  PERCENTAGE (10 to 90, default 10%) of its TTL is left (so at the latest 1 s before it
  expires), while clients keep getting it from the cache.
* ``serve_stale [DURATION] [immediate|verify]``: an expired entry is still served, for up to
  DURATION (default 1h) after it expired, with TTL 0. ``immediate`` (default) answers from it
  at once and refreshes it in the background; ``verify`` asks the next plugin first and
  answers stale only when that fails or returns something other than NOERROR or NXDOMAIN.
* ``servfail DURATION``: how long a SERVFAIL (or NOTIMP) reply is cached, default 5s, at most
  5m (``caching SERVFAIL responses over 5 minutes is not permitted``); ``0`` disables it.
* ``disable success|denial [ZONES...]``: do not store answers (or denials) for names in ZONES
  (default: every name).
* ``keepttl``: hits carry the TTL the entry was stored with instead of the remaining TTL.

Behaviour

* Key: the lower-cased query name, type and class, and the DO and CD bits (a DNSSEC-aware
  client never gets an answer fetched for one that is not, and vice versa).
* The cache time of a reply is its lowest TTL (read up to 3600 s) clamped to [MINTTL, TTL] of
  its cache: NOERROR answers go to the success cache; NXDOMAIN and NODATA to the denial cache
  with the RFC 2308 negative TTL (min of the authority SOA's TTL and MINIMUM); a referral or
  empty NOERROR is cached 5 s; SERVFAIL/NOTIMP for ``servfail``. That time is written into
  every record of the reply, on the miss too (no 1799 -> 8 jumps); hits count it down.
* Not cached: truncated replies; NXDOMAIN without SOA; a NOERROR whose answer does not answer
  the question and has no SOA (a dangling CNAME chain); zone transfers; other rcodes;
  failures of the chain itself (a SERVFAIL the forward plugin makes up when no upstream
  answered: that is what serve_stale bridges); replies whose question does not match the
  query (counted in ``coredns_cache_drops_total``); replies over 4096 bytes (without OPT).
* A hit is the stored reply with the client's id, RD and CD bits and question bytes (so the
  client's letter case), and TTLs aged by the whole seconds it spent in the cache. EDNS is
  hop-by-hop: the reply is stored without its OPT record, and a hit gets one (payload 1232,
  the client's DO bit) only when the query had one. AD is cleared unless the client set DO or
  AD; AA is kept as stored. The hit carries the entry's AnswerInfo (``Response.info``),
  computed once when the reply arrived, so later stages parse nothing again.
* Replays (``proxy.replay``): a hit is made by one object (``HitAnswer``) that the cache puts
  on its reply; a UDP query with the same bytes is answered again by it without the chain: it
  checks that the entry is still the stored one and not expired, counts the hit and ages the
  TTLs, exactly as the first hit did. Not with ``prefetch`` (it counts every hit of an entry
  through ``serve``).
* Memory: each cache holds at most its capacity in entries and capacity x 1 KiB of reply bytes
  (each entry counts the reply it was stored from plus its TTL-aged copy); when either bound
  is reached the oldest stored entries are evicted first (CoreDNS evicts at random) and
  counted in ``coredns_cache_evictions_total``. An entry for a one-record answer takes about
  700 bytes in all, so a full default cache (2 x 9984 entries) of small answers about 14 MB;
  with large answers the byte budget caps it near 15 MB per cache.

Metrics (labels ``server``, ``zones``, ``view`` (always empty); ``type`` success|denial):
``coredns_cache_entries{type}``, ``coredns_cache_hits_total{type}``,
``coredns_cache_misses_total``, ``coredns_cache_requests_total``,
``coredns_cache_prefetch_total`` (prefetches and stale refreshes started),
``coredns_cache_drops_total``, ``coredns_cache_served_stale_total``,
``coredns_cache_evictions_total{type}``.

Admin hooks (each cache is registered under ``proxy.services.CACHES``):
``stats() -> CacheStats`` (entries per cache, hits, misses, ...) and
``flush(name: str | None = None) -> int`` (every entry, or every entry of one name).

Examples::

    . {
        cache
        forward . 127.0.0.1:5301
    }

    . {
        cache 300 {
            success 20000 300 10
            denial 5000 60
            prefetch 10 1m 20%
            serve_stale 1h
            disable denial cluster.local
        }
        forward . 169.254.169.253
    }
"""

from __future__ import annotations

from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.services import CACHES, ServiceKey

from . import options
from .handler import Cache, CacheStats, register_metrics

__all__ = ["INSTANCES", "Cache", "CacheStats", "ONCE", "setup"]

ONCE = True
INSTANCES = ServiceKey[Cache]("cache")  # every cache of a configuration (for its metrics)


def setup(directive: Directive, ctx: SetupContext) -> Cache:
    config = options.parse(directive, ctx)
    cache = Cache(config, ctx.block.zones)
    services = ctx.app.services
    services.add(INSTANCES, cache)
    services.add(CACHES, cache)
    register_metrics(ctx.app.metrics, services.get(INSTANCES))
    return cache
