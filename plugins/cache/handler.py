"""The cache stage: look-up and hit replay, storing replies, prefetch, serve_stale, metrics.

The hit path (see :meth:`Cache.serve`) is one dict look-up, a clock read and one ``join`` of
the client's id and question around the entry's stored pieces: no await, no Task, no
dnspython. Everything that can be computed once is computed when the reply is stored
(:func:`plugins.cache.store.make_entry`).
"""

from __future__ import annotations

import asyncio
import struct
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from proxy import wire
from proxy.metrics import Registry
from proxy.names import in_zones, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Answer, not_replayed
from proxy.request import Request, Response
from proxy.wire import AnswerInfo, WireError

from .options import CacheConfig, TTLs
from .store import (
    DENIAL,
    KIND_NAMES,
    NOERROR,
    SERVERERROR,
    SUCCESS,
    WORDS,
    Entry,
    Store,
    classify,
    effective_capacity,
    make_entry,
    word,
)

log = structlog.get_logger("dnsfw.cache")

OPT_PLAIN = wire.opt_record(1232, False)  # the OPT a hit gets (what Request.opt() builds)
OPT_DO = wire.opt_record(1232, True)
_CD = wire.CD
_RD_CD = wire.RD | wire.CD
_AD = wire.AD
_AD_LOW = wire.AD & 0xFF  # AD's bit in the second flags byte
_VERIFIED = (wire.NOERROR, wire.NXDOMAIN)  # RFC 8767: replies that replace a stale entry


class Counters:
    """The counters of one ``server`` label (a listener): plain ints on the hot path, read by
    the metrics registry at scrape time."""

    __slots__ = (
        "success_hits",
        "denial_hits",
        "misses",
        "prefetches",
        "drops",
        "served_stale",
        "success_evictions",
        "denial_evictions",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    @property
    def requests(self) -> int:
        # every request is a hit or a miss: one counter less to bump per query
        return self.success_hits + self.denial_hits + self.misses


@dataclass(frozen=True)
class CacheStats:
    """What :meth:`Cache.stats` reports (counters summed over the listeners)."""

    zones: tuple[str, ...]
    success_entries: int
    denial_entries: int
    success_capacity: int
    denial_capacity: int
    success_hits: int
    denial_hits: int
    misses: int
    requests: int
    prefetches: int
    served_stale: int
    drops: int
    success_evictions: int
    denial_evictions: int


class Cache(Plugin):
    """One ``cache`` directive of a server block."""

    name = "cache"

    def __init__(self, config: CacheConfig, block_zones: Sequence[str]) -> None:
        self.config = config
        self.zones_label = ",".join(config.zones)
        self.view = ""  # dnsfw has no `view` plugin: CoreDNS's label is empty then
        self.zone_wires = frozenset(text_to_wire(z) for z in config.zones)
        # routing already keeps queries inside the block's zones: check only if ours are narrower
        self.check_zones = not all(in_zones(text_to_wire(z), self.zone_wires) for z in block_zones)
        self.success = Store(effective_capacity(config.success.capacity))
        self.denial = Store(effective_capacity(config.denial.capacity))
        self._success_get = self.success.entries.get
        self._denial_get = self.denial.entries.get
        self.disabled = (
            frozenset(text_to_wire(z) for z in config.disable_success),
            frozenset(text_to_wire(z) for z in config.disable_denial),
        )
        self.keepttl = config.keepttl
        self.prefetch = config.prefetch
        self.stale_up_to = int(config.stale_up_to)
        self.counters: dict[str, Counters] = {}
        self.clock: Callable[[], float] = time.monotonic
        self.tasks: set[asyncio.Task[None]] = set()
        self.replays = (
            not_replayed("prefetch counts every hit of an entry as it is served")
            if self.prefetch
            else TAKES_PART
        )

    # --- the query path --------------------------------------------------------------
    async def serve(self, req: Request, next: Handler) -> Response:
        if self.check_zones and not in_zones(req.qname_wire, self.zone_wires):
            return await next(req)
        counters = self.counters.get(req.server) or self._counters(req.server)
        key = (req.qname_wire, req.qtype, req.qclass, (req.flags & _CD) | req.do)  # _key, inline
        entry = self._success_get(key) or self._denial_get(key)
        if entry is not None:
            now = self.clock()
            remaining = entry.ttl - int(now - entry.stored)
            if remaining > 0:
                if self.prefetch and self._should_prefetch(entry, now, remaining):
                    self._refresh_later(req, next, entry, counters)
                hit = self._hit(req, key, entry, counters)
                data = hit.hit(req.wire, entry, remaining)
                return Response(data, entry.rcode, "cache", entry.info, None, hit)
            if -remaining < self.stale_up_to:
                return await self._stale(req, next, entry, counters)
            (self.denial if entry.kind else self.success).remove(key)
        counters.misses += 1
        return self._store(req, await next(req), counters)

    def _hit(self, req: Request, key: tuple, entry: Entry, counters: Counters) -> HitAnswer:
        """The entry as the answer to ``req``'s bytes: its id, RD/CD, question and EDNS."""
        flags = req.flags
        do = req.do
        header = (entry.flags_ad if do or flags & _AD else entry.flags) | (flags & _RD_CD)
        if req.edns:
            counts = entry.counts_edns
            tail = OPT_DO if do else OPT_PLAIN
        else:
            counts = entry.counts
            tail = b""
        # the reply up to the records (header, counts, the client's question) and after them
        # (OPT) are fixed for these query bytes; only the TTLs in the records age
        head = b"".join((WORDS.get(header) or word(header), counts, req.wire[12 : req.qend]))
        get = self._denial_get if entry.kind else self._success_get
        return HitAnswer(self, key, get, entry, counters, head, tail)

    async def _stale(
        self, req: Request, next: Handler, entry: Entry, counters: Counters
    ) -> Response:
        """An expired entry inside the serve_stale window: answered with TTL 0, refreshed."""
        if entry.kind:
            counters.denial_hits += 1
        else:
            counters.success_hits += 1
        if self.config.stale_verify:
            resp = await next(req)
            if resp.error is None and resp.rcode in _VERIFIED:
                return self._store(req, resp, counters)
        else:
            self._refresh_later(req, next, entry, counters)
        counters.served_stale += 1
        data = self._hit(req, _key(req), entry, counters).reply(req.wire, entry, 0)
        return Response(data, entry.rcode, "cache", entry.info)

    def _store(self, req: Request, resp: Response, counters: Counters) -> Response:
        """Cache ``resp`` if it qualifies; return it with the cache TTL in every record (when
        stored) and AD cleared for a client that set neither DO nor AD."""
        admitted = self._admit(req, resp, counters)
        if admitted is None:
            return self._clear_ad(req, resp)
        kind, ttl, info = admitted
        key = _key(req)
        entry = make_entry(key, kind, resp.wire, info, ttl, self.clock())
        if entry is None:
            return self._clear_ad(req, resp)
        (self.success if kind else self.denial).remove(key)  # a key lives in one store only
        evicted = (self.denial if kind else self.success).put(entry)
        if evicted:
            if kind:
                counters.denial_evictions += evicted
            else:
                counters.success_evictions += evicted
        buf = bytearray(resp.wire)
        field = ttl.to_bytes(4, "big")
        for off in info.ttl_offsets:
            buf[off : off + 4] = field
        if not (req.do or req.flags & _AD):
            buf[3] &= ~_AD_LOW & 0xFF
        resp.wire = bytes(buf)
        return resp

    def _admit(
        self, req: Request, resp: Response, counters: Counters
    ) -> tuple[int, int, AnswerInfo] | None:
        """(store kind, seconds to cache, reply info) when ``resp`` may be cached, else None."""
        if resp.error is not None:  # the chain failed (CoreDNS: an error, nothing written)
            return None
        data = resp.wire
        try:
            info = resp.answer_info()
            qname = data[12 : info.qend - 4].lower()
        except (WireError, IndexError, struct.error):
            return None
        question = data[info.qend - 4 : info.qend]
        if (
            data[4:6] != b"\x00\x01"
            or qname != req.qname_wire
            or question != req.wire[req.qend - 4 : req.qend]
        ):
            counters.drops += 1
            return None
        verdict = classify(data, info, req.qtype)
        if verdict is None:
            return None
        kind, ttl = self._duration(*verdict)
        disabled = self.disabled[kind]
        if ttl <= 0 or (disabled and in_zones(req.qname_wire, disabled)):
            return None
        return kind, ttl, info

    def _duration(self, reply_class: int, msg_ttl: int) -> tuple[int, int]:
        """(store kind, seconds to cache): the message TTL clamped to the kind's bounds."""
        if reply_class == SERVERERROR:
            return DENIAL, int(self.config.servfail_ttl)
        kind, ttls = (
            (SUCCESS, self.config.success)
            if reply_class == NOERROR
            else (DENIAL, self.config.denial)
        )
        return kind, _clamp(msg_ttl, ttls)

    @staticmethod
    def _clear_ad(req: Request, resp: Response) -> Response:
        data = resp.wire
        if len(data) > 3 and data[3] & _AD_LOW and not (req.do or req.flags & _AD):
            resp.wire = data[:3] + bytes((data[3] & ~_AD_LOW & 0xFF,)) + data[4:]
        return resp

    # --- prefetch and background refresh ----------------------------------------------
    def _should_prefetch(self, entry: Entry, now: float, remaining: int) -> bool:
        """CoreDNS's rule: AMOUNT hits, none more than the window apart, and at most
        PERCENTAGE of the TTL left (so at the latest 1 s before expiry)."""
        if now - entry.last_hit > self.config.prefetch_window:
            entry.hits = 1
        else:
            entry.hits += 1
        entry.last_hit = now
        threshold = -(-self.config.prefetch_percentage * entry.ttl // 100)
        return entry.hits >= self.prefetch and remaining <= threshold and not entry.refreshing

    def _refresh_later(self, req: Request, next: Handler, entry: Entry, counters: Counters) -> None:
        """Fetch ``entry`` again in the background (one fetch per entry at a time)."""
        if entry.refreshing:
            return
        entry.refreshing = True
        counters.prefetches += 1
        task = asyncio.get_running_loop().create_task(
            self._refresh(req.derive(), next, entry, counters)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _refresh(self, req: Request, next: Handler, old: Entry, counters: Counters) -> None:
        try:
            self._store(req, await next(req), counters)
            new = self._success_get(old.key) or self._denial_get(old.key)
            if new is not None and new is not old:
                # the refreshed entry keeps the popularity gathered so far (CoreDNS Freq.Reset)
                new.hits = old.hits
                new.last_hit = self.clock()
        except Exception as exc:  # noqa: BLE001 - a background fetch must not end silently
            log.warning("cache_refresh_failed", qname=req.qname, qtype=req.qtype, error=repr(exc))
        finally:
            old.refreshing = False

    # --- lifecycle, admin hooks, metrics ----------------------------------------------
    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        # stopped means replaced or shutting down: nothing reads these entries again
        await self.success.release()
        await self.denial.release()

    def stats(self) -> CacheStats:
        """Entries per cache and the counters, summed over listeners."""
        total = Counters()
        for counters in self.counters.values():
            for name in Counters.__slots__:
                setattr(total, name, getattr(total, name) + getattr(counters, name))
        return CacheStats(
            zones=self.config.zones,
            success_entries=len(self.success),
            denial_entries=len(self.denial),
            success_capacity=self.success.capacity,
            denial_capacity=self.denial.capacity,
            success_hits=total.success_hits,
            denial_hits=total.denial_hits,
            misses=total.misses,
            requests=total.requests,
            prefetches=total.prefetches,
            served_stale=total.served_stale,
            drops=total.drops,
            success_evictions=total.success_evictions,
            denial_evictions=total.denial_evictions,
        )

    def flush(self, name: str | None = None) -> int:
        """Remove every entry (``name`` None) or every entry of ``name`` (any type, DO/CD);
        return how many were removed. Raises ValueError for a malformed name."""
        if name is None:
            return self.success.clear() + self.denial.clear()
        name_wire = text_to_wire(name)
        return self.success.remove_name(name_wire) + self.denial.remove_name(name_wire)

    def _counters(self, server: str) -> Counters:
        counters = self.counters[server] = Counters()
        return counters

    def samples(self, field: str | None = None) -> Iterable[tuple[tuple[str, ...], float]]:
        """Metric samples: ``field`` per listener, or (field None) entries per store."""
        labels = (self.zones_label, self.view)
        for server, counters in self.counters.items():
            if field is None:
                yield (server, "success", *labels), len(self.success)
                yield (server, "denial", *labels), len(self.denial)
            elif field in ("hits", "evictions"):
                for kind in KIND_NAMES:
                    yield (server, kind, *labels), getattr(counters, f"{kind}_{field}")
            else:
                yield (server, *labels), getattr(counters, field)


class HitAnswer(Answer):
    """A cache hit as the reply to one query's bytes: made by :meth:`Cache.serve` for the hit
    itself and kept by a replay (see :mod:`proxy.replay`) for the same bytes asked again.

    It holds its entry weakly: an entry flushed, evicted or replaced is freed at once, not
    kept alive (outside the cache's memory bound) until its replay is next asked for."""

    __slots__ = ("cache", "key", "get", "entry", "counters", "head", "tail")

    def __init__(
        self,
        cache: Cache,
        key: tuple,
        get: Callable[[tuple], Entry | None],
        entry: Entry,
        counters: Counters,
        head: bytes,
        tail: bytes,
    ) -> None:
        self.cache = cache
        self.key = key
        self.get = get
        self.entry = weakref.ref(entry)
        self.counters = counters
        self.head = head
        self.tail = tail

    def __call__(self, data: bytes, now: float) -> bytes | None:
        """The reply, the hit counted and TTLs aged; None once the entry expired or is no
        longer the stored one (flushed, evicted, refreshed): the chain then decides (stale,
        refetch)."""
        entry = self.entry()
        if entry is None or self.get(self.key) is not entry:
            return None
        remaining = entry.ttl - int(self.cache.clock() - entry.stored)
        if remaining <= 0:
            return None
        return self.hit(data, entry, remaining)

    def hit(self, data: bytes, entry: Entry, remaining: int) -> bytes:
        """The reply to ``data`` from ``entry`` with ``remaining`` seconds left, counted."""
        if entry.kind:
            self.counters.denial_hits += 1
        else:
            self.counters.success_hits += 1
        return self.reply(data, entry, entry.ttl if self.cache.keepttl else remaining)

    def reply(self, data: bytes, entry: Entry, ttl: int) -> bytes:
        """The reply to query ``data`` with every record's TTL ``ttl``."""
        body = entry.body if ttl == entry.body_ttl else entry.aged_body(ttl)
        return b"".join((data[:2], self.head, body, self.tail))


def _key(req: Request) -> tuple[bytes, int, int, int]:
    """An entry's key: the lower-case name, type, class, and the CD and DO bits."""
    return (req.qname_wire, req.qtype, req.qclass, (req.flags & _CD) | req.do)


def _clamp(msg_ttl: int, ttls: TTLs) -> int:
    """CoreDNS's computeTTL: raised to MINTTL, then capped at TTL (the cap wins)."""
    return min(max(msg_ttl, ttls.min_ttl), ttls.max_ttl)


# name, help, field of Cache.samples (None: entries), label names, kind
METRICS = (
    ("entries", "The number of elements in the cache.", None, True, "gauge"),
    ("hits_total", "The count of cache hits.", "hits", True, "counter"),
    (
        "misses_total",
        "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
        "misses",
        False,
        "counter",
    ),
    ("requests_total", "The count of cache requests.", "requests", False, "counter"),
    (
        "prefetch_total",
        "The number of times the cache has prefetched a cached item.",
        "prefetches",
        False,
        "counter",
    ),
    (
        "drops_total",
        "The number responses that are not cached, because the reply is malformed.",
        "drops",
        False,
        "counter",
    ),
    (
        "served_stale_total",
        "The number of requests served from stale cache entries.",
        "served_stale",
        False,
        "counter",
    ),
    ("evictions_total", "The count of cache evictions.", "evictions", True, "counter"),
)


def register_metrics(registry: Registry, caches: list[Cache]) -> None:
    """CoreDNS's cache metrics over every cache of the configuration (read at scrape time)."""
    for name, help_text, field, typed, kind in METRICS:
        labels = ("server", "type", "zones", "view") if typed else ("server", "zones", "view")
        registry.gauge_func(
            f"coredns_cache_{name}",
            help_text,
            labels,
            _collector(caches, field),
            kind=kind,
        )


def _collector(
    caches: list[Cache], field: str | None
) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
    return lambda: [sample for cache in caches for sample in cache.samples(field)]
