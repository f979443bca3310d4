"""Cache entries and the bounded stores that hold them.

An :class:`Entry` is an answer prepared once, when it is stored, for cheap replay: the reply
without its OPT record (EDNS is hop-by-hop: a hit gets an OPT matching its own query), every
TTL set to the cache duration, split at the end of the question so that a hit is the client's
id and question around stored pieces. The TTL fields are rewritten at most once per second of
age (all records carry the same TTL, as in CoreDNS), so a hit usually copies nothing but the
reply itself.

A :class:`Store` is one of the two caches (success or denial): an insertion-ordered map with a
hard bound on entries and on reply bytes; when full, the oldest stored entries are evicted
first (CoreDNS evicts a random one).
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict
from typing import TypeVar

from proxy import wire
from proxy.wire import AnswerInfo

# A reply larger than this is passed through but never stored: it bounds the memory of one
# entry, and answers this large are rare enough that caching them buys little.
MAX_ENTRY_BYTES = 4096
# Reply bytes a store may hold per entry of capacity, on average (each entry holds the reply
# as received and its TTL-aged copy, both counted): the memory bound when answers are large.
BYTES_PER_ENTRY = 1024
# entries freed per step by Store.release (about a millisecond's work)
RELEASE_BATCH = 5000
SHARDS = 256  # CoreDNS's shard count, for its capacity rounding
MIN_SHARD_SIZE = 4

SUCCESS = 0
DENIAL = 1
KIND_NAMES = ("success", "denial")

# reply classes (CoreDNS's response.Type, as far as a cache tells them apart)
NOERROR = 0
NODATA = 1
NXDOMAIN = 2
SERVERERROR = 3

TYPE_ANY = 255
ZONE_TRANSFERS = frozenset((251, 252))  # IXFR, AXFR: CoreDNS's "meta" replies, never cached
DEFAULT_MSG_TTL = 5  # CoreDNS's MinimalDefaultTTL: a reply without records
MAX_MSG_TTL = 3600  # CoreDNS's MaximumDefaulTTL: no message TTL is read above it

Key = tuple[bytes, int, int, int]  # lower-case qname wire, qtype, qclass, CD | DO

_T = TypeVar("_T")
_U16 = struct.Struct("!H")
_COUNTS = struct.Struct("!HHHH")
_HIT_FLAGS = wire.QR | wire.AA | wire.RA | 0x000F  # kept from the stored reply
WORDS: dict[int, bytes] = {}  # rendered 16-bit header words (at most 2**16; a few in practice)
# Values most entries share (flag words, section counts): one object each instead of one per
# entry, which saves about 140 bytes per entry.
_SHARED: dict[object, object] = {}
MAX_SHARED = 4096
NEVER = float("-inf")


def effective_capacity(requested: int) -> int:
    """CoreDNS's capacity: 256 shards of ``requested // 256`` entries, at least 4 each."""
    return max(int(requested / SHARDS), MIN_SHARD_SIZE) * SHARDS


def word(value: int) -> bytes:
    """The 2-byte big-endian form of ``value`` (memoised: header flag words repeat)."""
    rendered = WORDS.get(value)
    if rendered is None:
        rendered = WORDS[value] = _U16.pack(value)
    return rendered


def _share(value: _T) -> _T:
    shared = _SHARED.get(value)
    if shared is not None:
        return shared  # type: ignore[return-value]
    if len(_SHARED) < MAX_SHARED:  # bounded: odd upstream replies cannot grow it forever
        _SHARED[value] = value
    return value


def classify(data: bytes, info: AnswerInfo, qtype: int) -> tuple[int, int] | None:
    """(reply class, message TTL) of a reply to a ``qtype`` query, or None: not cacheable.

    The message TTL is the lowest TTL of the reply's records, read up to 3600 s, and for a
    denial at most the RFC 2308 negative TTL (min of the SOA's TTL and MINIMUM); 5 s for a
    NOERROR without answer or SOA (a referral). Not cacheable: truncated replies, NXDOMAIN
    without SOA, a NOERROR whose answer does not answer the question and has no SOA (a dangling
    CNAME chain), zone transfers, and rcodes other than NOERROR, NXDOMAIN, SERVFAIL, NOTIMP.
    """
    if info.flags & wire.TC or qtype in ZONE_TRANSFERS:
        return None
    rcode = info.rcode
    msg_ttl = min(info.min_ttl, MAX_MSG_TTL) if info.ttl_offsets else DEFAULT_MSG_TTL
    negative = info.neg_ttl
    if rcode == wire.NOERROR:
        if info.ancount and _answers(data, info, qtype):
            return NOERROR, msg_ttl
        if negative >= 0:
            return NODATA, min(msg_ttl, negative)
        return None if info.ancount else (NOERROR, DEFAULT_MSG_TTL)
    if rcode == wire.NXDOMAIN:
        return (NXDOMAIN, min(msg_ttl, negative)) if negative >= 0 else None
    if rcode == wire.SERVFAIL or rcode == wire.NOTIMP:
        return SERVERERROR, 0
    return None


def _answers(data: bytes, info: AnswerInfo, qtype: int) -> bool:
    """Whether the answer section holds a record of the asked type (any record for ANY)."""
    if qtype == TYPE_ANY:
        return info.ancount > 0
    off = info.qend
    for _ in range(info.ancount):
        off = wire.skip_name(data, off)
        if _U16.unpack_from(data, off)[0] == qtype:
            return True
        off += 10 + _U16.unpack_from(data, off + 8)[0]
    return False


class Entry:
    """One stored answer, ready to be replayed (see the module docstring)."""

    __slots__ = (
        "__weakref__",  # replays hold entries weakly (plugins.cache.handler.HitReplay)
        "key",
        "kind",
        "rcode",
        "flags",
        "flags_ad",
        "counts",
        "counts_edns",
        "body",
        "body_ttl",
        "qend",
        "ttl",
        "stored",
        "info",
        "size",
        "hits",
        "last_hit",
        "refreshing",
    )

    def __init__(
        self,
        key: Key,
        kind: int,
        info: AnswerInfo,
        body: bytes,
        counts: tuple[int, int, int],
        ttl: int,
        now: float,
        size: int,
    ) -> None:
        self.key = key
        self.kind = kind
        self.rcode = info.rcode
        # a hit takes RD and CD from its query, and AD only when the client can use it
        self.flags = _share(info.flags & _HIT_FLAGS | wire.QR)
        self.flags_ad = _share(self.flags | (info.flags & wire.AD))
        an, ns, ar = counts
        self.counts = _share(_COUNTS.pack(1, an, ns, ar))
        self.counts_edns = _share(_COUNTS.pack(1, an, ns, ar + 1))
        self.body = body
        self.body_ttl = ttl
        self.qend = info.qend  # the body starts there; TTL offsets are info.ttl_offsets
        self.ttl = ttl
        self.stored = now
        self.info = info
        self.size = size
        self.hits = 0  # prefetch frequency: hits without a gap longer than the window
        self.last_hit = NEVER
        self.refreshing = False

    def aged_body(self, ttl: int) -> bytes:
        """The stored records with every TTL set to ``ttl`` (rewritten once per value)."""
        if ttl != self.body_ttl:
            buf = bytearray(self.body)
            field = ttl.to_bytes(4, "big")
            qend = self.qend
            for off in self.info.ttl_offsets:
                buf[off - qend : off - qend + 4] = field
            self.body = bytes(buf)
            self.body_ttl = ttl
        return self.body


def make_entry(
    key: Key, kind: int, data: bytes, info: AnswerInfo, ttl: int, now: float
) -> Entry | None:
    """An entry for reply ``data`` (whose AnswerInfo is ``info``), cached for ``ttl`` seconds.

    None when the reply cannot be stored: larger than MAX_ENTRY_BYTES without its OPT record,
    or an OPT record that is not the last record (only TSIG/SIG(0) follow one, and those
    replies are not for replay).
    """
    an, ns, ar = _COUNTS.unpack_from(data, 4)[1:]
    qend = info.qend
    end = len(data)
    start = info.opt
    if start >= 0:
        opt_end = start + 11 + _U16.unpack_from(data, start + 9)[0]
        if data[start] != 0 or opt_end != end:
            return None
        end = start
        ar -= 1
    if end > MAX_ENTRY_BYTES:
        return None
    field = ttl.to_bytes(4, "big")
    body = bytearray(data[qend:end])
    for off in info.ttl_offsets:
        body[off - qend : off - qend + 4] = field
    size = len(data) + len(body)
    return Entry(key, kind, info, bytes(body), (an, ns, ar), ttl, now, size)


class Store:
    """One cache (success or denial): at most ``capacity`` entries and
    ``capacity * BYTES_PER_ENTRY`` reply bytes; the oldest stored entry goes first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.budget = capacity * BYTES_PER_ENTRY
        self.entries: OrderedDict[Key, Entry] = OrderedDict()
        self.used = 0  # reply bytes held
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, entry: Entry) -> int:
        """Store ``entry`` (replacing one under its key); return how many others were evicted."""
        entries = self.entries
        old = entries.pop(entry.key, None)
        if old is not None:
            self.used -= old.size
        evicted = 0
        while entries and (len(entries) >= self.capacity or self.used + entry.size > self.budget):
            _, victim = entries.popitem(last=False)
            self.used -= victim.size
            evicted += 1
        entries[entry.key] = entry
        self.used += entry.size
        self.evictions += evicted
        return evicted

    def remove(self, key: Key) -> Entry | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.used -= entry.size
        return entry

    def remove_name(self, name: bytes) -> int:
        """Remove every entry of the lower-case wire name ``name``; return how many."""
        keys = [key for key in self.entries if key[0] == name]
        for key in keys:
            self.remove(key)
        return len(keys)

    async def release(self) -> None:
        """Empty the store a batch at a time, letting the event loop run between batches.

        A retired configuration is reference-cyclic: left to it, its entries would be freed by
        the garbage collector, in one collection that held the event loop for tens of
        milliseconds per 10,000 entries (50 ms measured after a few reloads). Freed here they
        go by reference counting, about a millisecond per batch.
        """
        entries = self.entries
        while entries:
            for _ in range(min(RELEASE_BATCH, len(entries))):
                entries.popitem()
            await asyncio.sleep(0)
        self.used = 0

    def clear(self) -> int:
        count = len(self.entries)
        self.entries.clear()
        self.used = 0
        return count
