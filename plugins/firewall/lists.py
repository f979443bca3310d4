"""Domain lists of the ``firewall`` plugin: parsing, normalisation and O(labels) matching.

Entry syntax (format ``route53``, the default), one entry per line:

* ``example.com`` matches only ``example.com``.
* ``*.example.com`` matches every name strictly below ``example.com``, at any depth
  (``www.example.com``, ``a.b.example.com``), but not ``example.com`` itself.
* ``*`` (AWS stores it as ``*.``) matches every name. dnsfw decides that this includes the
  root ``.``: the entry is the "match everything" of walled-garden rule groups.
* Matching is case-insensitive; one trailing dot is accepted (``example.com.``).
* Label characters are ``a-z 0-9 - _`` (``_`` for ``_dmarc.example.com``; AWS's docs
  allow only LDH, but ``_`` names exist in DNS and in real lists). ``*`` is allowed only as
  the whole leftmost label.
* Internationalised names (``bücher.de``, ``*.münchen.de``) are converted to punycode by
  ``proxy.names.to_ascii`` (IDNA 2008 with UTS #46 non-transitional mapping, as browsers do,
  and as every other name in dnsfw: ``faß.de`` is ``xn--fa-hia.de``, not IDNA 2003's
  ``fass.de``).
* Limits are those of DNS wire form: labels of 1-63 octets, names of at most 255 octets
  (for ``*.name`` the ``*`` label counts: an entry that could match no name is refused).
* ``#`` starts a comment (whole line or after an entry); blank lines are ignored.
* Anything else is an error reported with file and line, for example
  ``internal.txt:12 - invalid domain list entry 'a..b': empty label``. A line in another
  format's syntax says so (``0.0.0.0 ads.example``: "a hosts-format line: give the list
  'format hosts'"; ``||ads.example^``: "format adblock").
* ``lenient`` (a list option): bad lines are skipped and counted like the skipped lines of
  the other formats, instead of refusing the whole list (a downloaded list with one junk line
  then still loads).

Format ``hosts``: ``ADDRESS NAME [NAME...]`` lines (``0.0.0.0 ads.example``,
``127.0.0.1 x.example``, ``:: x.example``; ``#`` comments). The address must be an IP
address and is otherwise ignored; every name is an exact entry (no wildcards). Local names
(``localhost``, ``localhost.localdomain``, ``local``, ``broadcasthost``, ``ip6-*`` and the
like) are skipped and counted.

Format ``adblock``: only ``||name^`` is used, as two entries, ``name`` and ``*.name`` (the name
and everything below it). Other rules (``@@`` exceptions, ``/regex/``, cosmetic ``##``,
``$`` options such as ``$important``, URL patterns) are skipped and counted, not errors.
``!`` comments, ``#`` comment lines and the ``[Adblock Plus ...]`` header are ignored like
comments (they are not rules, so they are not counted as skipped).

The name syntax above applies to the names of every format. Open list files with
``encoding="utf-8-sig"`` (a byte-order mark would be an illegal character on line 1).

A ``DomainList`` is immutable: a reload builds a new one and the plugin swaps the reference.
``entries()`` gives the canonical texts in sorted order (``*``, then ``*.name``, then names).

Memory layout (the contract: tens of MB for a million entries, and no false positives):
the distinct names, sorted, are concatenated in one ``bytes`` blob as ``flags byte`` +
``lower-case wire name``; ``flags`` says whether the name is an exact entry, a wildcard
entry (``*.name``) or both. An open-addressing table (``array('I')``, linear probing, load
factor at most 1/4, probes run into zero padding instead of wrapping) maps
``hash(wire name) % size`` to the offset of the wire name in the blob (0 = empty slot). A probe
compares ``blob.startswith(suffix, offset)``: wire names are prefix-free, so this is an exact
comparison without slicing. For the 1M-name benchmark list that is a 17 MB blob plus a 16 MB
table (a ``set`` of wire names costs about 79 MB); the blob is also what ``entries()`` reads.
The table depends on this process's ``hash()`` seed, so pickling rebuilds from the texts (a
forked child, which has its parent's seed, hands over blob and table as they are: ``state``
and ``adopt``); the seed (SipHash, random per process) also keeps query names from being
crafted to collide.

Matching a query walks the suffixes of its wire name (``proxy.names.wire_suffixes``, once per
query and shared by every list a rule walk consults; ``bytes`` caches its hash): the full
name must hold an exact entry, each proper suffix (the root included) a wildcard entry.
That is one table probe per label plus one, and no allocation.
"""

from __future__ import annotations

import ipaddress
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from proxy.memory import release_free_heap
from proxy.names import MAX_TEXT, checked_to_wire, to_ascii, wire_suffixes

__all__ = [
    "FORMATS",
    "DomainList",
    "EntryError",
    "ListError",
    "LoadReport",
    "normalize_entry",
]

FORMATS = ("route53", "hosts", "adblock")

MAX_ERRORS = 100  # errors kept in a ListError (the total is counted)
MAX_SKIPPED_EXAMPLES = 5

_EXACT = 1
_WILDCARD = 2
_LOAD_DIVISOR = 4  # table slots per name: load factor <= 1/4 keeps misses near one probe
_PAD = 64  # zero slots after the table, so probes run off its end without wrapping
_TRIM_MIN_NAMES = 50_000  # smaller builds leave too little freed heap to be worth a trim

# The whole syntax of an ASCII entry after lower-casing: optional "*.", labels, optional dot.
_ASCII_ENTRY = re.compile(r"(\*\.)?((?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63})\.?")
_PLAIN_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_BYTE_POPCOUNT = [bin(i).count("1") for i in range(256)]
_SEED_MARK = hash(b"dnsfw domain list table")  # the same in a forked child, else not
_ADOPT_CHUNK = 1 << 20  # bytes of table copied per step by DomainList.adopt

_LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "local",
        "broadcasthost",
        "0.0.0.0",
    }
)
# "||name^" whose name has no pattern characters; anything else after "||" is a URL pattern
_ADBLOCK_DOMAIN = re.compile(r"\|\|([^*^|/:?=&@!#$\s]+)\^")
_COSMETIC_MARKERS = ("##", "#@#", "#?#", "#$#", "#%#")


@dataclass(frozen=True, slots=True)
class EntryError:
    """One bad line of a domain list."""

    file: str
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} - invalid domain list entry {self.text!r}: {self.reason}"


class ListError(Exception):
    """A domain list has bad lines; ``errors`` holds the first ``MAX_ERRORS``, ``total`` all."""

    def __init__(self, errors: list[EntryError], total: int | None = None) -> None:
        self.errors = errors
        self.total = len(errors) if total is None else total
        lines = [str(e) for e in errors]
        if self.total > len(errors):
            lines.append(f"... and {self.total - len(errors)} more invalid entries")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[ListError], tuple[list[EntryError], int]]:
        return ListError, (self.errors, self.total)  # from a child that built the list


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load kept and skipped; examples read ``file:line 'text': reason``."""

    entries: int
    skipped: int
    skipped_examples: tuple[str, ...]


def _diagnose(text: str) -> str:
    """Why a lower-case ASCII entry failed the syntax (it did)."""
    name = text[2:] if text.startswith("*.") else text
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return "empty name"
    for label in name.split("."):
        if not label:
            return "empty label"
        bad = next((c for c in label if c not in _LABEL_CHARS), None)
        if bad is not None:
            return f"illegal character {bad!r}"
        if len(label) > 63:
            return f"label longer than 63 octets ({len(label)})"
    return f"name longer than 255 octets in wire form ({len(text.rstrip('.')) + 2})"


def _check_shape(text: str) -> None:
    """Raise for the errors that need no label-by-label look (also before IDN conversion)."""
    if not text:
        raise ValueError("empty entry")
    if any(c.isspace() for c in text):
        raise ValueError("contains whitespace")
    if "*" in text.removeprefix("*."):
        raise ValueError("'*' is allowed only as the whole leftmost label ('*.name')")


def _parse_entry(text: str) -> tuple[str, int]:
    """Entry text -> (canonical name, _EXACT or _WILDCARD); name "" with _WILDCARD is ``*``."""
    if not text.isascii():
        _check_shape(text)
        prefix = "*." if text.startswith("*.") else ""
        text = prefix + to_ascii(text[len(prefix) :])
    text = text.lower()
    m = _ASCII_ENTRY.fullmatch(text)
    if m is not None:
        name = m[2]
        if m[1] is None:
            if len(name) <= MAX_TEXT:
                return name, _EXACT
        elif len(name) <= MAX_TEXT - 2:
            return name, _WILDCARD
    elif text in ("*", "*."):
        return "", _WILDCARD
    _check_shape(text)
    raise ValueError(_diagnose(text))


def normalize_entry(text: str) -> str:
    """Canonical route53 entry text (``*.example.com``, ``example.com``, ``*``).

    Lower-case, punycode, no trailing dot. Raises ``ValueError(reason)`` for a bad entry.
    """
    name, kind = _parse_entry(text.strip())
    if kind == _EXACT:
        return name
    return "*." + name if name else "*"


class _Collector:
    """Accumulates one load: name -> flags, errors (capped) and skipped lines (counted).

    ``lenient``: errors are skipped lines instead."""

    __slots__ = ("file", "lenient", "flags", "errors", "error_count", "skipped", "examples")

    def __init__(self, file: str, lenient: bool = False) -> None:
        self.file = file
        self.lenient = lenient
        self.flags: dict[str, int] = {}
        self.errors: list[EntryError] = []
        self.error_count = 0
        self.skipped = 0
        self.examples: list[str] = []

    def error(self, line: int, text: str, reason: str) -> None:
        if self.lenient:
            self.skip(line, text, reason)
            return
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(EntryError(self.file, line, text, reason))

    def skip(self, line: int, text: str, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < MAX_SKIPPED_EXAMPLES:
            self.examples.append(f"{self.file}:{line} {text!r}: {reason}")


def _load_route53(lines: Iterable[str], first_line: int, acc: _Collector) -> None:
    flags = acc.flags
    get = flags.get
    plain = _PLAIN_NAME.fullmatch
    for lineno, raw in enumerate(lines, first_line):
        text = raw.strip()
        if not text or text[0] == "#":
            continue
        if "#" in text:
            text = text.split("#", 1)[0].rstrip()
        # fast paths for the common lines, ASCII "name" and "*.name" without a trailing dot
        name = text.lower()
        if text.isascii() and len(name) <= MAX_TEXT:
            if plain(name) is not None:
                flags[name] = get(name, 0) | _EXACT
                continue
            if name.startswith("*.") and plain(name, 2) is not None:
                name = name[2:]
                flags[name] = get(name, 0) | _WILDCARD
                continue
        try:
            name, kind = _parse_entry(text)
        except ValueError as exc:
            acc.error(lineno, text, str(exc) + _other_format_hint(text))
            continue
        flags[name] = get(name, 0) | kind


def _other_format_hint(text: str) -> str:
    """For a route53-format line written in another format's syntax: which format it is."""
    fields = text.split()
    if len(fields) > 1:
        try:
            ipaddress.ip_address(fields[0])
        except ValueError:
            return ""
        return " (a hosts-format line: give the list 'format hosts')"
    if _ADBLOCK_DOMAIN.fullmatch(text):
        return " (an adblock rule: give the list 'format adblock')"
    return ""


def _is_local_name(name: str) -> bool:
    return name in _LOCAL_NAMES or (name.startswith("ip6-") and "." not in name)


def _load_hosts(lines: Iterable[str], first_line: int, acc: _Collector) -> None:
    flags = acc.flags
    get = flags.get
    addresses: set[str] = set()  # addresses already validated (nearly always 0.0.0.0)
    for lineno, raw in enumerate(lines, first_line):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        address = fields[0]
        if address not in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                acc.error(lineno, raw.strip(), "expected 'ADDRESS NAME...' with an IP address")
                continue
            addresses.add(address)
        if len(fields) == 1:
            acc.error(lineno, raw.strip(), "no host name after the address")
            continue
        for text in fields[1:]:
            try:
                name, kind = _parse_entry(text)
            except ValueError as exc:
                acc.error(lineno, text, str(exc))
                continue
            if kind != _EXACT:
                acc.error(lineno, text, "wildcards are not allowed in the hosts format")
            elif _is_local_name(name):
                acc.skip(lineno, text, "local host name")
            else:
                flags[name] = get(name, 0) | _EXACT


def _adblock_skip_reason(text: str) -> str:
    if any(marker in text for marker in _COSMETIC_MARKERS):
        return "cosmetic rule"
    if text.startswith("@@"):
        return "exception rule"
    if text.startswith("/"):
        return "regular expression rule"
    if "$" in text:
        return "rule with options"
    return "not a '||domain^' rule"


def _load_adblock(lines: Iterable[str], first_line: int, acc: _Collector) -> None:
    flags = acc.flags
    get = flags.get
    both = _EXACT | _WILDCARD
    for lineno, raw in enumerate(lines, first_line):
        text = raw.strip()
        if not text or text[0] == "!" or (text[0] == "[" and text[-1] == "]"):
            continue
        m = _ADBLOCK_DOMAIN.fullmatch(text)
        if m is None:
            if text[0] == "#" and not any(mk in text for mk in _COSMETIC_MARKERS):
                continue  # a "# comment" line, as in many hosts-derived lists
            acc.skip(lineno, text, _adblock_skip_reason(text))
            continue
        try:
            name, _ = _parse_entry(m[1])
        except ValueError as exc:
            acc.error(lineno, text, str(exc))
            continue
        flags[name] = get(name, 0) | both


_LOADERS = {"route53": _load_route53, "hosts": _load_hosts, "adblock": _load_adblock}


class DomainList:
    """An immutable set of route53 entries with O(labels) matching of wire-format names."""

    __slots__ = ("_blob", "_slots", "_size", "_all", "_count")

    def __init__(self, flags: dict[str, int]) -> None:
        """Build from ``{canonical name: flags}`` (``""`` with _WILDCARD is ``*``).

        Internal: use ``from_lines`` or ``from_entries``. Consumes ``flags``.
        """
        self._all = bool(flags.pop("", 0) & _WILDCARD)
        names = sorted(flags)
        kinds = bytes(map(flags.__getitem__, names))
        flags.clear()
        self._count = self._all + sum(map(_BYTE_POPCOUNT.__getitem__, kinds))
        count = len(names)
        self._size = count * _LOAD_DIVISOR + 1
        self._blob, self._slots = self._build(kinds, names, self._size)
        del names  # the last reference to the name strings: free them before trimming
        if count >= _TRIM_MIN_NAMES:
            release_free_heap()

    @staticmethod
    def _build(kinds: bytes, names: list[str], size: int) -> tuple[bytes, array]:
        """The blob of ``flags + wire name`` records and the hash table of their offsets."""
        # bytearray, not a list for b"".join: join holds an 80-byte Py_buffer per part
        blob = bytearray()
        slots = array("I", [0]) * (size + _PAD)
        last = len(slots) - 1  # stays 0: it ends every probe sequence
        offset = 1  # skips the flags byte of the first record
        for kind, name in zip(kinds, names, strict=True):
            wire = checked_to_wire(name)
            blob.append(kind)
            blob += wire
            i = hash(wire) % size
            while slots[i]:
                i += 1
            slots[i] = offset
            if i >= last:
                slots.extend(array("I", [0]) * _PAD)
                last = len(slots) - 1
            offset += len(wire) + 1
        return bytes(blob), slots

    @classmethod
    def from_lines(
        cls,
        lines: Iterable[str],
        *,
        fmt: str = "route53",
        file: str = "<inline>",
        first_line: int = 1,
        lenient: bool = False,
    ) -> tuple[DomainList, LoadReport]:
        """Parse a list file's lines in format ``fmt`` (see the module docstring).

        Raises ``ListError`` with every bad line (the first ``MAX_ERRORS`` kept, all counted),
        unless ``lenient`` (bad lines are then skipped and counted in the report), and
        ``ValueError`` for an unknown format.
        """
        loader = _LOADERS.get(fmt)
        if loader is None:
            raise ValueError(f"unknown domain list format {fmt!r}; expected one of {FORMATS}")
        acc = _Collector(file, lenient)
        loader(lines, first_line, acc)
        if acc.error_count:
            raise ListError(acc.errors, acc.error_count)
        dl = cls(acc.flags)
        return dl, LoadReport(len(dl), acc.skipped, tuple(acc.examples))

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> DomainList:
        """Build from route53 entry texts (admin edits); no comments. Raises ``ListError``."""
        acc = _Collector("<entries>")
        flags = acc.flags
        for index, text in enumerate(entries, 1):
            try:
                name, kind = _parse_entry(text.strip())
            except ValueError as exc:
                acc.error(index, text, str(exc))
                continue
            flags[name] = flags.get(name, 0) | kind
        if acc.error_count:
            raise ListError(acc.errors, acc.error_count)
        return cls(flags)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<DomainList {self._count} entries>"

    def __reduce__(self) -> tuple[Callable[[list[str]], DomainList], tuple[list[str]]]:
        # rebuild from the texts: the table depends on this process's hash() seed
        return DomainList.from_entries, (list(self.entries()),)

    def state(self) -> tuple[int, bytes, bytes, int, bool, int]:
        """The built structure as it is, for :meth:`adopt` in a process with this process's
        ``hash()`` seed: the parent of a forked child that built the list (``.child``)."""
        table = self._slots.tobytes()
        return (_SEED_MARK, self._blob, table, self._size, self._all, self._count)

    @classmethod
    def adopt(
        cls, seed_mark: int, blob: bytes, table: bytes, size: int, everything: bool, count: int
    ) -> DomainList:
        """A list from :meth:`state`; refused (ValueError) under another ``hash()`` seed.

        The table is copied into its array a chunk at a time: run in a thread (as ``.child``
        does), that lets the event loop take the GIL between chunks, where one 16 MB copy
        (page faults included) can hold it for tens of milliseconds.
        """
        if seed_mark != _SEED_MARK:
            raise ValueError("a DomainList's table was built under another hash() seed")
        slots = array("I")
        view = memoryview(table)
        for start in range(0, len(view), _ADOPT_CHUNK):
            slots.frombytes(view[start : start + _ADOPT_CHUNK])
        dl = cls.__new__(cls)
        dl._blob, dl._slots, dl._size, dl._all, dl._count = blob, slots, size, everything, count
        return dl

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + self._blob.__sizeof__() + self._slots.__sizeof__()

    def matches(self, qname: bytes) -> bool:
        """Whether a lower-case wire-format name matches an entry."""
        return self.match_suffixes(wire_suffixes(qname))

    def match_suffixes(self, suffixes: Sequence[bytes]) -> bool:
        """Same as ``matches``, given ``wire_suffixes(qname)``."""
        if self._all:
            return True
        slots = self._slots
        size = self._size
        blob = self._blob
        startswith = blob.startswith
        need = _EXACT  # the full name needs an exact entry, its proper suffixes a wildcard
        for suffix in suffixes:
            i = hash(suffix) % size
            offset = slots[i]
            while offset:
                if startswith(suffix, offset):
                    if blob[offset - 1] & need:
                        return True
                    break
                i += 1
                offset = slots[i]
            need = _WILDCARD
        return False

    def _flags_of(self, wire: bytes) -> int:
        i = hash(wire) % self._size
        offset = self._slots[i]
        while offset:
            if self._blob.startswith(wire, offset):
                return self._blob[offset - 1]
            i += 1
            offset = self._slots[i]
        return 0

    def __contains__(self, entry: object) -> bool:
        """Whether an entry (any spelling that normalises to it) is in the list."""
        if not isinstance(entry, str):
            return False
        try:
            name, kind = _parse_entry(entry.strip())
        except ValueError:
            return False
        if not name:
            return self._all
        return bool(self._flags_of(checked_to_wire(name)) & kind)

    def covers(self, entry: str) -> bool:
        """Whether every name that the (canonical) route53 ``entry`` matches, this list
        matches too (``dnsfw check``'s shadowed-rule warnings)."""
        if self._all:
            return True
        name, kind = _parse_entry(entry)
        if not name:  # '*' is covered by '*' alone
            return False
        suffixes = wire_suffixes(checked_to_wire(name))
        if kind == _EXACT:
            return self.match_suffixes(suffixes)
        # every name below `name` is matched when `name` or a parent has a wildcard entry
        return any(self._flags_of(suffix) & _WILDCARD for suffix in suffixes)

    def entries(self) -> Iterator[str]:
        """Canonical entry texts in sorted order: ``*``, then ``*.name`` entries, then names."""
        if self._all:
            yield "*"
        for name in self._names(_WILDCARD):
            yield "*." + name
        yield from self._names(_EXACT)

    def _names(self, kind: int) -> Iterator[str]:
        blob = self._blob
        pos = 0
        end = len(blob)
        while pos < end:
            flags = blob[pos]
            pos += 1
            labels = []
            length = blob[pos]
            while length:
                labels.append(blob[pos + 1 : pos + 1 + length])
                pos += length + 1
                length = blob[pos]
            pos += 1
            if flags & kind:
                yield b".".join(labels).decode("ascii")
