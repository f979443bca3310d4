"""log - one line per query: CoreDNS's formats, or Route 53 Resolver query-log JSON.

Syntax::

    log [NAMES...] [FORMAT] {
        class success|denial|error|all...
        format common|combined|route53|"FORMAT"
        output stdout|stderr|PATH
        buffer N
        account_id ID
        region REGION
        vpc_id VPC
        identity ec2
        firewall_allow
    }

Arguments, as CoreDNS reads them: no argument logs every name (scope ``.``); one argument is
always a NAME, even when it contains ``{``; with two or more, the last one is the FORMAT when
it contains ``{`` and every other one is a NAME. NAMES are zones, read as server block keys
are (a CIDR is all its reverse zones, ``10.0.0.0/27`` the 32 of its addresses; international
names in A-labels).

Which queries are logged (CoreDNS's rules). Every ``log`` line of a server block is a rule, in
Corefile order; the first rule with a NAME that is the query name or one of its parents takes
the query and writes at most one line for it, if the reply's class is one of its ``class``
values; a query no rule takes is not logged. Classes: ``success`` (NOERROR with an answer, or a
referral), ``denial`` (NXDOMAIN, or NODATA: NOERROR with no answer), ``error`` (every other
rcode: SERVFAIL, REFUSED, FORMERR...), ``all`` (the default). Several ``class`` lines add up.
Unlike CoreDNS's code (but as its README says), a denial needs no SOA in the authority section,
so synthesised block answers are denials too. ``log`` wraps every stage but the ones before it
in ``plugins.ORDER``, so it sees the final reply: cache hits and firewall answers are logged
(Route 53 leaves out cache hits; dnsfw logs every query answered).

Options:

``format``
    ``common`` (the default), ``combined``, ``route53``, or a format with placeholders (also
    accepted as the FORMAT argument). ``common`` is CoreDNS's
    ``{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode}
    {>rflags} {rsize} {duration}``, ``combined`` adds `` "{>opcode}"``; ``{common}`` and
    ``{combined}`` expand inside a format. Placeholders: ``{remote}`` client IP (IPv6 in
    brackets), ``{port}`` client port, ``{local}`` the listener's IP (``-`` on a wildcard
    listener), ``{type}`` ``{class}`` ``{name}`` (lower case, trailing dot), ``{proto}``
    (udp/tcp), ``{size}`` query bytes, ``{rsize}`` reply bytes, ``{rcode}``, ``{duration}``
    (seconds, e.g. ``0.000532s``), ``{>rflags}`` (``qr,aa,tc,rd,ra,z,ad,cd``), ``{>bufsize}``
    (the client's EDNS size, 512 without EDNS, 65535 over TCP), ``{>do}``, ``{>id}``,
    ``{>opcode}``, ``{/log/class}`` and ``{/log/type}`` (NOERROR, NXDOMAIN, NODATA,
    DELEGATION, OTHERERROR), and ``{/LABEL}``: the annotation ``LABEL`` of the query, where
    ``A/B`` reads field B of annotation A (``{/firewall/action}``, ``{/firewall/rule}``,
    ``{/firewall/group}``, ``{/firewall/list}``, ``{/firewall/name}``: the CNAME/DNAME target
    the rule matched, ``-`` when it matched the query name). Anything unknown or empty prints ``-``.
``output``
    ``stdout`` (default), ``stderr`` (shared with the service log), or a file PATH (relative
    to the Corefile's directory; its directory must exist) opened for appending, created with
    mode 0640. Text lines on stdout and stderr start with ``[INFO] `` as CoreDNS prints them;
    lines in files and JSON lines never do. The service log (start-up, errors, drop warnings)
    goes through structlog to stderr and never into a query log. A reload reopens files (the
    new configuration opens, the old one flushes and closes); so does :meth:`Log.reopen`.
``buffer N``
    Lines waiting for the writer at most (default 65536, 1 to 10000000). Below the bound
    nothing is dropped; when the writer falls behind (a stuck disk or pipe), lines beyond it
    are dropped and counted, and a warning ``query_log_dropped`` is logged at most every 10 s.
``account_id``, ``region``, ``vpc_id``, ``identity ec2``, ``firewall_allow``
    ``format route53`` only. The first three fill the JSON fields of the same names (default
    empty). ``identity ec2`` reads the instance's account, region and VPC from the EC2
    instance metadata service (IMDSv2) once at start-up, with a 1 s limit; explicit options win
    over it, and a failure is logged and leaves the fields as they are (see
    :mod:`plugins.log.identity`; ``$DNSFW_IMDS_ENDPOINT`` overrides the address).
    ``firewall_allow`` adds the firewall fields to ALLOW decisions too (Route 53 logs them
    only for ALERT and BLOCK).

``format route53`` writes one JSON object per line, byte-compatible with Route 53 Resolver
query logs (compact, ASCII with ``\\uXXXX`` escapes as JSON allows), keys in Route 53's order::

    {"version":"1.100000","account_id":"123456789012","region":"ap-northeast-1",
     "vpc_id":"vpc-0abc","query_timestamp":"2024-05-01T09:12:33Z",
     "query_name":"www.google.com.","query_type":"A","query_class":"IN","rcode":"NOERROR",
     "answers":[{"Rdata":"www3.l.google.com.","Type":"CNAME","Class":"IN"},
                {"Rdata":"142.250.207.4","Type":"A","Class":"IN"}],
     "srcaddr":"10.0.0.150","srcport":"41122","transport":"UDP","srcids":{}}

(shown wrapped; a line has no whitespace). ``query_timestamp`` is the UTC time the query
arrived, to the second. ``query_name`` is the query name in lower case with its trailing dot:
Route 53's examples are all lower case, and folding case keeps ``GROUP BY query_name`` right
when clients randomise case (DNS 0x20). ``query_type`` is the mnemonic or ``TYPEnnn``,
``rcode`` the rcode's name. ``answers`` lists the answer section in order (the whole CNAME
chain), ``[]`` when empty; names in CNAME, DNAME, NS, PTR, MX, SRV and SOA Rdata are lower-cased
too (their case would otherwise come from whichever client filled the cache). ``srcport`` is a string, as in Route 53 (``0`` for a DoH client taken from
``X-Forwarded-For``). ``transport`` is ``UDP``, ``TCP``, ``DoT`` (DNS over TLS), ``DoH``
(DNS over HTTPS, as Route 53 names its DoH endpoints' queries) or ``DoQ`` (DNS over QUIC). ``srcids`` is always
``{}``: Route 53 puts the *client's* EC2 instance ID there, which a resolver cannot know.
When the firewall decided ALERT or BLOCK (or ALLOW with ``firewall_allow``), the line ends
with ``"firewall_rule_action"``, ``"firewall_rule_group_id"`` (the rule group's name) and
``"firewall_domain_list_id"`` (the domain list's name). When that rule matched a CNAME/DNAME
target of the answer (``redirection inspect``) rather than the query name, ``query_name`` stays
the query's and the fields are the target's rule, group and list, as Route 53 logs them; dnsfw
adds ``"firewall_redirection_domain"``, the target (``"wildcard.fedoraproject.org."``), which
Route 53 does not log. The field names and their order are :mod:`plugins.log.route53`, which
``dnsfw audit`` reads logs by.

Annotations: ``log`` reads ``req.meta["firewall"]`` (an object with ``action``, ``group``,
``rule`` and ``list`` attributes, set by the ``firewall`` plugin) and sets
``req.meta["log"]`` (to itself) on the queries a rule takes, so an inner ``log`` line does not
log them twice.

Replays (:mod:`proxy.replay`): a query's Route 53 line is an object holding the fragments
fixed by its question, reply and firewall decision, stamped with the client and the time when
kept; a UDP query answered again without the chain (a cache hit) gets its line from the same
object. A ``class`` filter takes part too (a replayed answer is of the same class). A ``log``
with a CoreDNS text format does not (each line holds the query's own id and duration), so the
queries it takes run the whole chain; the server says so at start (``replays_off``).

Performance: on the query path ``log`` renders the line and appends it to a bounded list.
A Route 53 line for an answer seen before (every cache hit) is built from memoised fragments
in under a microsecond; the first line of a new answer reads its records from the wire once
(:mod:`plugins.log.answers`, a few µs; rare record types go through dnspython, about 100 µs).
Joining, encoding and writing happen in batches every 50 ms in a writer thread
(:mod:`plugins.log.output`), so a slow output never delays a reply. A clean stop writes every
pending line before exiting.

Metrics: ``dnsfw_log_dropped_total{output}`` (lines not written: the list was full or the write
failed) and ``dnsfw_log_lines_total{output}`` (lines written).

Examples::

    . {
        log                                   # every query, common format, stdout
        forward . 10.0.0.2
    }

    . {
        log example.org "{remote} {type} {name} {rcode} {/firewall/action}" {
            class denial error
        }
        log . {
            format route53
            output /var/log/dnsfw/query.log
            identity ec2
        }
        firewall { ... }
        forward . 10.0.0.2
    }
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any

import structlog

from proxy.config import SetupContext
from proxy.corefile import Directive, Token, zones_of
from proxy.names import in_zones, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect, not_replayed
from proxy.request import Request, Response

from . import identity, output
from .formats import (
    CLASSES,
    COMBINED,
    COMMON,
    Route53Format,
    TextFormat,
    response_class,
)

log = structlog.get_logger("dnsfw.log")

FORMATS = {"common": COMMON, "combined": COMBINED}
ROUTE53 = "route53"
ROUTE53_OPTIONS = ("account_id", "region", "vpc_id", "identity", "firewall_allow")
PROPERTIES = ("class", "format", "output", "buffer", *ROUTE53_OPTIONS)  # of the block
MAX_BUFFER = 10_000_000
CONSOLE_PREFIX = "[INFO] "


@dataclass(frozen=True)
class Settings:
    """One ``log`` line, validated."""

    names: tuple[str, ...]  # zones, lower-case FQDNs ("." logs everything)
    format: str  # "route53" or a CoreDNS format
    classes: frozenset[str]  # empty: all
    output: str  # "stdout", "stderr" or an absolute path
    buffer: int = output.DEFAULT_BUFFER
    account_id: str = ""
    region: str = ""
    vpc_id: str = ""
    identity_ec2: bool = False
    firewall_allow: bool = False


def setup(directive: Directive, ctx: SetupContext) -> Log:
    settings = parse(directive)
    metrics = ctx.app.metrics
    metrics.gauge_func(
        "dnsfw_log_dropped_total",
        "Query-log lines not written: the writer's list was full or the write failed.",
        ("output",),
        output.dropped_samples,
        kind="counter",
    )
    metrics.gauge_func(
        "dnsfw_log_lines_total",
        "Query-log lines written.",
        ("output",),
        output.written_samples,
        kind="counter",
    )
    return Log(settings)


def parse(directive: Directive) -> Settings:
    """Validate one ``log`` directive (errors name the offending token's file and line)."""
    args = directive.args
    fmt: str | None = None
    if len(args) >= 2 and "{" in args[-1].text:
        fmt = args[-1].text
        args = args[:-1]
    names = tuple(zone for token in args for zone in zones_of(token)) if args else (".",)
    values: dict[str, object] = {}
    classes: set[str] = set()
    seen: dict[str, Token] = {}
    for line in directive.block or ():
        key = line.name.text
        if line.block is not None:
            raise line.error(f"'{key}' takes no block")
        if key == "class":
            classes.update(_classes(line))
            continue
        if key in seen:
            raise line.error(f"'{key}' given twice (first at line {seen[key].line})")
        seen[key] = line.name
        if key == "format":
            if fmt is not None:
                raise line.error("format given twice (as an argument and in the block)")
            fmt = _format(line)
        else:
            values[key] = _option(line)
    fmt = COMMON if fmt is None else fmt
    if fmt != ROUTE53:
        for key in ROUTE53_OPTIONS:
            if key in seen:
                raise directive.error(f"'{key}' applies to format route53 only", seen[key])
    if "all" in classes:
        classes.clear()
    return Settings(
        names=names,
        format=fmt,
        classes=frozenset(classes),
        output=str(values.pop("output", "stdout")),
        identity_ec2=bool(values.pop("identity", False)),
        firewall_allow=bool(values.pop("firewall_allow", False)),
        **values,  # type: ignore[arg-type]
    )


def _one_arg(line: Directive) -> Token:
    if len(line.args) != 1:
        raise line.arg_error()
    return line.args[0]


def _classes(line: Directive) -> list[str]:
    if not line.args:
        raise line.arg_error()
    for token in line.args:
        if token.text not in (*CLASSES, "all"):
            raise line.error(f"invalid Class: {token.text} (success, denial, error or all)", token)
    return line.values


def _format(line: Directive) -> str:
    token = _one_arg(line)
    text = token.text
    if text == ROUTE53:
        return ROUTE53
    if text in FORMATS:
        return FORMATS[text]
    if "{" not in text:
        raise line.error(
            f"unknown format '{text}' (common, combined, route53 or a \"{{placeholder}}\" format)",
            token,
        )
    return text


def _option(line: Directive) -> object:
    key = line.name.text
    if key == "output":
        return _output(line)
    if key == "buffer":
        token = _one_arg(line)
        if not token.text.isdigit() or not 1 <= int(token.text) <= MAX_BUFFER:
            raise line.error(f"buffer must be a number from 1 to {MAX_BUFFER}", token)
        return int(token.text)
    if key in ("account_id", "region", "vpc_id"):
        token = _one_arg(line)
        if not token.text:
            raise line.error(f"empty {key}", token)
        return token.text
    if key == "identity":
        token = _one_arg(line)
        if token.text != "ec2":
            raise line.error(f"unknown identity source '{token.text}' (only ec2)", token)
        return True
    if key == "firewall_allow":
        if line.args:
            raise line.arg_error()
        return True
    raise line.unknown_property(PROPERTIES)


def _output(line: Directive) -> str:
    token = _one_arg(line)
    text = token.text
    if text in ("stdout", "stderr"):
        return text
    if not text:
        raise line.error("empty output path", token)
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(token.file)), text))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise line.error(f"output directory {parent} does not exist", token)
    if os.path.isdir(path):
        raise line.error(f"output {path} is a directory", token)
    return path


class Log(Plugin):
    """One ``log`` line: takes the queries in its NAMES and renders their lines for its writer."""

    name = "log"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.route53: Route53Format | None = None
        refresh_clock = None
        self.replays = TAKES_PART
        if settings.format == ROUTE53:
            route53 = self.route53 = Route53Format(log_allow=settings.firewall_allow)
            route53.set_identity(settings.account_id, settings.region, settings.vpc_id)
            self._line = self._route53_line
            refresh_clock = route53.refresh_clock
        else:
            self._text = TextFormat(settings.format)
            console = settings.output in ("stdout", "stderr")
            self._prefix = CONSOLE_PREFIX if console else ""
            self._line = self._text_line
            self.replays = not_replayed(
                f"log format {self._format_name()} prints each query's own id and duration"
            )
        self.sink = output.Sink(settings.output, settings.buffer, on_wake=refresh_clock)
        # the query path reads these directly
        self._lines = self.sink.lines
        self._limit = settings.buffer
        self._early = self.sink.early
        self._classes = settings.classes
        zones = frozenset(text_to_wire(n) for n in settings.names)
        self._zones = None if b"\x00" in zones else zones

    async def serve(self, req: Request, next: Handler) -> Response:
        meta = req.meta
        if "log" in meta or (self._zones is not None and not in_zones(req.qname_wire, self._zones)):
            return await next(req)
        meta["log"] = self
        resp = await next(req)
        if len(self._lines) >= self._limit:
            self.sink.dropped += 1  # the writer is behind: not even rendered
            req.no_replay()  # a replay could not tell the drop from a line
            return resp
        classes = self._classes
        if classes and response_class(resp) not in classes:
            return resp  # a replayed answer is of the same class: nothing to record either
        try:
            req.run(self._line(req, resp))
        except Exception as exc:  # noqa: BLE001 - a line that cannot be rendered is a bug
            self.sink.render_failed(exc)  # to report, never a reason to fail the query
            req.no_replay()
        return resp

    def keep(self, line: str) -> None:
        """Queue ``line`` for the writer (or count it dropped when the queue is full)."""
        lines = self._lines
        if len(lines) < self._limit:
            lines.append(line)
            if len(lines) == self._early:
                self.sink.wake_early()
        else:
            self.sink.dropped += 1

    def _route53_line(self, req: Request, resp: Response) -> Route53Line:
        middle, tail = self.route53.pieces(req, resp)  # type: ignore[union-attr]
        return Route53Line(self.keep, self.route53.stamp, middle, tail)  # type: ignore[union-attr]

    def _text_line(self, req: Request, resp: Response) -> TextLine:
        return TextLine(self.keep, self._prefix + self._text.line(req, resp, monotonic()))

    async def start(self) -> None:
        if self.route53 is not None and self.settings.identity_ec2:
            await self._ask_ec2()
        await self.sink.start()
        log.info("query_log_started", output=self.settings.output, format=self._format_name())

    async def _ask_ec2(self) -> None:
        assert self.route53 is not None
        s = self.settings
        try:
            found = await identity.ec2_identity()
        except identity.ImdsError as err:
            log.warning("ec2_identity_failed", error=str(err), endpoint=identity.endpoint())
            return
        self.route53.set_identity(
            s.account_id or found.account_id, s.region or found.region, s.vpc_id or found.vpc_id
        )

    async def stop(self) -> None:
        await self.sink.stop()

    async def reopen(self) -> None:
        """Reopen a file output by its path (for logrotate); stdout and stderr stay as they are."""
        await self.sink.reopen()

    def _format_name(self) -> str:
        fmt = self.settings.format
        for name, text in FORMATS.items():
            if fmt == text:
                return name
        return fmt if fmt == ROUTE53 else "custom"


class Route53Line(Effect):
    """A query's Route 53 line: the fragments fixed by its question, reply and firewall
    decision, stamped with its client and receive time when it is kept."""

    __slots__ = ("keep", "stamp", "middle", "tail")

    def __init__(
        self, keep: Callable[[str], None], stamp: Callable[..., str], middle: str, tail: str
    ) -> None:
        self.keep = keep
        self.stamp = stamp
        self.middle = middle
        self.tail = tail

    def __call__(self, client: Any, start: float) -> None:
        self.keep(self.stamp(start, self.middle, client, self.tail))


class TextLine(Effect):
    """A query's line in a CoreDNS text format, rendered whole (such a log takes no part in
    replays: the line holds the query's own id and duration)."""

    __slots__ = ("keep", "line")

    def __init__(self, keep: Callable[[str], None], line: str) -> None:
        self.keep = keep
        self.line = line

    def __call__(self, client: Any, start: float) -> None:
        self.keep(self.line)
