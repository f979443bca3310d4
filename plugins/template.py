"""template - answer queries from Go-style templates (CoreDNS's ``template``).

Syntax::

    template CLASS TYPE [ZONE...] {
        match REGEX...
        answer RR
        additional RR
        authority RR
        rcode CODE
        ederror EXTENDED_ERROR_CODE [EXTRA_REASON]
        fallthrough [FALLTHROUGH-ZONE...]
    }

* **CLASS**: the query class it answers (``IN``, ``CH``, ``ANY``...; else ``invalid query
  class X``); **TYPE**: the query type (``A``, ``PTR``, ``ANY`` for every type; else
  ``invalid RR class X``, CoreDNS's text). A query of class or type ANY matches any template.
* **ZONE**: the zones it answers for (default: the server block's).
* ``match REGEX...``: regular expressions tried on the lower-case query name (with its
  trailing dot), unanchored, the first that matches wins; default ``.*``. A pattern is at
  most 10000 characters (``regex pattern too long: N > 10000``); one that does not compile
  is ``could not parse regex: REGEX, ERROR``. The syntax is Python's ``re``, which reads the
  RE2 patterns of CoreDNS's examples (``(?P<name>...)``, classes, anchors) the same way.
* ``answer`` / ``additional`` / ``authority RR``: records in zone file form (owner, optional
  TTL (default 3600) and class, type, data), each a template; several may be given.
* ``rcode CODE``: the reply's rcode (``NOERROR`` default, ``NXDOMAIN``, ``REFUSED``...; else
  ``unknown rcode X``). ``SERVFAIL`` answers SERVFAIL with nothing else, as CoreDNS does.
* ``ederror CODE [REASON]``: an RFC 8914 Extended DNS Error in the reply (for a query with
  EDNS; CoreDNS adds an OPT record even when the query had none, dnsfw does not).
* ``fallthrough [ZONES...]``: a name in the zones that no regex matches goes to the next
  plugin (the next ``template`` of the block first) instead of getting SERVFAIL.
* Any other line: ``Wrong argument count or unexpected line ending after 'X'``. ``upstream``
  is accepted and ignored (CoreDNS's deprecated option).

Templates. The fields of CoreDNS's template data, rendered as Go's ``text/template`` renders
them: ``{{ .Name }}`` (the lower-case query name), ``{{ .Zone }}`` (the matched zone),
``{{ .Class }}``, ``{{ .Type }}`` (the query's, or the template's for a query of ANY),
``{{ .Regex }}``, ``{{ .Remote }}`` (the client's address), ``{{ index .Match N }}`` (N: 0 is
the whole match), ``{{ .Group.NAME }}`` and ``{{ index .Group "NAME" }}`` (named groups, and
groups by number), ``{{ .Question.Name }}``, ``{{ .Question.Qtype }}``,
``{{ .Question.Qclass }}``, ``{{ .Meta "NAME" }}`` (always empty: dnsfw's stages publish no
metadata), ``{{ parseInt TEXT BASE BITS }}`` (Go's strconv.ParseUint) and the ``{{-``/``-}}``
trim markers. A missing group renders ``<no value>``, as in Go. Any other construct (a
pipeline, ``if``, ``range``, a variable, ``.Message``, an unknown function) is refused at
setup with ``could not compile template: TEXT, ...``, with the Corefile's file and line. A
failure while rendering (an index out of range, a bad ``parseInt``, an unknown field) or a
record that does not parse answers SERVFAIL and is counted.

Answers are authoritative (AA). CoreDNS's lookup of a CNAME answer's target through its own
chain (for A and AAAA queries) is not done: the CNAME is answered alone, as CoreDNS answers it
when that lookup fails.

Metrics (CoreDNS's): ``coredns_template_matches_total{server, zone, view, class, type}``,
``coredns_template_template_failures_total`` and ``coredns_template_rr_failures_total``
(``{server, zone, view, class, type, section, template}``).

Replays: the templates never change while a configuration serves, so an answer made for one
query is offered for replay of the same query bytes as it is (its match counted again by an
Effect) -- unless a template reads ``.Remote``: those answers name the client and are never
replayed. Failures (SERVFAIL) are not replayed either.

Examples::

    . {
        template ANY ANY {
            rcode NXDOMAIN
        }
    }

    . {
        forward . 8.8.8.8
        template ANY ANY invalid {
            rcode NXDOMAIN
            authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
            ederror 21 "Blocked according to RFC2606"
        }
    }

    . {
        forward . 8.8.8.8
        template IN A example {
            match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
            answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
            fallthrough
        }
        template IN PTR in-addr.arpa {
            match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
            answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
        }
    }

    . {
        forward . 8.8.8.8
        template IN A example {
            match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
            answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
            fallthrough
        }
    }

    . {
        forward . 8.8.8.8
        template IN A example {
            match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
            answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
            authority "example. 60 IN NS ns0.example."
            additional "ns0.example. 60 IN A 203.0.113.8"
            fallthrough
        }
        template IN MX example {
            match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
            answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
            additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
            fallthrough
        }
    }
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.fall import NEVER, Fall, from_args
from proxy.metrics import Child, Registry
from proxy.names import longest_zone, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Effect
from proxy.request import Request, Response

MAX_REGEX = 10000
ANY = 255
SECTIONS = ("answer", "additional", "authority")
# miekg/dns's StringToClass and StringToRcode keys (case matters there too)
CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}
RCODES = {
    "NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
    "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "BADSIG": 16,
    "BADVERS": 16, "BADKEY": 17, "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21,
    "BADTRUNC": 22, "BADCOOKIE": 23,
}  # fmt: skip
CLASS_TEXT = {value: key for key, value in CLASSES.items() if key != "NONE"} | {254: "NONE"}


def setup(directive: Directive, ctx: SetupContext) -> Template:
    args = directive.args
    if len(args) < 2:
        raise directive.arg_error()
    qclass = CLASSES.get(args[0].text)
    if qclass is None:
        raise directive.error(f"invalid query class {args[0].text}", at=args[0])
    qtype = _rdtype(args[1].text)
    if qtype is None:
        raise directive.error(f"invalid RR class {args[1].text}", at=args[1])
    spec = Spec(qclass, qtype, ctx.zones_from(args[2:]))
    for line in directive.block or ():
        _option(spec, line)
    if not spec.regexes:
        spec.regexes.append(re.compile(".*"))
    return Template(spec, ctx.app.metrics)


def _rdtype(text: str) -> int | None:
    if text != text.upper():
        return None
    try:
        return int(dns.rdatatype.from_text(text))
    except dns.exception.DNSException:
        return None


@dataclass
class Spec:
    """One ``template`` directive, read."""

    qclass: int
    qtype: int
    zones: tuple[str, ...]
    regexes: list[re.Pattern[str]] = field(default_factory=list)
    sections: dict[str, list[Compiled]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    rcode: int = 0
    ede: bytes = b""
    fall: Fall = NEVER


def _option(spec: Spec, line: Directive) -> None:
    word = line.name.text
    values = line.values
    if word == "match":
        if not values:
            raise line.arg_error()
        for regex in values:
            if len(regex) > MAX_REGEX:
                raise line.error(f"regex pattern too long: {len(regex)} > {MAX_REGEX}")
            try:
                spec.regexes.append(re.compile(regex))
            except re.error as err:
                raise line.error(f"could not parse regex: {regex}, {err}") from None
    elif word in SECTIONS:
        if not values:
            raise line.arg_error()
        for text in values:
            try:
                spec.sections[word].append(compile_template(word, text))
            except ValueError as err:
                raise line.error(f"could not compile template: {text}, {err}") from None
    elif word == "rcode":
        if not values:
            raise line.arg_error()
        if values[0] not in RCODES:
            raise line.error(f"unknown rcode {values[0]}")
        spec.rcode = RCODES[values[0]]
    elif word == "ederror":
        if len(values) not in (1, 2):
            raise line.arg_error()
        if not values[0].isdigit() or int(values[0]) > 65535:
            raise line.error(
                f"error parsing extended DNS error code {values[-1]}, strconv.ParseUint: "
                f'parsing "{values[0]}": invalid syntax'
            )
        spec.ede = wire.ede_option(int(values[0]), values[1] if len(values) == 2 else "")
    elif word == "fallthrough":
        spec.fall = from_args(line.args)
    elif word != "upstream":  # upstream: deprecated in CoreDNS, ignored
        raise line.arg_error()


# --- the template language: the forms CoreDNS's templates use -----------------------------

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\S+')
_FIELDS = ("Zone", "Name", "Regex", "Class", "Type", "Remote")
_QUESTION = ("Name", "Qtype", "Qclass")
NO_VALUE = "<no value>"


class RenderError(Exception):
    """A template that failed for this query (Go's execution errors)."""


@dataclass(frozen=True)
class Data:
    """CoreDNS's templateData for one matched query."""

    zone: str
    name: str
    regex: str
    match: list[str]
    group: dict[str, str]
    cls: str
    type: str
    remote: str
    qtype: int
    qclass: int


@dataclass(frozen=True)
class Compiled:
    """One template: its text (the metrics' label), literal parts and actions, and whether it
    reads the client's address."""

    text: str
    parts: tuple[str | Callable[[Data], str], ...]
    remote: bool

    def render(self, data: Data) -> str:
        return "".join(p if isinstance(p, str) else p(data) for p in self.parts)


def compile_template(name: str, text: str) -> Compiled:
    """Compile ``text``; ValueError (Go's message style) for what it does not support."""
    parts: list[str | Callable[[Data], str]] = []
    pos = 0
    remote = False
    for m in _ACTION.finditer(text):
        literal = text[pos : m.start()]
        if m.group(1):
            literal = literal.rstrip()
        if parts and isinstance(parts[-1], _Trim):
            literal = literal.lstrip()
            parts.pop()
        parts.append(literal)
        action = m.group(2)
        remote = remote or ".Remote" in action
        if not action.startswith("/*"):  # {{/* a comment */}}
            parts.append(_action(name, action))
        if m.group(3):
            parts.append(_Trim())
        pos = m.end()
    rest = text[pos:]
    if "{{" in rest:
        raise ValueError(f"template: {name}:1: unclosed action")
    if parts and isinstance(parts[-1], _Trim):
        parts.pop()
        rest = rest.lstrip()
    parts.append(rest)
    return Compiled(text, tuple(p for p in parts if p != ""), remote)


class _Trim:
    """A ``-}}`` seen: the next literal loses its leading white space."""


def _action(name: str, action: str) -> Callable[[Data], str]:
    words = _WORD.findall(action)
    if not words:
        raise ValueError(f"template: {name}:1: missing value for command")
    head, args = words[0], words[1:]
    if head == "index" and len(args) == 2:
        return _index(name, args[0], args[1])
    if head == "parseInt":
        return _parse_int(name, args)
    if head == ".Meta" and len(args) == 1 and _string(args[0]) is not None:
        return lambda data: ""
    if head.startswith(".") and not args:
        return _field(name, head)
    if head[0].isalpha() and head not in ("index", "parseInt"):
        raise ValueError(f'template: {name}:1: function "{head}" not defined')
    raise ValueError(f"template: {name}:1: unsupported in dnsfw: {{{{ {action} }}}}")


def _string(word: str) -> str | None:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in '"`':
        return word[1:-1]
    return None


def _field(name: str, path: str) -> Callable[[Data], str]:
    """``.Name``, ``.Group.x``, ``.Question.Name``...; an unknown field fails when rendered,
    as in Go (``can't evaluate field X``)."""
    parts = path[1:].split(".")
    if parts[0] in ("Message", "Match") or len(parts) > 2 or "" in parts:
        raise ValueError(f"template: {name}:1: unsupported in dnsfw: {{{{ {path} }}}}")
    if len(parts) == 1 and parts[0] in _FIELDS:
        attr = {"Zone": "zone", "Name": "name", "Regex": "regex", "Class": "cls"}.get(
            parts[0], parts[0].lower()
        )
        return lambda data: getattr(data, attr)
    if parts[0] == "Group" and len(parts) == 2:
        key = parts[1]
        return lambda data: data.group.get(key, NO_VALUE)
    if parts[0] == "Question" and len(parts) == 2 and parts[1] in _QUESTION:
        return {
            "Name": lambda data: data.name,
            "Qtype": lambda data: str(data.qtype),
            "Qclass": lambda data: str(data.qclass),
        }[parts[1]]
    message = (
        f'template: {name}:1:{len(name)}: executing "{name}": can\'t evaluate field {parts[-1]}'
    )

    def fail(data: Data) -> str:
        raise RenderError(message)

    return fail


def _index(name: str, target: str, key: str) -> Callable[[Data], str]:
    text = _string(key)
    if target == ".Match" and key.isdigit():
        n = int(key)

        def match(data: Data) -> str:
            if n >= len(data.match):
                raise RenderError(
                    f'template: {name}:1: executing "{name}" at <index .Match {n}>: error calling '
                    f"index: index out of range: {n}"
                )
            return data.match[n]

        return match
    if target == ".Group" and text is not None:
        return lambda data: data.group.get(text, NO_VALUE)
    raise ValueError(f"template: {name}:1: unsupported in dnsfw: {{{{ index {target} {key} }}}}")


def _parse_int(name: str, args: Sequence[str]) -> Callable[[Data], str]:
    if len(args) != 3 or not args[1].isdigit() or not args[2].isdigit():
        message = (
            f'template: {name}:1: executing "{name}" at <parseInt>: wrong number of args for '
            f"parseInt: want 3 got {len(args)}"
        )

        def wrong(data: Data) -> str:  # Go compiles it and fails when it runs
            raise RenderError(message)

        return wrong
    literal = _string(args[0])
    value = (lambda data: literal) if literal is not None else _field(name, args[0])
    base, bits = int(args[1]), int(args[2])

    def parse_int(data: Data) -> str:
        text = value(data)
        try:
            number = int(text, base) if text and text.isalnum() else -1
        except ValueError:
            number = -1
        if number < 0 or number >= 1 << bits:
            raise RenderError(
                f'template: {name}:1: executing "{name}" at <parseInt>: error calling parseInt: '
                f'strconv.ParseUint: parsing "{text}": invalid syntax'
            )
        return str(number)

    return parse_int


def parse_rr(text: str) -> bytes:
    """A record in zone file form (miekg/dns's NewRR: TTL 3600 and class IN by default,
    names relative to the root) as wire bytes; ValueError when it does not parse."""
    words = text.split(None, 1)
    if len(words) < 2:
        raise ValueError(f"dns: not a TTL: {text!r}")
    owner, rest = words
    ttl, rdclass = 3600, 1
    for _ in range(2):
        head, _, tail = rest.partition(" ")
        head_upper = head.upper()
        if head.isdigit():
            ttl, rest = int(head), tail.strip()
        elif head_upper in CLASSES and head_upper != "ANY":
            rdclass, rest = CLASSES[head_upper], tail.strip()
    rdtype_text, _, rdata_text = rest.partition(" ")
    try:
        rdtype = dns.rdatatype.from_text(rdtype_text)
        rdata = dns.rdata.from_text(
            rdclass, rdtype, rdata_text, origin=dns.name.root, relativize=False
        )
        owner_wire = text_to_wire(owner)
    except (dns.exception.DNSException, ValueError) as err:
        raise ValueError(f"dns: {err}") from None
    return wire.rr(owner_wire, int(rdtype), ttl, rdata.to_wire(), rdclass)


# --- the stage -----------------------------------------------------------------------------


class Matched(Effect):
    """Counts a query a template matched (``coredns_template_matches_total``)."""

    __slots__ = ("child",)

    def __init__(self, child: Child) -> None:
        self.child = child

    def __call__(self, client: Any, start: float) -> None:
        self.child.inc()


class Template(Plugin):
    name = "template"
    replays = TAKES_PART  # answers are fixed by the query bytes (see the docstring)

    def __init__(self, spec: Spec, metrics: Registry) -> None:
        self.spec = spec
        self.zones = {text_to_wire(zone): zone for zone in spec.zones}
        self.remote = any(c.remote for s in spec.sections.values() for c in s)
        self.matches = metrics.counter(
            "coredns_template_matches_total",
            "Counter of template regex matches.",
            ("server", "zone", "view", "class", "type"),
        )
        labels = ("server", "zone", "view", "class", "type", "section", "template")
        self.failures = metrics.counter(
            "coredns_template_template_failures_total", "Counter of go template failures.", labels
        )
        self.rr_failures = metrics.counter(
            "coredns_template_rr_failures_total", "Counter of mis-templated RRs.", labels
        )
        self.effects: dict[tuple[str, str, str, str], Matched] = {}

    async def serve(self, req: Request, next: Handler) -> Response:
        spec = self.spec
        qclass, qtype = req.qclass, req.qtype
        if (spec.qclass != ANY and qclass != ANY and qclass != spec.qclass) or (
            spec.qtype != ANY and qtype != ANY and qtype != spec.qtype
        ):
            return await next(req)
        zone = longest_zone(req.qname_wire, self.zones)
        if zone is None:
            return await next(req)
        name = req.qname
        for regex in spec.regexes:
            found = regex.search(name)
            if found is not None:
                return self._answer(req, self._data(req, self.zones[zone], regex, found))
        if spec.fall.through(req.qname_wire):
            return await next(req)
        req.no_replay()
        return req.reply(wire.SERVFAIL, flags=0, source="template")

    def _data(self, req: Request, zone: str, regex: re.Pattern[str], found: re.Match[str]) -> Data:
        spec = self.spec
        match = [g or "" for g in (found.group(0), *found.groups())]
        group = {str(i): m for i, m in enumerate(match)}
        group.update({k: v or "" for k, v in found.groupdict().items()})
        return Data(
            zone=zone,
            name=req.qname,
            regex=regex.pattern,
            match=match,
            group=group,
            cls=CLASS_TEXT.get(req.qclass if req.qclass != ANY else spec.qclass, ""),
            type=dns.rdatatype.to_text(req.qtype if req.qtype != ANY else spec.qtype),
            remote=req.client[0],
            qtype=req.qtype,
            qclass=req.qclass,
        )

    def _answer(self, req: Request, data: Data) -> Response:
        spec = self.spec
        key = (req.server, data.zone, data.cls, data.type)
        effect = self.effects.get(key)
        if effect is None:
            child = self.matches.labels(req.server, data.zone, "", data.cls, data.type)
            effect = self.effects[key] = Matched(child)  # type: ignore[arg-type]
        req.run(effect)
        if spec.rcode == wire.SERVFAIL:
            req.no_replay()
            return req.reply(wire.SERVFAIL, flags=0, source="template")
        sections: dict[str, tuple[bytes, ...]] = {}
        for section in SECTIONS:
            records = []
            for compiled in spec.sections[section]:
                labels = (req.server, data.zone, "", data.cls, data.type, section, compiled.text)
                try:
                    text = compiled.render(data)
                except RenderError as err:
                    self.failures.labels(*labels).inc()
                    return self._failed(req, str(err))
                try:
                    records.append(parse_rr(text))
                except ValueError as err:
                    self.rr_failures.labels(*labels).inc()
                    return self._failed(req, str(err))
            sections[section] = tuple(records)
        if self.remote:
            req.no_replay()  # the answer names this client
        reply = req.reply if self.remote else req.fixed_reply
        return reply(
            spec.rcode,
            flags=wire.AA,
            answer=sections["answer"],
            authority=sections["authority"],
            additional=sections["additional"],
            options=spec.ede,
            source="template",
        )

    def _failed(self, req: Request, error: str) -> Response:
        req.no_replay()
        return req.reply(
            wire.SERVFAIL, flags=0, source="template", error=f"plugin/template: {error}"
        )
