"""Streaming aggregation of Route 53 Resolver query logs for ``dnsfw audit``.

**Input.** One JSON object per line, the schema of Route 53 Resolver query logs (and of
dnsfw's ``log`` plugin in ``route53`` format). A path is a file, a directory (walked
recursively in name order; names starting with ``.`` are skipped) or ``-`` for standard input.
Gzip is recognised by its magic bytes, whatever the file is called. A line may carry a prefix
before its JSON object (CloudWatch Logs exports write ``TIMESTAMP {...}``); blank lines are
ignored.

**Fields used** (named by :mod:`plugins.log.route53`, the schema ``log`` writes).
``query_name``, ``query_type`` and ``query_timestamp`` (ISO 8601) are required; ``rcode``,
``srcaddr``, ``firewall_rule_action``, ``firewall_rule_group_id`` and
``firewall_domain_list_id`` are read when present (an absent action means Route 53 allowed the
query or no rule matched), and ``answers`` of NOERROR and NXDOMAIN replies for their CNAME and
DNAME targets (the names a firewall with ``redirection inspect`` evaluates too: the suggested
list must allow them, and ``--policy`` decides on them). A line
without the required fields, or that is not JSON, is a bad line: counted, the first
``MAX_BAD_EXAMPLES`` kept as ``file:line: reason``, never fatal. A gzip file cut short (a log
still being written) ends that file with a read error, counted the same way.

**Names** are case-folded and lose their trailing dot (``Gmail.com.`` -> ``gmail.com``; the
root is ``.``), so they compare like domain list entries.

**Memory.** The state is one :class:`NameStats` per distinct name, and nothing per line:
about 0.4 KB per name (its text, first and last time, a flat counter of interned outcomes,
a tuple of at most ``MAX_SOURCES`` interned source addresses; queries from further sources
are counted, not kept; a name whose answers held CNAME/DNAME targets keeps at most
``MAX_TARGETS`` of them, interned), and about 0.35 KB more with ``--policy``. Distinct names are capped:
at most ``max_per_domain`` names per registrable domain and ``max_names`` in all; a name
beyond a cap is counted in an overflow entry for its registrable domain (``*.DOMAIN``), and
once ``max_names`` entries exist at all, in one catch-all entry. So the state grows with
the names kept, not with the input: about 80 MB at the default 200,000 (150 MB with
``--policy`` when every name has a reported decision). A log of 1,000,000 lines over
100,000 names peaks at about 110 MB RSS (150 MB with ``--policy``), 40-50 MB of it the
interpreter and libraries (``bench/audit_memory.py``).
A registrable domain with more names than ``max_per_domain`` is itself a finding (random
subdomains: tunnelling, DGA) and is flagged.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from plugins.log.route53 import (
    ANSWERS,
    FIREWALL_DOMAIN_LIST_ID,
    FIREWALL_RULE_ACTION,
    FIREWALL_RULE_GROUP_ID,
    QUERY_NAME,
    QUERY_TIMESTAMP,
    QUERY_TYPE,
    RCODE,
    RDATA,
    SRCADDR,
    TYPE,
)

MAX_SOURCES = 16  # source addresses kept per name
MAX_TARGETS = 16  # CNAME/DNAME targets kept per name (more: a CDN rotating its edge names)
CHAIN_TYPES = ("CNAME", "DNAME")
CHAIN_RCODES = ("NOERROR", "NXDOMAIN")  # an NXDOMAIN answer can hold a chain too
MAX_BAD_EXAMPLES = 5
DEFAULT_MAX_NAMES = 200_000
DEFAULT_MAX_PER_DOMAIN = 1_000
CATCH_ALL = "*"  # overflow key once max_names entries exist

_GZIP_MAGIC = b"\x1f\x8b"
_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# (query type, rcode, logged action, rule group id, domain list id)
Outcome = tuple[str, str, str, str, str]


def bump(flat: list[Any], key: object, value: Any = 1) -> None:
    """Add ``value`` to ``key``'s count in a flat ``[key, count, key, count, ...]`` list.

    A name has one to a few keys, and a dict of one entry costs 226 bytes where this list
    costs about 90: with 100,000 names that is the difference. Keys are interned, so they
    are compared by identity.
    """
    for i in range(0, len(flat), 2):
        if flat[i] is key:
            flat[i + 1] += value
            return
    flat += (key, value)


def pairs(flat: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """The (key, count) pairs of a flat counter list (see ``bump``)."""
    return zip(flat[::2], flat[1::2], strict=True)


class NameStats:
    """What the log says about one name (or, for an overflow entry, about many).

    ``outcomes`` counts queries per (type, rcode, logged action, group, list), flat (see
    ``bump``): this one counter serves as the counters of types, rcodes and actions.
    ``sources`` keeps at most ``MAX_SOURCES`` addresses in the order first seen;
    ``other_sources`` counts the queries from addresses not kept. ``targets``: the CNAME/DNAME
    targets seen in its answers (case-folded, no trailing dot), at most ``MAX_TARGETS``;
    ``more_targets``: more were seen. ``policy`` belongs to ``--policy`` (see
    ``commands.audit.policy``).
    """

    __slots__ = (
        "domain",
        "first",
        "last",
        "outcomes",
        "sources",
        "other_sources",
        "targets",
        "more_targets",
        "policy",
    )

    def __init__(self, domain: str, stamp: float) -> None:
        self.domain = domain
        self.first = stamp
        self.last = stamp
        self.outcomes: list[Any] = []
        self.sources: tuple[str, ...] = ()
        self.other_sources = 0
        self.targets: tuple[str, ...] = ()
        self.more_targets = False
        self.policy: list[Any] | None = None

    @property
    def queries(self) -> int:
        return sum(self.outcomes[1::2])

    def tally(self, index: int) -> dict[str, int]:
        """Queries per value of one outcome field (0 type, 1 rcode, 2 action, ...)."""
        out: dict[str, int] = {}
        for outcome, count in pairs(self.outcomes):
            key = outcome[index]
            out[key] = out.get(key, 0) + count
        return out

    @property
    def types(self) -> dict[str, int]:
        return self.tally(0)

    @property
    def rcodes(self) -> dict[str, int]:
        return self.tally(1)

    @property
    def actions(self) -> dict[str, int]:
        """Queries per logged action ("" = allowed or no rule matched), with group and list."""
        out: dict[str, int] = {}
        for (_, _, action, group, lst), count in pairs(self.outcomes):
            key = f"{action} {group}/{lst}" if action and (group or lst) else action
            out[key] = out.get(key, 0) + count
        return out


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``since <= t < until`` (epoch seconds; None: unbounded)."""

    since: float | None = None
    until: float | None = None

    def __contains__(self, stamp: float) -> bool:
        return (self.since is None or stamp >= self.since) and (
            self.until is None or stamp < self.until
        )


def parse_stamp(text: str) -> float:
    """An ISO 8601 time (``2026-11-20``, ``2026-11-20T10:00:00Z``, ``...25.177Z``,
    ``+09:00``) as epoch seconds; without an offset it is UTC. Raises ValueError."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def parse_time_arg(text: str, now: float | None = None) -> float:
    """``--since``/``--until``: ISO 8601 (see ``parse_stamp``) or an age before ``now``:
    ``N`` with unit ``s``, ``m``, ``h``, ``d`` or ``w`` (``24h``, ``7d``). Raises ValueError."""
    m = _RELATIVE.fullmatch(text.strip())
    if m is not None:
        base = time.time() if now is None else now
        return base - int(m[1]) * _UNIT_SECONDS[m[2]]
    try:
        return parse_stamp(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected ISO 8601 (2026-11-20, 2026-11-20T10:00:00Z) "
            "or an age (30m, 24h, 7d, 2w)"
        ) from None


def iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def expand_paths(paths: list[str]) -> list[str]:
    """Files to read, in order: each file as given, each directory's files sorted by path.

    Raises FileNotFoundError for a path that does not exist (a usage error: nothing is read).
    """
    out: list[str] = []
    for path in paths:
        if path == "-" or os.path.isfile(path):
            out.append(path)
        elif os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return out


def _open(path: str) -> IO[bytes]:
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
    else:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def chain_of(obj: dict[str, Any]) -> tuple[str, ...]:
    """The CNAME/DNAME targets in a logged line's ``answers``, in order, as logged (lower-cased;
    with their trailing dot)."""
    answers = obj.get(ANSWERS)
    if not answers or type(answers) is not list:
        return ()
    return tuple(
        a[RDATA].lower()
        for a in answers
        if type(a) is dict and a.get(TYPE) in CHAIN_TYPES and type(a.get(RDATA)) is str
    )


# Called for every accepted line when --policy is given:
# (stats, name, query type, client, logged action, rcode, parsed object)
Observer = Callable[[NameStats, str, str, str, str, str, dict], None]


class Inventory:
    """Per-name aggregation of a stream of query-log lines, in bounded memory."""

    def __init__(
        self,
        registrable: Callable[[str], str],
        *,
        window: TimeWindow = TimeWindow(),
        max_names: int = DEFAULT_MAX_NAMES,
        max_per_domain: int = DEFAULT_MAX_PER_DOMAIN,
        observer: Observer | None = None,
    ) -> None:
        self.registrable = registrable
        self.window = window
        self.max_names = max_names
        self.max_per_domain = max_per_domain
        self.observer = observer
        self.names: dict[str, NameStats] = {}
        self.overflow: dict[str, NameStats] = {}  # registrable domain (or CATCH_ALL) -> stats
        self.per_domain: dict[str, int] = {}  # names kept per registrable domain
        self.files: list[str] = []
        self.lines = 0  # non-blank lines read
        self.accepted = 0
        self.outside = 0  # outside the time window
        self.bad = 0
        self.bad_examples: list[str] = []
        self._outcomes: dict[Outcome, Outcome] = {}  # interned: shared by every name
        self._sources: dict[str, str] = {}  # interned source addresses that some name keeps
        self._targets: dict[str, str] = {}  # interned CNAME/DNAME targets that some name keeps
        self._domains: dict[str, str] = {}  # interned registrable domains
        self._last_text = ""
        self._last_stamp = 0.0
        self._decode = json.JSONDecoder().decode  # str in: skips loads()'s encoding detection

    # --- reading ---------------------------------------------------------------------

    def read(self, paths: list[str]) -> None:
        """Read every file of ``expand_paths(paths)`` (which may raise FileNotFoundError)."""
        for path in expand_paths(paths):
            label = "<stdin>" if path == "-" else path
            self.files.append(label)
            try:
                fh = _open(path)
            except OSError as err:
                self._bad(label, 0, f"cannot read: {err.strerror or err}")
                continue
            try:
                self.read_stream(fh, label)
            finally:
                if path != "-":
                    fh.close()

    def read_stream(self, lines: IO[bytes], label: str) -> None:
        """Aggregate every line of one input; a read error ends it (counted as a bad line)."""
        lineno = 0
        try:
            for lineno, raw in enumerate(lines, 1):  # noqa: B007 - the error names lineno
                self._line(raw, label, lineno)
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            self._bad(label, lineno + 1, f"read error: {err}")

    def _line(self, raw: bytes, label: str, lineno: int) -> None:
        line = raw
        if line[:1] != b"{":
            if not line.strip():
                return
            brace = line.find(b"{")
            if brace < 0:
                self.lines += 1
                self._bad(label, lineno, "no JSON object on the line")
                return
            line = line[brace:]
        self.lines += 1
        try:
            obj = self._decode(line.decode())
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            self._bad(label, lineno, f"not JSON: {err}")
            return
        reason = self._accept(obj)
        if reason is not None:
            self._bad(label, lineno, reason)

    def _accept(self, obj: Any) -> str | None:
        """Aggregate one parsed line; the reason it is bad, or None."""
        if type(obj) is not dict:
            return "no JSON object on the line"
        name = obj.get(QUERY_NAME)
        qtype = obj.get(QUERY_TYPE)
        text = obj.get(QUERY_TIMESTAMP)
        if type(name) is not str or not name:
            return f"no {QUERY_NAME}"
        if type(qtype) is not str or not qtype:
            return f"no {QUERY_TYPE}"
        if type(text) is not str:
            return f"no {QUERY_TIMESTAMP}"
        if text == self._last_text:  # lines come in time order: most share their second
            stamp = self._last_stamp
        else:
            try:
                stamp = parse_stamp(text)
            except ValueError:
                return f"bad {QUERY_TIMESTAMP} {text!r}"
            self._last_text, self._last_stamp = text, stamp
        if stamp not in self.window:
            self.outside += 1
            return None
        self.accepted += 1
        self._add(name, qtype.upper(), stamp, obj)
        return None

    def _add(self, name: str, qtype: str, stamp: float, obj: dict) -> None:
        key = name.lower()
        if key[-1] == "." and len(key) > 1:
            key = key[:-1]
        stats = self.names.get(key)
        if stats is None:
            stats = self._new(key, stamp)
        if stamp < stats.first:
            stats.first = stamp
        elif stamp > stats.last:
            stats.last = stamp
        get = obj.get
        rcode = get(RCODE)
        action = get(FIREWALL_RULE_ACTION)
        outcome: Outcome = (
            qtype,
            rcode if type(rcode) is str else "",
            action if type(action) is str else "",
            str(get(FIREWALL_RULE_GROUP_ID) or "") if action else "",
            str(get(FIREWALL_DOMAIN_LIST_ID) or "") if action else "",
        )
        outcome = self._outcomes.setdefault(outcome, outcome)
        bump(stats.outcomes, outcome)
        source = get(SRCADDR)
        if type(source) is not str:
            source = ""
        sources = stats.sources
        if source not in sources:
            if len(sources) < MAX_SOURCES:
                source = self._sources.setdefault(source, source)
                stats.sources = (*sources, source)
            else:
                stats.other_sources += 1
        if self.names.get(key) is not stats:  # an overflow entry: counted, nothing more
            return
        if outcome[1] in CHAIN_RCODES:
            for target in chain_of(obj):
                self._target(stats, target)
        if self.observer is not None:
            self.observer(stats, key, qtype, source, outcome[2], outcome[1], obj)

    def _target(self, stats: NameStats, text: str) -> None:
        target = text[:-1] if text[-1:] == "." and len(text) > 1 else text
        targets = stats.targets
        if target in targets:
            return
        if len(targets) < MAX_TARGETS:
            stats.targets = (*targets, self._targets.setdefault(target, target))
        else:
            stats.more_targets = True

    def _new(self, key: str, stamp: float) -> NameStats:
        """The entry a new name is counted in: its own, or an overflow entry."""
        domain = self.registrable(key)
        domain = self._domains.setdefault(domain, domain)  # one string per domain, not per name
        kept = self.per_domain.get(domain, 0)
        entries = len(self.names) + len(self.overflow)
        if kept < self.max_per_domain and entries < self.max_names:
            self.per_domain[domain] = kept + 1
            stats = self.names[key] = NameStats(domain, stamp)
            return stats
        bucket = self.overflow.get(domain)
        if bucket is None:
            if entries >= self.max_names:
                domain = CATCH_ALL
                bucket = self.overflow.get(domain)
            if bucket is None:
                bucket = self.overflow[domain] = NameStats(domain, stamp)
        return bucket

    def _bad(self, label: str, lineno: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            where = f"{label}:{lineno}" if lineno else label  # 0: the file as a whole
            self.bad_examples.append(f"{where}: {reason}")

    # --- results ---------------------------------------------------------------------

    @property
    def pairs(self) -> int:
        """Distinct (name, query type) pairs."""
        return sum(len(s.types) for s in self.names.values())

    def span(self) -> tuple[float, float] | None:
        """First and last query time of everything counted."""
        every = [*self.names.values(), *self.overflow.values()]
        if not every:
            return None
        return min(s.first for s in every), max(s.last for s in every)
