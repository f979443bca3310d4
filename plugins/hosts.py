"""hosts - answer A, AAAA and PTR queries from an /etc/hosts style file (CoreDNS's ``hosts``).

Syntax::

    hosts [FILE [ZONES...]] {
        [INLINE]
        ttl SECONDS
        no_reverse
        reload DURATION
        fallthrough [ZONES...]
        fallthrough_unsupported
    }

Once per server block.

* **FILE**: the hosts file, default ``/etc/hosts``; a relative path is relative to the
  Corefile's directory (CoreDNS: to the ``root`` plugin's directory, which dnsfw does not
  have). A file that does not exist is a warning (``dnsfw check`` prints it): the inline
  entries are served, and the file is read once it appears. One that cannot be accessed for
  another reason is an error (``unable to access hosts file 'PATH': ...``).
* **ZONES**: the zones it answers for (default: the server block's). Entries for names
  outside them are ignored. PTR queries are answered for any name, zones or not.
* **INLINE**: lines in the block that are not options are hosts file lines, read after the
  file (their addresses come after the file's for the same name). After a ``fallthrough``
  line, an unknown word is an error (``unknown property 'X'``), as in CoreDNS.
* ``ttl SECONDS``: the TTL of every record, 1 to 65535, default 3600 (errors: ``ttl needs a
  time in second``, ``ttl needs a number of second``, ``ttl provided is invalid``).
* ``reload DURATION``: how often the file's modification time and size are checked, default
  ``5s``; ``0`` disables it (errors: ``reload needs a duration (zero seconds to disable)``,
  ``invalid duration for reload 'X'``, ``invalid negative duration for reload 'X'``). A
  changed file is read again; a deleted one keeps its last entries, as in CoreDNS. The read
  runs on the event loop (CoreDNS's runs in a goroutine): 100,000 lines take about 0.7 s on
  a busy 2-core machine, during which queries wait.
* ``no_reverse``: no PTR records from the entries.
* ``fallthrough [ZONES...]``: a name in ZONES (default: every name) with no entry goes to the
  next plugin instead of being answered.
* ``fallthrough_unsupported``: a query of another type than A, AAAA and PTR for a known name
  goes to the next plugin too (scoped like ``fallthrough``, which it needs:
  ``fallthrough_unsupported requires fallthrough``).

The file: ``ADDRESS NAME [ALIASES...]`` per line, ``#`` starts a comment, an IPv6 zone
(``fe80::1%eth0``) is dropped. ``*.example.com`` matches one label below ``example.com`` (not
``example.com`` itself, not two labels below), after the exact names; wildcards get no PTR.

Answers (CoreDNS's, authoritative, AA set):

* A / AAAA for a name with entries of that family: its addresses, in file order.
* Any other type for a known name (an A query for a name with only IPv6 entries, an MX):
  NOERROR with no answer (NODATA), or the next plugin with ``fallthrough_unsupported``.
* PTR for an address of an entry: its names (no entry: the next plugin, whatever
  ``fallthrough`` says).
* A name in the zones with no entry: the next plugin with ``fallthrough``, else SERVFAIL (CoreDNS
  has no SOA for an NXDOMAIN here, so it answers SERVFAIL).
* A name outside the zones: the next plugin.

Metrics: ``coredns_hosts_entries{hostsfile}`` (addresses, wildcard addresses and reverse
names of the file and the inline lines) and ``coredns_hosts_reload_timestamp_seconds`` (the
file's modification time when it was last read).

Replays: the file and inline entries are read into one generation object, swapped whole on a
reload. An answer is offered for replay with that generation as its guard (one identity
check on the replay path, so the hit path costs what a cache hit does), and a query passed to
the next plugin for a name in the zones records the same guard: once the file changes, no
replay answers from the old entries, nor skips hosts for a name that now has one.

Examples::

    . {
        hosts
    }

    . {
        hosts example.hosts example.org example.net {
            fallthrough
        }
    }

    example.hosts example.org {
        hosts {
            10.0.0.1 example.org
            fallthrough
        }
        whoami
    }

    . {
        hosts example.hosts example.com {
            192.168.1.10 *.example.com
            192.168.1.11 www.example.com
            fallthrough example.com
        }
        forward . 8.8.8.8
    }
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat

import structlog

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.fall import NEVER, Fall, from_args
from proxy.metrics import Registry
from proxy.names import ROOT, in_zones, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Guard
from proxy.request import Request, Response

log = structlog.get_logger("dnsfw.hosts")

ONCE = True
DEFAULT_PATH = "/etc/hosts"
DEFAULT_TTL = 3600
DEFAULT_RELOAD = 5.0
_V4_MAPPED = bytes(10) + b"\xff\xff"
_WILD = b"\x01*"
_BYTE = [bytes((i,)) for i in range(256)]
_IN_ADDR = text_to_wire("in-addr.arpa")
_IP6 = text_to_wire("ip6.arpa")


def setup(directive: Directive, ctx: SetupContext) -> Hosts:
    args = directive.args
    path = DEFAULT_PATH
    if args:
        path = os.path.join(os.path.dirname(os.path.abspath(ctx.app.conf_path)), args[0].text)
        _check_path(path, directive, ctx)
    zones = ctx.zones_from(args[1:])
    options = Options(ttl=DEFAULT_TTL, reload=DEFAULT_RELOAD)
    inline: list[str] = []
    for line in directive.block or ():
        word = line.name.text
        if word == "fallthrough":
            options.fall = from_args(line.args)
        elif word == "fallthrough_unsupported":
            if line.args:
                raise line.arg_error()
            options.unsupported = True
        elif word == "no_reverse":
            options.reverse = False
        elif word == "ttl":
            options.ttl = _ttl(line)
        elif word == "reload":
            options.reload = _reload(line)
        elif options.fall is NEVER:
            inline.append(" ".join([word, *line.values]))
        else:
            raise line.error(f"unknown property '{word}'")
    if options.unsupported and options.fall is NEVER:
        raise directive.error("fallthrough_unsupported requires fallthrough")
    metrics = ctx.app.metrics
    return Hosts(path, zones, options, "\n".join(inline).encode(), metrics)


def _check_path(path: str, directive: Directive, ctx: SetupContext) -> None:
    """CoreDNS's checks: a missing file or a directory is a warning, any other error fatal."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        ctx.app.warn(directive.file, directive.line, f"File does not exist: {path}")
        return
    except OSError as err:
        reason = f"stat {path}: {(err.strerror or str(err)).lower()}"
        raise directive.error(f"unable to access hosts file '{path}': {reason}") from None
    if is_dir:
        ctx.app.warn(directive.file, directive.line, f'Hosts file "{path}" is a directory')


def _ttl(line: Directive) -> int:
    if not line.args:
        raise line.error("ttl needs a time in second")
    try:
        ttl = int(line.args[0].text)
    except ValueError:
        raise line.error("ttl needs a number of second") from None
    if ttl <= 0 or ttl > 65535:
        raise line.error("ttl provided is invalid")
    return ttl


def _reload(line: Directive) -> float:
    if len(line.args) != 1:
        raise line.error("reload needs a duration (zero seconds to disable)")
    token = line.args[0]
    if token.text.lstrip("+-") == "0":  # Go's ParseDuration takes a bare zero
        return 0.0
    negative = token.text.startswith("-")  # Go parses it, then CoreDNS refuses the sign
    try:
        parse_duration(Token(token.text[1:], token.file, token.line) if negative else token)
    except CorefileError:
        raise line.error(f"invalid duration for reload '{token.text}'") from None
    if negative:
        raise line.error(f"invalid negative duration for reload '{token.text}'")
    return parse_duration(token)


class Options:
    __slots__ = ("ttl", "reload", "reverse", "fall", "unsupported")

    def __init__(self, ttl: int, reload: float) -> None:
        self.ttl = ttl
        self.reload = reload
        self.reverse = True
        self.fall: Fall = NEVER
        self.unsupported = False


class HostsMap:
    """One parse of hosts lines: wire name -> packed addresses per family, wildcard owners
    (``*.zone``) apart, and packed address -> PTR target names (wire)."""

    __slots__ = ("name4", "name6", "wild4", "wild6", "addr")

    def __init__(self) -> None:
        self.name4: dict[bytes, list[bytes]] = {}
        self.name6: dict[bytes, list[bytes]] = {}
        self.wild4: dict[bytes, list[bytes]] = {}
        self.wild6: dict[bytes, list[bytes]] = {}
        self.addr: dict[bytes, list[bytes]] = {}

    def __len__(self) -> int:
        """CoreDNS's Map.Len: every address of every name, and every reverse name."""
        maps = (self.name4, self.name6, self.wild4, self.wild6, self.addr)
        return sum(len(values) for m in maps for values in m.values())


def parse(text: bytes, zones: frozenset[bytes], reverse: bool) -> HostsMap:
    """Hosts file lines into a map; lines that do not parse and names outside ``zones`` are
    skipped, as CoreDNS skips them. Written for speed (one decode, one split per line, each
    name converted once, no call per name seen before): 100,000 lines load in about 0.5 s."""
    hmap = HostsMap()
    wires: dict[str, bytes | None] = {}  # each name seen, to its wire form (None: not served)
    everything = zones == {ROOT}
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        if "#" in line:
            line = line[: line.index("#")]
        fields = line.split()
        if len(fields) < 2:
            continue
        packed = _address(fields[0])
        if packed is None:
            continue
        v4 = len(packed) == 4
        names = hmap.name4 if v4 else hmap.name6
        for field in fields[1:]:
            name = wires.get(field, b"")
            if name == b"":
                name = wires[field] = _name(field, zones, everything)
            if name is None:
                continue
            if name[1] == 42 and name[0] == 1:  # "*": a wildcard owner, no PTR
                names = hmap.wild4 if v4 else hmap.wild6
                names.setdefault(name, []).append(packed)
                names = hmap.name4 if v4 else hmap.name6
                continue
            try:
                names[name].append(packed)
            except KeyError:
                names[name] = [packed]
            if reverse:
                try:
                    hmap.addr[packed].append(name)
                except KeyError:
                    hmap.addr[packed] = [name]
    return hmap


def _address(text: str) -> bytes | None:
    """The packed address (4 bytes for IPv4 and IPv4-mapped IPv6) of a hosts line, or None."""
    try:
        if ":" not in text:
            return socket.inet_pton(socket.AF_INET, text)
        packed = socket.inet_pton(socket.AF_INET6, text.split("%", 1)[0])
    except (OSError, UnicodeEncodeError):
        return None
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


def _name(field: str, zones: frozenset[bytes], everything: bool) -> bytes | None:
    """The wire form of a hosts name when it is a valid name in ``zones``, else None."""
    if field.isascii():
        raw = field.lower().rstrip(".").encode()
        labels = raw.split(b".")
        if b"" in labels or len(raw) > 253 or (len(raw) > 63 and max(map(len, labels)) > 63):
            return None
        name = b"".join([_BYTE[len(label)] + label for label in labels]) + ROOT
    else:
        try:
            name = text_to_wire(field)
        except ValueError:
            return None
    return name if everything or in_zones(name, zones) else None


def reverse_address(qname: bytes) -> bytes | None:
    """The packed address a reverse name (``4.3.2.1.in-addr.arpa``, 32 nibbles under
    ``ip6.arpa``) stands for, or None."""
    labels = []
    off = 0
    while qname[off]:
        length = qname[off]
        labels.append(qname[off + 1 : off + 1 + length])
        off += length + 1
    if len(labels) == 6 and qname.endswith(_IN_ADDR):
        try:
            return socket.inet_pton(socket.AF_INET, b".".join(reversed(labels[:4])).decode())
        except (OSError, UnicodeDecodeError):
            return None
    if len(labels) == 34 and qname.endswith(_IP6):
        digits = b"".join(reversed(labels[:32]))
        try:
            packed = bytes.fromhex(digits.decode("ascii")) if len(digits) == 32 else b""
        except (ValueError, UnicodeDecodeError):
            return None
        if len(packed) == 16:
            return packed[12:] if packed.startswith(_V4_MAPPED) else packed
    return None


class Generation(Guard):
    """The entries one read produced (the file's and the inline ones): a replay's guard, True
    while they are still the plugin's."""

    __slots__ = ("hosts", "file", "inline")

    def __init__(self, hosts: Hosts, file: HostsMap, inline: HostsMap) -> None:
        self.hosts = hosts
        self.file = file
        self.inline = inline

    def __call__(self) -> bool:
        return self.hosts.current is self

    def lookup(self, qname: bytes, v4: bool) -> list[bytes]:
        """The addresses of one family for ``qname``: the file's, then the inline ones."""
        if v4:
            return _lookup(self.file.name4, self.file.wild4, qname) + _lookup(
                self.inline.name4, self.inline.wild4, qname
            )
        return _lookup(self.file.name6, self.file.wild6, qname) + _lookup(
            self.inline.name6, self.inline.wild6, qname
        )

    def names(self, packed: bytes) -> list[bytes]:
        return self.file.addr.get(packed, []) + self.inline.addr.get(packed, [])


def _lookup(
    names: dict[bytes, list[bytes]], wild: dict[bytes, list[bytes]], qname: bytes
) -> list[bytes]:
    found = names.get(qname)
    if found is not None:
        return found
    if wild:
        rest = qname[qname[0] + 1 :]
        if rest != ROOT:
            return wild.get(_WILD + rest, [])
    return []


class Hosts(Plugin):
    name = "hosts"
    replays = TAKES_PART  # answers are offered with their generation as the guard

    def __init__(
        self, path: str, zones: tuple[str, ...], options: Options, inline: bytes, metrics: Registry
    ) -> None:
        self.path = path
        self.zones = frozenset(text_to_wire(zone) for zone in zones)
        self.options = options
        self.inline = parse(inline, self.zones, options.reverse)
        self.current = Generation(self, HostsMap(), self.inline)
        self.stamp: tuple[int, int] | None = None  # the file's (mtime_ns, size) when read
        self.task: asyncio.Task[None] | None = None
        self.entries = metrics.gauge(
            "coredns_hosts_entries",
            "The combined number of entries in hosts and Corefile.",
            ("hostsfile",),
        )
        self.reloaded = metrics.gauge(
            "coredns_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
        )

    async def serve(self, req: Request, next: Handler) -> Response:
        # every query passed on for a name in the zones (or a reverse name) records the
        # generation: once the entries change, the next plugin's answer is not replayed
        qname = req.qname_wire
        qtype = req.qtype
        gen = self.current
        if qtype == wire.TYPE_PTR:
            packed = reverse_address(qname)
            targets = gen.names(packed) if packed is not None else []
            if not targets:
                req.record(gen)  # an address with no entry now may get one on a reload
                return await next(req)
            ttl = self.options.ttl
            answer = tuple(wire.rr(wire.QNAME_PTR, qtype, ttl, t) for t in targets)
            return self._answer(req, gen, answer)
        if not in_zones(qname, self.zones):
            return await next(req)
        if qtype == wire.TYPE_A or qtype == wire.TYPE_AAAA:
            found = gen.lookup(qname, qtype == wire.TYPE_A)
            if found:
                ttl = self.options.ttl
                return self._answer(
                    req, gen, tuple(wire.rr(wire.QNAME_PTR, qtype, ttl, ip) for ip in found)
                )
        elif self.options.unsupported and self.options.fall.through(qname):
            req.record(gen)
            return await next(req)
        if gen.lookup(qname, True) or gen.lookup(qname, False):
            return self._answer(req, gen, ())
        if self.options.fall.through(qname):
            req.record(gen)
            return await next(req)
        req.no_replay()
        return req.reply(wire.SERVFAIL, flags=0, source="hosts")

    def _answer(self, req: Request, gen: Generation, answer: tuple[bytes, ...]) -> Response:
        return req.fixed_reply(wire.NOERROR, gen, flags=wire.AA, answer=answer, source="hosts")

    async def start(self) -> None:
        self.read()
        if self.options.reload > 0:
            self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload)
            self.read()

    def read(self) -> None:
        """Read the file again when its modification time or size changed (CoreDNS's test)."""
        try:
            with open(self.path, "rb") as f:
                info = os.fstat(f.fileno())
                stamp = (info.st_mtime_ns, info.st_size)
                if stamp == self.stamp:
                    return
                text = f.read()
        except OSError:
            return  # missing or unreadable: the last entries stay (setup warned)
        hmap = parse(text, self.zones, self.options.reverse)
        self.current = Generation(self, hmap, self.inline)
        self.stamp = stamp
        self.entries.labels(self.path).set(len(hmap) + len(self.inline))
        self.reloaded.set(info.st_mtime_ns / 1e9)
        log.debug("hosts_read", path=self.path, entries=len(hmap))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
