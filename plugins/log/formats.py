"""Query-log line formats: CoreDNS's placeholder formats and Route 53 Resolver's JSON.

``Log.serve`` calls a formatter once per query, as soon as the reply is known, with the
request and the reply; the line it returns is all the writer keeps. So formatters memoise
whatever repeats (names, answers, decisions) and keep the per-line work to one string build.
See the package docstring for the placeholders and the JSON schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import dns.rcode
import dns.rdataclass
import dns.rdatatype

from proxy import wire
from proxy.names import wire_to_text
from proxy.request import Request, Response

from . import answers
from .route53 import (
    ACCOUNT_ID,
    ANSWERS,
    CLASS,
    FIREWALL_DOMAIN_LIST_ID,
    FIREWALL_LOGGED,
    FIREWALL_REDIRECTION_DOMAIN,
    FIREWALL_RULE_ACTION,
    FIREWALL_RULE_GROUP_ID,
    QUERY_CLASS,
    QUERY_NAME,
    QUERY_TIMESTAMP,
    QUERY_TYPE,
    RCODE,
    RDATA,
    REGION,
    SRCADDR,
    SRCIDS,
    SRCPORT,
    TRANSPORT,
    TRANSPORTS,
    TYPE,
    VERSION,
    VERSION_KEY,
    VPC_ID,
)
from .text import class_text, name_text, plain_name, type_text

Getter = Callable[[Request, Response, float], str]

EMPTY = "-"  # CoreDNS's value for a placeholder with no value (replacer.EmptyValue)
COMMON = (
    '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
    "{rcode} {>rflags} {rsize} {duration}"
)
COMBINED = COMMON + ' "{>opcode}"'

# response classes (CoreDNS plugin/pkg/response)
SUCCESS, DENIAL, ERROR = "success", "denial", "error"
CLASSES = (SUCCESS, DENIAL, ERROR)

# miekg/dns RcodeToString, which CoreDNS's {rcode} uses (16 is BADSIG there, not BADVERS)
_TEXT_RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADSIG",
    17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC",
    23: "BADCOOKIE",
}  # fmt: skip
_FLAG_NAMES = (
    (wire.QR, "qr"), (wire.AA, "aa"), (wire.TC, "tc"), (wire.RD, "rd"), (wire.RA, "ra"),
    (0x0040, "z"), (wire.AD, "ad"), (wire.CD, "cd"),
)  # fmt: skip


def rcode_text(rcode: int) -> str:
    """CoreDNS's ``{rcode}``: the name, or the number when miekg/dns has no name for it."""
    return _TEXT_RCODES.get(rcode) or str(rcode)


@lru_cache(maxsize=64)
def rcode_name(rcode: int) -> str:
    """Route 53's ``rcode`` field (dnspython's names; the number when unnamed)."""
    try:
        return dns.rcode.to_text(rcode)  # type: ignore[arg-type]
    except ValueError:
        return str(rcode)


def response_type(resp: Response) -> str:
    """CoreDNS's response type of a reply: NOERROR, NXDOMAIN, NODATA, DELEGATION or OTHERERROR.

    As ``response.Typify`` with one deliberate difference that follows CoreDNS's README
    ("denial: NXDOMAIN or NODATA") rather than its code: an NXDOMAIN, or a NOERROR reply with
    no answer and no NS referral, is a denial even without an SOA in the authority section,
    so a locally synthesised block answer is classed like a real one.
    """
    data = resp.wire
    rcode = resp.rcode
    if rcode == wire.NXDOMAIN:
        return "NXDOMAIN"
    if rcode != wire.NOERROR:
        return "OTHERERROR"
    if len(data) < wire.HEADER_LEN or (data[6] | data[7]):
        return "NOERROR"
    return "DELEGATION" if _is_referral(data) else "NODATA"


def response_class(resp: Response) -> str:
    kind = response_type(resp)
    if kind in ("NOERROR", "DELEGATION"):
        return SUCCESS
    if kind in ("NXDOMAIN", "NODATA"):
        return DENIAL
    return ERROR


def _is_referral(data: bytes) -> bool:
    """An empty-answer reply whose authority section has NS records and no SOA."""
    try:
        info = wire.AnswerInfo(data)  # validates every record, so the walk below stays inside
        if info.neg_ttl >= 0:  # an SOA in the authority section: NODATA
            return False
        off = info.qend
        for _ in range((data[8] << 8) | data[9]):
            off = wire.skip_name(data, off)
            if (data[off] << 8) | data[off + 1] == wire.TYPE_NS:
                return True
            off += 10 + ((data[off + 8] << 8) | data[off + 9])
    except (wire.WireError, IndexError):
        pass
    return False


def go_seconds(seconds: float) -> str:
    """Seconds as Go's ``strconv.FormatFloat(d.Seconds(), 'f', -1, 64)`` prints a Duration
    (which counts nanoseconds): at most 9 decimals, no trailing zeros."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".")


# --- CoreDNS placeholders ---------------------------------------------------------------


def _remote(req: Request, resp: Response, end: float) -> str:
    host = req.client[0]
    return f"[{host}]" if ":" in host else host


def _port(req: Request, resp: Response, end: float) -> str:
    return str(req.client[1])


def _local(req: Request, resp: Response, end: float) -> str:
    # the listener's address (``dns://127.0.0.1:53``); a wildcard listener does not know
    # which of the host's addresses the query came to
    hostport = req.server.partition("://")[2]
    host = hostport.rpartition(":")[0]
    return host or EMPTY


def _type(req: Request, resp: Response, end: float) -> str:
    return type_text(req.qtype)


def _class(req: Request, resp: Response, end: float) -> str:
    return class_text(req.qclass)


def _name(req: Request, resp: Response, end: float) -> str:
    return name_text(req.qname_wire)


def _proto(req: Request, resp: Response, end: float) -> str:
    return req.transport


def _size(req: Request, resp: Response, end: float) -> str:
    return str(len(req.wire))


def _rsize(req: Request, resp: Response, end: float) -> str:
    return str(len(resp.wire))


def _rcode(req: Request, resp: Response, end: float) -> str:
    return rcode_text(resp.rcode)


def _duration(req: Request, resp: Response, end: float) -> str:
    return f"{end - req.start:.9f}".rstrip("0").rstrip(".") + "s"  # go_seconds, inlined


def _rflags(req: Request, resp: Response, end: float) -> str:
    data = resp.wire
    return _flags_text((data[2] << 8) | data[3])


@lru_cache(maxsize=256)
def _flags_text(flags: int) -> str:
    return ",".join([name for bit, name in _FLAG_NAMES if flags & bit])


def _bufsize(req: Request, resp: Response, end: float) -> str:
    # request.Size(): TCP is always dns.MaxMsgSize
    return str(req.udp_size) if req.transport == "udp" else "65535"


def _do(req: Request, resp: Response, end: float) -> str:
    return "true" if req.do else "false"


def _id(req: Request, resp: Response, end: float) -> str:
    return str(req.id)


def _opcode(req: Request, resp: Response, end: float) -> str:
    return str((req.flags & wire.OPCODE_MASK) >> 11)


def _log_class(req: Request, resp: Response, end: float) -> str:
    return response_class(resp)


def _log_type(req: Request, resp: Response, end: float) -> str:
    return response_type(resp)


def _unknown(req: Request, resp: Response, end: float) -> str:
    return EMPTY


PLACEHOLDERS: dict[str, Getter] = {
    "{remote}": _remote,
    "{port}": _port,
    "{local}": _local,
    "{type}": _type,
    "{class}": _class,
    "{name}": _name,
    "{proto}": _proto,
    "{size}": _size,
    "{rsize}": _rsize,
    "{rcode}": _rcode,
    "{duration}": _duration,
    "{>rflags}": _rflags,
    "{>bufsize}": _bufsize,
    "{>do}": _do,
    "{>id}": _id,
    "{>opcode}": _opcode,
    "{/log/class}": _log_class,
    "{/log/type}": _log_type,
}


def _metadata(label: str) -> Getter:
    """``{/LABEL}``: ``req.meta[LABEL]``, or for ``A/B`` attribute (or key) B of ``req.meta[A]``
    (so ``{/firewall/action}`` reads the firewall's decision); ``-`` when there is none."""
    head, _, attr = label.partition("/")

    def get(req: Request, resp: Response, end: float) -> str:
        meta = req.meta
        value: Any = meta.get(label)
        if value is None and attr:
            owner = meta.get(head)
            if isinstance(owner, dict):
                value = owner.get(attr)
            elif owner is not None:
                value = getattr(owner, attr, None)
        return EMPTY if value is None or value == "" else str(value)

    return get


class TextFormat:
    """A CoreDNS format, compiled once: a ``str.format`` template and one getter per
    placeholder."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        template: list[str] = []
        self.getters: list[Getter] = []
        for part in _split(fmt.replace("{common}", COMMON).replace("{combined}", COMBINED)):
            if isinstance(part, str):
                template.append(part.replace("{", "{{").replace("}", "}}"))
            else:
                template.append("{}")
                self.getters.append(part)
        self.template = "".join(template)

    def line(self, req: Request, resp: Response, end: float) -> str:
        return self.template.format(*[get(req, resp, end) for get in self.getters])


def _split(fmt: str) -> list[str | Getter]:
    """Literals and getters, split as CoreDNS's replacer splits a format: find a ``}``, then
    the last ``{`` before it (so ``{ {type} }`` works)."""
    parts: list[str | Getter] = []
    literal = ""
    rest = fmt
    while True:
        close = rest.find("}")
        if close < 0:
            break
        open_ = rest.rfind("{", 0, close)
        if open_ < 0:
            literal += rest[: close + 1]
            rest = rest[close + 1 :]
            continue
        literal += rest[:open_]
        if literal:
            parts.append(literal)
            literal = ""
        parts.append(_getter(rest[open_ : close + 1]))
        rest = rest[close + 1 :]
    literal += rest
    if literal:
        parts.append(literal)
    return parts


def _getter(placeholder: str) -> Getter:
    known = PLACEHOLDERS.get(placeholder)
    if known is not None:
        return known
    if placeholder.startswith("{/") and len(placeholder) > 3:
        return _metadata(placeholder[2:-1])
    return _unknown


# --- Route 53 Resolver query logs --------------------------------------------------------

# Types whose Rdata is only names and numbers: lower-cased like query_name, since a name
# compressed against the question carries the case of whichever client asked first (and a
# cached answer is shared by later clients). Other Rdata (TXT, CAA...) is kept as it is.
NAME_RDATA = frozenset({"CNAME", "DNAME", "NS", "PTR", "MX", "SRV", "SOA"})
_MIDDLE = "log/route53"  # the key of a reply's rendered middle in AnswerInfo.derived
_dumps = json.dumps  # ensure_ascii: every line is plain ASCII, as the real examples are


def _name_json(name: bytes) -> str:
    plain = plain_name(name)
    return f'"{plain}"' if plain is not None else _dumps(wire_to_text(name))


class Route53Format:
    """Route 53 Resolver query-log JSON lines, byte for byte in the layout of real logs:
    compact separators, Route 53's key order, ``srcport`` as a string, ``srcids`` ``{}``.

    ``answers`` is read from the reply's wire by :func:`.answers.summarise` (a few µs; the
    dnspython parse behind ``AnswerInfo.summary()``, its fallback for rarer types, costs about
    a hundred), and the line's middle (name, type, class, rcode, answers) is memoised per
    AnswerInfo object (the one an upstream answer gets, shared by its cache hits), so a
    popular cached name is serialised once, not once per line.
    """

    MEMO = 65536  # names and decisions remembered (cleared when full)

    def __init__(self, *, log_allow: bool = False) -> None:
        self.actions = FIREWALL_LOGGED | {"ALLOW"} if log_allow else FIREWALL_LOGGED
        self.identity = ("", "", "")
        self._head = ""
        self.set_identity("", "", "")
        self._second = -1
        self._names: dict[bytes, str] = {}
        self._kinds: dict[int, str] = {}
        self._tails = {t: _tail(t) for t in TRANSPORTS}
        self._closed_tails = {t: _tail(t) + "}" for t in TRANSPORTS}  # no firewall decision
        self._prefix = ""
        self._decisions: dict[int, tuple[object, str]] = {}
        # UTC seconds minus monotonic seconds, turning a request's receive time into the
        # query_timestamp; the log refreshes it at every writer turn (the wall clock may step)
        self.wall_offset = time.time() - time.monotonic()

    def set_identity(self, account_id: str, region: str, vpc_id: str) -> None:
        self.identity = (account_id, region, vpc_id)
        self._head = (
            f'{{"{VERSION_KEY}":"{VERSION}","{ACCOUNT_ID}":{_dumps(account_id)},'
            f'"{REGION}":{_dumps(region)},"{VPC_ID}":{_dumps(vpc_id)},"{QUERY_TIMESTAMP}":"'
        )
        self._second = -1  # the time prefix holds the head: build it again

    def refresh_clock(self) -> None:
        self.wall_offset = time.time() - time.monotonic()

    def line(self, req: Request, resp: Response) -> str:
        """One JSON object, stamped with the request's receive time (see ``wall_offset``)."""
        middle, tail = self.pieces(req, resp)
        return self.stamp(req.start, middle, req.client, tail)

    def stamp(self, start: float, middle: str, client: Any, tail: str) -> str:
        """The line of a query received at monotonic time ``start`` from ``client``, around
        the fragments :meth:`pieces` made for its question, reply and decision."""
        second = int(start + self.wall_offset)
        if second != self._second:
            self._new_second(second)
        return f'{self._prefix}{middle},"{SRCADDR}":"{client[0]}","{SRCPORT}":"{client[1]}",{tail}'

    def pieces(self, req: Request, resp: Response) -> tuple[str, str]:
        """(middle, tail): the parts of a line fixed by the question, the reply, the transport
        and the firewall decision.

        Everything from ``query_name`` to ``answers`` depends only on the question and the
        reply, so it is rendered once per reply and kept with the reply's AnswerInfo (shared
        by every cache hit of that answer).
        """
        code = (req.qtype << 20) | (req.qclass << 4) | resp.rcode
        info = resp.info
        derived = info.derived if info is not None else None
        held = derived.get(_MIDDLE) if derived is not None else None
        if held is not None and held[0] == code and held[1] == req.qname_wire:
            middle = held[2]
        else:
            middle = self._middle(req, resp, code)
        transport = req.transport
        decision = req.meta.get("firewall")
        if decision is None:
            return middle, self._closed_tails.get(transport) or _tail(transport) + "}"
        held = self._decisions.get(id(decision))
        if held is None or held[0] is not decision:  # the object is held, so its id is not reused
            held = (decision, self._decision_fragment(decision))
            if len(self._decisions) >= self.MEMO:
                self._decisions.clear()
            self._decisions[id(decision)] = held
        return middle, (self._tails.get(transport) or _tail(transport)) + held[1]

    def _new_second(self, second: int) -> None:
        self._second = second
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        self._prefix = f'{self._head}{stamp}","{QUERY_NAME}":'

    def _middle(self, req: Request, resp: Response, code: int) -> str:
        """``"NAME","query_type":…,"answers":[…]`` for this question and reply, kept with the
        reply's AnswerInfo when it has one (keyed by question and rcode, so a shared
        AnswerInfo can never lend its text to another question)."""
        name = self._names.get(req.qname_wire)
        if name is None:
            name = self._name_fragment(req.qname_wire)
        kind = self._kinds.get(code)
        if kind is None:
            kind = self._kind_fragment(req.qtype, req.qclass, resp.rcode)
        info = resp.info
        if info is None:  # a reply made here (a block answer...): read it, nothing to keep
            data = resp.wire
            if not (data[6] | data[7]):
                return f"{name}{kind}[]"
            return f"{name}{kind}{_answers_text(data, resp.answer_info)}"
        answers = _answers_text(resp.wire, lambda: info) if info.ancount else "[]"
        middle = f"{name}{kind}{answers}"
        if info.derived is None:
            info.derived = {}
        info.derived[_MIDDLE] = (code, req.qname_wire, middle)
        return middle

    def _kind_fragment(self, qtype: int, qclass: int, rcode: int) -> str:
        """``,"query_type":…,"query_class":…,"rcode":…,"answers":`` for one combination."""
        fragment = (
            f',"{QUERY_TYPE}":"{type_text(qtype)}","{QUERY_CLASS}":"{class_text(qclass)}",'
            f'"{RCODE}":"{rcode_name(rcode)}","{ANSWERS}":'
        )
        self._kinds[(qtype << 20) | (qclass << 4) | rcode] = fragment  # few combinations
        return fragment

    def _name_fragment(self, qname: bytes) -> str:
        fragment = _name_json(qname)
        if len(self._names) >= self.MEMO:
            self._names.clear()
        self._names[qname] = fragment
        return fragment

    def _decision_fragment(self, decision: object) -> str:
        action = getattr(decision, "action", None)
        if action not in self.actions:
            return "}"
        fields = (
            f',"{FIREWALL_RULE_ACTION}":{_dumps(action)},'
            f'"{FIREWALL_RULE_GROUP_ID}":{_dumps(str(getattr(decision, "group", "")))},'
            f'"{FIREWALL_DOMAIN_LIST_ID}":{_dumps(str(getattr(decision, "list", "")))}'
        )
        if getattr(decision, "via_chain", False):
            target = str(getattr(decision, "name", ""))
            fields += f',"{FIREWALL_REDIRECTION_DOMAIN}":{_dumps(target)}'
        return fields + "}"


def _tail(transport: str) -> str:
    return f'"{TRANSPORT}":"{TRANSPORTS.get(transport, transport.upper())}","{SRCIDS}":{{}}'


def _answers_text(data: bytes, info: Callable[[], wire.AnswerInfo]) -> str:
    """The ``answers`` JSON of a reply: read from the wire (:mod:`.answers`), or from
    ``AnswerInfo.summary()`` for record types the wire reader does not render."""
    rows = answers.summarise(data)
    if rows is None:
        rows = info().summary()
    return _dumps(
        [{RDATA: r.lower() if t in NAME_RDATA else r, TYPE: t, CLASS: c} for r, t, c in rows],
        separators=(",", ":"),
    )
