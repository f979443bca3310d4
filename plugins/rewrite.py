"""rewrite - rewrites queries on their way in and their replies on the way out, as CoreDNS's
``rewrite``; the client sees its own question back.

Syntax::

    rewrite [continue|stop] FIELD [TYPE] [(FROM TO)|TTL] [OPTIONS]
    rewrite [continue|stop] {
        FIELD [TYPE] ... [OPTIONS]
    }

One rule per directive; a block only spreads the rule's tokens over lines (as CoreDNS reads
it). All of a server block's ``rewrite`` directives are one stage: rules apply in Corefile
order; a matching ``stop`` rule (the default) ends the walk, ``continue`` goes on to the next.

* ``name [exact|prefix|suffix|substring|regex] FROM TO [answer auto | answer name FROM TO |
  answer value FROM TO]...``: the query name. FROM and TO are lower-cased and made fully
  qualified (``prefix foo bar`` matches ``foo.``); ``regex`` searches FROM anywhere in the
  name and fills ``{1}``... in TO from its groups. ``exact`` rules always map the reply back
  (records owned by, or pointing at, the rewritten name or names below it get the client's
  name); ``answer auto`` does so for the other types (for ``suffix``: the suffix swapped
  back); ``answer name FROM TO`` rewrites record owners, ``answer value FROM TO`` the names
  in CNAME, DNAME, SOA, SRV, MX, NAPTR, NS and PTR records, by regex, in every section.
* ``type FROM TO``, ``class FROM TO``: the query type or class (queries of a class other than
  IN are refused before any stage, so only ``class IN ...`` can match).
* ``ttl [exact|prefix|suffix|substring|regex] NAME SECONDS|MIN-MAX``: the TTLs of the reply's
  records, set (``30``) or held in a range (``30-300``, ``-30``, ``30-``).
* ``edns0 local set|append|replace|unset CODE DATA [revert]`` (DATA: text, ``0x`` hex, or
  ``{qname}``, ``{qtype}``, ``{client_ip}``, ``{client_port}``, ``{protocol}``,
  ``{server_ip}``, ``{server_port}``), ``edns0 nsid set|append|replace|unset [revert]``,
  ``edns0 subnet set|append|replace|unset V4BITS V6BITS [revert]``: EDNS0 options of the query
  (an OPT record of payload 4096 is added when it has none); ``revert`` takes the option back
  out of the reply.
* ``cname [exact|prefix|suffix|substring|regex] FROM TO``: the target of a CNAME in the
  reply's answer. The first CNAME whose target matches (``exact``: the whole name, FROM and TO
  made fully qualified; ``regex``: ``{1}``... in TO from its groups) points at the new target
  instead; the answer keeps the CNAMEs before it, and the records after it are the answer for
  the new target, asked with the query's type through the stages behind ``rewrite`` (the
  firewall, the cache, ``forward``), with that reply's TC bit. No CNAME matches, or no reply
  for the new target: the reply goes unchanged.
* ``rcode [exact|prefix|suffix|substring|regex] NAME FROM TO``: a reply to a query for a
  matching name with rcode FROM (a number 0-23 or its name: ``NOERROR``, ``SERVFAIL``,
  ``NXDOMAIN``, ``REFUSED``, ...) gets rcode TO, also a failure the stages behind answered
  (the ``errors`` stage still logs it); its ``plugin`` label in the response metric is
  ``rewrite``, as is a reply a ``cname`` rule made.

The reply's question is put back to the client's when a ``stop`` rule matched or a rule left
reply edits (CoreDNS's ResponseReverter); a query only ``continue`` rules without reply
edits rewrote gets the rewritten question back, as from CoreDNS. A name that is not a valid
domain name after the rewrite is SERVFAIL (``invalid name after rewrite: NAME``).

Errors are CoreDNS's (``invalid rule type "X"``, ``too few arguments for a name rule``,
``type rules must have exactly two arguments``, ``invalid type "X"``, ``invalid class "X"``,
``invalid TTL 'X' for a ttl rule``, ``invalid action: "X"``, ``EDNS0 local rules require
three or four args``, ``invalid regex matching pattern: X``, ``too few (N) arguments for a
rcode rule``, ``invalid matching RCODE 'X' for a rcode rule``, ``invalid replacement RCODE 'X'
for a rcode rule``, ``unknown cname rewrite type: X``, ``too few (N) arguments for a cname
rule``, ``invalid cname rewrite regex pattern: ...``, ...).

Replays: the query edit is recorded by nothing (the stages behind record on the client's
query, whose replay is keyed by the client's bytes); the reply edit is put on the replay's
answer (:class:`proxy.replay.Reshaped`), so a replayed cache hit is mapped back exactly as
the chain's reply was; a reply a ``cname`` rule made is replayed from both answers it was made
of (:class:`proxy.message.Combined`), and dropped once the first no longer has the CNAME. Cost: a reply with edits is decoded and encoded again with dnspython
(tens of µs) on the chain and on each replay; queries no rule matches cost one name decode.
``{client_ip}``/``{client_port}``/``subnet`` data goes upstream only on cache misses, as in
CoreDNS (its cache is not keyed by them either).

Examples::

    . {
        rewrite name exact red.example.org. blue.example.org.
        forward . 9.9.9.9
    }

    . {
        rewrite stop {
            name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul
            answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks
        }
        forward . 9.9.9.9
    }

    . {
        rewrite stop {
            name suffix .coredns.rocks .service.consul answer auto
        }
        rewrite continue {
            ttl regex (.*)\\.coredns\\.rocks 15
        }
        rewrite type ANY HINFO
        rewrite edns0 local set 0xffee {client_ip}
        forward . 9.9.9.9
    }

    . {
        rewrite cname regex (.*)\\.cdn\\.example\\.net\\. {1}.other.cdn.com.
        forward . 9.9.9.9
    }

    . {
        rewrite continue {
            rcode regex (.*)\\.coredns\\.rocks SERVFAIL NOERROR
        }
        rewrite rcode exact blocked.example.org 3 5
        forward . 9.9.9.9
    }
"""

from __future__ import annotations

import ipaddress
import re
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.message import (
    NSID_OPTION,
    SUBNET_OPTION,
    ask,
    combined,
    encode_options,
    find_opt,
    opt_with,
    options,
    reshaped,
    sections,
)
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART
from proxy.request import Request, Response

STOP, CONTINUE = "stop", "continue"
MATCHES = ("exact", "prefix", "suffix", "substring", "regex")
MAX_REGEX = 10000
VARIABLES = (
    "{qname}",
    "{qtype}",
    "{client_ip}",
    "{client_port}",
    "{protocol}",
    "{server_ip}",
    "{server_port}",
)

# --- the query being rewritten, and the reply edits it leaves -------------------------------


@dataclass
class Query:
    """The question and EDNS options of a query while rules rewrite it."""

    name: str  # lower-case, fully qualified
    qtype: int
    qclass: int
    opts: list[tuple[int, bytes]] | None  # None: no OPT record
    req: Request
    reply_edits: list[Callable[[dns.message.Message], None]] = field(default_factory=list)
    # cname rules: CNAME target -> the new target, or None when it does not match
    cnames: list[Callable[[str], str | None]] = field(default_factory=list)

    def ensure_opt(self) -> list[tuple[int, bytes]]:
        if self.opts is None:
            self.opts = []
        return self.opts


class RuleError(ValueError):
    pass


# --- string rewriters (CoreDNS's stringRewriter) ---------------------------------------------


def regex_rewriter(pattern: re.Pattern[str], to: str) -> Callable[[str], str]:
    def rewrite(src: str) -> str:
        match = pattern.search(src)
        return src if match is None else _fill(to, match)

    return rewrite


def remap_rewriter(orig: str, to: str) -> Callable[[str], str]:
    def rewrite(src: str) -> str:
        if src == orig:
            return to
        i = len(src) - len(orig)
        if i > 0 and src[i - 1] == "." and src[i:] == orig:
            return src[:i] + to
        return src

    return rewrite


def suffix_rewriter(suffix: str, to: str) -> Callable[[str], str]:
    return lambda src: src[: -len(suffix)] + to if suffix and src.endswith(suffix) else src


def _fill(template: str, match: re.Match[str]) -> str:
    out = template
    for i, group in enumerate((match.group(0), *match.groups())):
        out = out.replace("{" + str(i) + "}", group or "")
    return out


VALUE_FIELDS = {
    dns.rdatatype.SRV: "target",
    dns.rdatatype.MX: "exchange",
    dns.rdatatype.CNAME: "target",
    dns.rdatatype.NS: "target",
    dns.rdatatype.DNAME: "target",
    dns.rdatatype.NAPTR: "replacement",
    dns.rdatatype.SOA: "mname",
    dns.rdatatype.PTR: "target",
}


def name_edit(rewrite: Callable[[str], str]) -> Callable[[dns.rrset.RRset], dns.rrset.RRset]:
    def edit(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        new = rewrite(rrset.name.to_text())
        if new == rrset.name.to_text():
            return rrset
        out = dns.rrset.RRset(dns.name.from_text(new), rrset.rdclass, rrset.rdtype, rrset.covers)
        out.update(rrset)
        return out

    return edit


def value_edit(rewrite: Callable[[str], str]) -> Callable[[dns.rrset.RRset], dns.rrset.RRset]:
    def edit(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        attr = VALUE_FIELDS.get(rrset.rdtype)
        if attr is None:
            return rrset
        out = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
        out.update_ttl(rrset.ttl)
        for rdata in rrset:
            value = getattr(rdata, attr).to_text()
            new = rewrite(value)
            out.add(rdata if new == value else rdata.replace(**{attr: dns.name.from_text(new)}))
        return out

    return edit


def ttl_edit(low: int, high: int) -> Callable[[dns.rrset.RRset], dns.rrset.RRset]:
    def edit(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        rrset.ttl = min(max(rrset.ttl, low), high)
        return rrset

    return edit


# --- rules -----------------------------------------------------------------------------------


Matcher = Callable[[str], "str | None"]  # current name -> new name (None: no match)


@dataclass
class Rule:
    mode: str
    apply: Callable[[Query], bool]  # True: the rule rewrote (RewriteDone)


def name_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise RuleError("too few arguments for a name rule")
    if len(args) == 2:
        match, frm, to = "exact", _norm(args[0]), _norm(args[1])
    else:
        match = args[0].lower()
        frm, to = (args[1], args[2]) if match == "regex" else (_norm(args[1]), _norm(args[2]))
    auto, static = False, []
    if len(args) > 3:
        auto, static = _answers(match, args[3:])
    if match == "exact":
        _regex(to, frm)
        auto = True
        matcher: Matcher = lambda name: to if name == frm else None  # noqa: E731
    elif match == "prefix":
        matcher = lambda name: to + name[len(frm) :] if name.startswith(frm) else None  # noqa: E731
    elif match == "suffix":
        if auto:
            reverse = suffix_rewriter(to, frm)
            static = [name_edit(reverse), value_edit(reverse), *static]
            auto = False
        matcher = lambda name: name[: -len(frm)] + to if name.endswith(frm) else None  # noqa: E731
    elif match == "substring":
        matcher = lambda name: name.replace(frm, to) if frm in name else None  # noqa: E731
    elif match == "regex":
        pattern = _regex(frm, to)
        to = _norm(args[2])
        matcher = lambda name: _fill(to, m) if (m := pattern.search(name)) else None  # noqa: E731
    else:
        raise RuleError(
            "name rule supports only exact, prefix, suffix, substring, and regex name matching, "
            f"received: {match}"
        )

    def apply(q: Query) -> bool:
        new = matcher(q.name)
        if new is None:
            return False
        if auto:
            back = remap_rewriter(new, q.name)
            q.reply_edits.append(_records(name_edit(back)))
            q.reply_edits.append(_records(value_edit(back)))
        q.reply_edits.extend(_records(edit) for edit in static)
        q.name = new
        return True

    return Rule(mode, apply)


def _answers(name: str, args: list[str]):
    auto, rules, names, last, i = False, [], 0, "", 0
    if len(args) < 2:
        raise RuleError(f"invalid arguments for {name} rule")
    while i < len(args):
        if last == "" and args[i] != "answer":
            raise RuleError(
                f"exceeded the number of arguments for a non-answer rule argument for {name} rule"
            )
        if args[i] == "answer":
            i += 1
        if i == len(args):
            raise RuleError(f"type missing for answer rule for {name} rule")
        last = args[i]
        i += 1
        if last == "auto":
            auto = True
            continue
        if last not in ("name", "value"):
            raise RuleError(f'invalid type "{last}" for answer rule for {name} rule')
        if len(args) - i < 2:
            raise RuleError(f"{last} answer rule for {name} rule: 2 arguments required")
        try:
            pattern = _regex(args[i], args[i + 1])
        except RuleError as err:
            raise RuleError(f"{last} answer rule for {name} rule: {err}") from None
        rewriter = regex_rewriter(pattern, _norm(args[i + 1]))
        rules.append(name_edit(rewriter) if last == "name" else value_edit(rewriter))
        names += last == "name"
        i += 2
    if auto and names:
        raise RuleError("auto name answer rule cannot be combined with explicit name anwer rules")
    return auto, rules


def _records(edit: Callable[[dns.rrset.RRset], dns.rrset.RRset]):
    def reply_edit(msg: dns.message.Message) -> None:
        for section in (msg.authority, msg.answer, msg.additional):
            section[:] = [edit(rrset) for rrset in section]

    return reply_edit


def type_rule(mode: str, args: list[str], what: str) -> Rule:
    enum = dns.rdatatype if what == "type" else dns.rdataclass
    try:
        frm = int(enum.from_text(args[0].upper()))
    except Exception:  # noqa: BLE001 - dnspython raises several kinds
        raise RuleError(f'invalid {what} "{args[0].upper()}"') from None
    try:
        to = int(enum.from_text(args[1].upper()))
    except Exception:  # noqa: BLE001
        raise RuleError(f'invalid {what} "{args[1].upper()}"') from None
    attr = "qtype" if what == "type" else "qclass"

    def apply(q: Query) -> bool:
        if getattr(q, attr) != frm:
            return False
        setattr(q, attr, to)
        return True

    return Rule(mode, apply)


def ttl_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise RuleError(f"too few ({len(args)}) arguments for a ttl rule")
    if len(args) > 3:
        raise RuleError("many few arguments for a ttl rule")
    text = args[-1]
    low_high = _ttl(text)
    if low_high is None:
        raise RuleError(f"invalid TTL '{text}' for a ttl rule")
    edit = _records(ttl_edit(*low_high))
    if len(args) == 3:
        test = _name_test(args[0], args[1], "ttl")
    else:
        test = _name_test("exact", args[0], "ttl")

    return _reply_edit_rule(mode, test, edit)


def _reply_edit_rule(
    mode: str, test: Callable[[str], bool], edit: Callable[[dns.message.Message], None]
) -> Rule:
    """A rule that edits the reply of a query whose name passes ``test`` (``ttl``, ``rcode``)."""

    def apply(q: Query) -> bool:
        if not test(q.name):
            return False
        q.reply_edits.append(edit)
        return True

    return Rule(mode, apply)


def _name_test(match: str, target: str, what: str) -> Callable[[str], bool]:
    """Whether a query name matches ``target`` (``ttl`` and ``rcode`` rules, CoreDNS's
    errors)."""
    match = match.lower()
    if match == "regex":
        if len(target) > MAX_REGEX:
            raise RuleError(f"regex pattern too long in a {what} rule: {len(target)} > {MAX_REGEX}")
        try:
            pattern = re.compile(target)
        except re.error:
            raise RuleError(f"invalid regex pattern in a {what} rule: {target}") from None
        return lambda name: pattern.search(name) is not None
    if match not in MATCHES:
        raise RuleError(
            f"{what} rule supports only exact, prefix, suffix, substring, and regex name matching"
        )
    value = _norm(target)
    return {
        "exact": lambda name: name == value,
        "prefix": lambda name: name.startswith(value),
        "suffix": lambda name: name.endswith(value),
        "substring": lambda name: value in name,
    }[match]


# miekg/dns's StringToRcode (BADVERS shares 16 with BADSIG and is not a name there)
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5,
          "YXDOMAIN": 6, "YXRRSET": 7, "NXRRSET": 8, "NOTAUTH": 9, "NOTZONE": 10, "BADSIG": 16,
          "BADKEY": 17, "BADTIME": 18, "BADMODE": 19, "BADNAME": 20, "BADALG": 21,
          "BADTRUNC": 22, "BADCOOKIE": 23}  # fmt: skip


def rcode_rule(mode: str, args: list[str]) -> Rule:
    """CoreDNS's newRCodeRule: ``[MATCH] NAME FROM TO``; the reply's rcode FROM becomes TO."""
    if len(args) < 3:
        raise RuleError(f"too few ({len(args)}) arguments for a rcode rule")
    old_text, new_text = {3: args[1:3], 4: args[2:4]}.get(len(args), ("", ""))
    old, new = _rcode(old_text), _rcode(new_text)
    if old is None:
        raise RuleError(f"invalid matching RCODE '{old_text}' for a rcode rule")
    if new is None:
        raise RuleError(f"invalid replacement RCODE '{new_text}' for a rcode rule")
    test = (
        _name_test(args[0], args[1], "rcode")
        if len(args) == 4
        else _name_test("exact", args[0], "rcode")
    )

    def edit(msg: dns.message.Message) -> None:
        if msg.rcode() == old:
            msg.set_rcode(new)

    return _reply_edit_rule(mode, test, edit)


def _rcode(text: str) -> int | None:
    """CoreDNS's isValidRCode: 0-23, or a name miekg/dns knows."""
    if text.isascii() and text.isdigit():
        return int(text) if int(text) <= 23 else None
    return RCODES.get(text.upper())


def cname_rule(mode: str, args: list[str]) -> Rule:
    """CoreDNS's newCNAMERule: ``[MATCH] FROM TO`` on the CNAME targets of the reply."""
    if len(args) == 3:
        match = args[0].lower()
        if match not in MATCHES:
            raise RuleError(f"unknown cname rewrite type: {match}")
        frm, to = args[1].lower(), args[2].lower()
    elif len(args) == 2:
        match, frm, to = "exact", args[0].lower(), args[1].lower()
    else:
        raise RuleError(f"too few ({len(args)}) arguments for a cname rule")
    target: Callable[[str], str | None]
    if match == "exact":
        frm, to = _norm(frm), _norm(to)
        target = lambda cname: to if cname == frm else None  # noqa: E731
    elif match == "prefix":
        target = lambda cname: to + cname[len(frm) :] if cname.startswith(frm) else None  # noqa: E731
    elif match == "suffix":
        target = lambda cname: cname[: -len(frm)] + to if cname.endswith(frm) else None  # noqa: E731
    elif match == "substring":
        target = lambda cname: cname.replace(frm, to) if frm in cname else None  # noqa: E731
    else:
        if len(frm) > MAX_REGEX:
            raise RuleError(f"regex pattern too long in a cname rule: {len(frm)} > {MAX_REGEX}")
        try:
            pattern = re.compile(frm)
        except re.error as err:
            raise RuleError(
                f"invalid cname rewrite regex pattern: error parsing regexp: {err.msg}: `{frm}`"
            ) from None
        target = lambda cname: _fill(to, m) if (m := pattern.search(cname)) else None  # noqa: E731

    def apply(q: Query) -> bool:
        q.cnames.append(target)
        return True

    return Rule(mode, apply)


def _ttl(text: str) -> tuple[int, int] | None:
    parts = text.split("-")
    try:
        if len(parts) == 1:
            value = _u32(parts[0])
            return value, value
        if len(parts) != 2 or parts == ["", ""]:
            return None
        low = _u32(parts[0]) if parts[0] else 0
        high = _u32(parts[1]) if parts[1] else 2147483647
    except ValueError:
        return None
    return (low, high) if low <= high else None


def _u32(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 0xFFFFFFFF:
        raise ValueError(text)
    return int(text)


def edns0_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise RuleError("too few arguments for an EDNS0 rule")
    kind, action = args[0].lower(), args[1].lower()
    if action not in ("append", "replace", "set", "unset"):
        raise RuleError(f'invalid action: "{action}"')
    revert = False
    if action == "unset":
        need = {"local": 3, "nsid": 2, "subnet": 2}
        texts = {
            "local": "local unset action requires exactly two arguments",
            "nsid": "nsid unset action requires exactly one argument",
            "subnet": "subnet unset action requires exactly one argument",
        }
        if kind not in need:
            raise RuleError(f'invalid rule type "{kind}"')
        if len(args) != need[kind]:
            raise RuleError(texts[kind])
    else:
        if args[-1] == "revert":
            revert, args = True, args[:-1]
        if kind == "local" and len(args) != 4:
            raise RuleError("EDNS0 local rules require three or four args")
        if kind == "nsid" and len(args) != 2:
            raise RuleError("EDNS0 NSID rules can accept no more than one arg")
        if kind == "subnet" and len(args) != 4:
            raise RuleError("EDNS0 subnet rules require three or four args")
        if kind not in ("local", "nsid", "subnet"):
            raise RuleError(f'invalid rule type "{kind}"')
    if kind == "local":
        code = _uint(args[2], 0xFFFF)
        data: Callable[[Query], bytes | None] = (
            _local_data(args[3]) if action != "unset" else (lambda q: b"")
        )
    elif kind == "nsid":
        code, data = NSID_OPTION, lambda q: b""
    else:
        code = SUBNET_OPTION
        v4 = v6 = 0
        if action != "unset":
            v4, v6 = _uint(args[2], 0xFFFF), _uint(args[3], 0xFFFF)
            if v4 > 32:
                raise RuleError(f"invalid IPv4 bit mask length {v4}")
            if v6 > 128:
                raise RuleError(f"invalid IPv6 bit mask length {v6}")
        data = _subnet(v4, v6)

    def apply(q: Query) -> bool:
        value = data(q)
        if value is None:  # a variable with no value: CoreDNS ignores the rule
            return False
        opts = q.ensure_opt()
        if action == "unset":
            opts[:] = [(c, v) for c, v in opts if c != code]
            return True
        for i, (c, old) in enumerate(opts):
            if c == code:
                if action in ("replace", "set"):
                    if revert:
                        q.reply_edits.append(_edns_edit(code, old))
                    opts[i] = (code, value)
                    return True
                return kind != "local" or not args[3].startswith("{")
        if action in ("append", "set"):
            opts.append((code, value))
            if revert:
                q.reply_edits.append(_edns_edit(code, None))
            return True
        return False

    return Rule(mode, apply)


def _uint(text: str, high: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise RuleError(f'strconv.ParseUint: parsing "{text}": invalid syntax') from None
    if not 0 <= value <= high:
        raise RuleError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def _local_data(text: str) -> Callable[[Query], bytes | None]:
    if text.startswith("{") and text.endswith("}"):
        if text not in VARIABLES:
            raise RuleError(f'unsupported variable name "{text}"')
        return lambda q: _variable(text, q.req, q)
    if text.startswith("0x"):
        try:
            value = bytes.fromhex(text[2:])
        except ValueError:
            raise RuleError(f"encoding/hex: invalid byte in {text[2:]!r}") from None
    else:
        value = text.encode()
    return lambda q: value


def _variable(name: str, req: Request, q: Query) -> bytes | None:
    host, port = req.client[0], req.client[1]
    if name == "{qname}":
        return q.name.encode()
    if name == "{qtype}":
        return struct.pack("!H", q.qtype)
    if name == "{client_ip}":
        return ipaddress.ip_address(host.partition("%")[0]).packed
    if name == "{client_port}":
        return struct.pack("!H", port)
    if name == "{protocol}":
        return req.transport.encode()
    server = req.server.rpartition("//")[2]
    server_host, _, server_port = server.rpartition(":")
    if name == "{server_port}":
        return struct.pack("!H", int(server_port))
    try:  # a listener on every address has no one server address to give
        return ipaddress.ip_address(server_host.strip("[]")).packed
    except ValueError:
        return None


def _subnet(v4: int, v6: int) -> Callable[[Query], bytes]:
    def data(q: Query) -> bytes:
        address = ipaddress.ip_address(q.req.client[0].partition("%")[0])
        bits = v4 if address.version == 4 else v6
        net = ipaddress.ip_network(f"{address}/{bits}", strict=False)
        family = 1 if address.version == 4 else 2
        return struct.pack("!HBB", family, bits, 0) + net.network_address.packed

    return data


def _edns_edit(code: int, old: bytes | None) -> Callable[[dns.message.Message], None]:
    def reply_edit(msg: dns.message.Message) -> None:
        if msg.edns < 0:
            return
        found = [(o.otype, o.to_wire()) for o in msg.options]
        for i, (c, _) in enumerate(found):
            if c == code:
                if old is None:
                    del found[i]
                else:
                    found[i] = (code, old)
                break
        new = [dns.edns.GenericOption(c, v) for c, v in found]
        msg.use_edns(msg.edns, msg.ednsflags, msg.payload, options=new)

    return reply_edit


def _norm(text: str) -> str:
    """CoreDNS's plugin.Name(text).Normalize(): lower case, fully qualified."""
    text = text.lower()
    return text if text.endswith(".") else text + "."


def _regex(pattern: str, to: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX:
        raise RuleError(f"regex pattern too long: {len(pattern)} > {MAX_REGEX}")
    try:
        compiled = re.compile(pattern)
    except re.error:
        raise RuleError(f"invalid regex matching pattern: {pattern}") from None
    used = sum(1 for i in range(101) if "{" + str(i) + "}" in to)
    if used > compiled.groups:
        raise RuleError(
            f"the rewrite regex pattern ({to}) uses more subexpressions than its corresponding "
            f"matching regex pattern ({pattern})"
        )
    return compiled


def new_rule(args: list[str]) -> Rule:
    """CoreDNS's newRule."""
    if not args:
        raise RuleError("no rule type specified for rewrite")
    mode, first = STOP, args[0].lower()
    if first in (STOP, CONTINUE):
        if len(args) < 2:
            raise RuleError(f"{first} rule must begin with a rule type")
        mode, args = first, args[1:]
    kind, rest = args[0].lower(), args[1:]
    if kind == "answer":
        raise RuleError("response rewrites must begin with a name rule")
    if kind == "name":
        return name_rule(mode, rest)
    if kind in ("type", "class"):
        if len(rest) != 2:
            raise RuleError(f"{kind} rules must have exactly two arguments")
        return type_rule(mode, rest, kind)
    if kind == "edns0":
        return edns0_rule(mode, rest)
    if kind == "ttl":
        return ttl_rule(mode, rest)
    if kind == "cname":
        return cname_rule(mode, rest)
    if kind == "rcode":
        return rcode_rule(mode, rest)
    raise RuleError(f'invalid rule type "{args[0]}"')


# --- the stage -------------------------------------------------------------------------------


class Rewrite(Plugin):
    name = "rewrite"
    replays = TAKES_PART  # the reply edit goes on the replay's answer (see the docstring)

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.block: object = None

    async def serve(self, req: Request, next: Handler) -> Response:
        qname, _ = dns.name.from_wire(req.wire, wire.HEADER_LEN)
        opt = find_opt(sections(req.wire).additional) if req.edns else None
        q = Query(
            qname.to_text().lower(),
            req.qtype,
            req.qclass,
            options(req.wire, opt) if opt is not None else None,
            req,
        )
        before = (q.name, q.qtype, q.qclass, None if q.opts is None else list(q.opts))
        restore = False
        for rule in self.rules:
            if not rule.apply(q):
                continue
            if rule.mode == STOP:
                restore = True
                break
        if (q.name, q.qtype, q.qclass, q.opts) == before and not (q.reply_edits or q.cnames):
            return await next(req)
        try:
            query = _query_wire(req, q)
        except (dns.exception.DNSException, ValueError):
            error = f"invalid name after rewrite: {q.name}"
            return req.reply(wire.SERVFAIL, source="error", error=error)
        resp = await ask(req, query, next)
        if not (restore or q.reply_edits or q.cnames):
            return resp
        question = req.question
        edits = tuple(reversed(q.reply_edits))  # reply edits run in reverse order (CoreDNS)
        if q.cnames and resp.wire:
            made = await self._cname(req, next, q, resp, question, edits)
            if made is not None:
                return made
        new = reshaped(resp, lambda reply: _revert(reply, question, edits), names=True)
        if edits and new.wire and (rcode := _rcode_of(new.wire)) != resp.rcode:
            # an rcode rule: the reply is rewrite's (the metrics' plugin label, the log)
            return Response(new.wire, rcode, self.name, error=new.error, replay=new.replay)
        return new

    async def _cname(
        self,
        req: Request,
        next: Handler,
        q: Query,
        resp: Response,
        question: bytes,
        edits: tuple[Callable[[dns.message.Message], None], ...],
    ) -> Response | None:
        """CoreDNS's cname rule: the first CNAME whose target a rule rewrites gets the new
        target, and the records after it are the rest of the chain's answer for that target
        (asked with the query's type). None: no CNAME matched, or no answer for the target."""
        rules = tuple(reversed(q.cnames))
        found = _cname_target(resp.wire, rules)
        if found is None:
            return None
        try:
            target_query = _query_wire(req, replace(q, name=found[1]))
        except (dns.exception.DNSException, ValueError):
            return None  # not a name: CoreDNS's lookup fails and the reply goes unchanged
        target = await ask(req, target_query, next)
        if not target.wire:
            return None

        def holds(first: bytes) -> bool:
            return _cname_target(first, rules) == found

        def combine(data: bytes, first: bytes, second: bytes) -> bytes:
            return _revert(first, question, (_cname_edit(second, found), *edits))

        reply = combine(req.wire, resp.wire, target.wire)
        replay = combined(resp, target, target_query, holds, combine)
        return Response(reply, _rcode_of(reply), self.name, error=resp.error, replay=replay)


def _cname_target(
    reply: bytes, rules: tuple[Callable[[str], str | None], ...]
) -> tuple[str, str] | None:
    """(target, new target) for the first CNAME of the answer a rule rewrites."""
    for record in sections(reply).answer:
        if record.rtype == wire.TYPE_CNAME:
            target = dns.name.from_wire(reply, record.rdata)[0].to_text()
            for rule in rules:
                new = rule(target)
                if new is not None:
                    return target, new
    return None


def _cname_edit(second: bytes, found: tuple[str, str]) -> Callable[[dns.message.Message], None]:
    """The answer's CNAMEs up to the one pointing at ``found[0]``, that one pointing at
    ``found[1]``, then the answer records of ``second`` (the reply for the new target), with
    its TC bit (CoreDNS's cnameTargetRuleWithReqState)."""
    old, new = found

    def edit(msg: dns.message.Message) -> None:
        up = dns.message.from_wire(second, ignore_trailing=True, one_rr_per_rrset=True)
        kept = []
        for rrset in msg.answer:
            if rrset.rdtype != dns.rdatatype.CNAME:
                continue
            if rrset[0].target.to_text() == old:
                moved = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
                moved.add(rrset[0].replace(target=dns.name.from_text(new)), rrset.ttl)
                kept.append(moved)
                break
            kept.append(rrset)
        msg.answer = kept + list(up.answer)
        msg.flags = (msg.flags & ~dns.flags.TC) | (up.flags & dns.flags.TC)

    return edit


def _rcode_of(reply: bytes) -> int:
    """The rcode of ``reply``: the header's four bits and the OPT record's upper eight."""
    opt = find_opt(sections(reply).additional)
    high = reply[opt.rdata - 6] << 4 if opt is not None else 0
    return high | (reply[3] & 0x0F)


def _query_wire(req: Request, q: Query) -> bytes:
    name = dns.name.from_text(q.name).to_wire()
    header = req.wire[:4] + struct.pack("!HHHH", 1, 0, 0, 1 if q.opts is not None else 0)
    question = name + struct.pack("!HH", q.qtype, q.qclass)
    if q.opts is None:
        return header + question
    if req.edns:
        opt = find_opt(sections(req.wire).additional)
        assert opt is not None
        return header + question + opt_with(req.wire, opt, q.opts)
    return header + question + wire.opt_record(4096, options=encode_options(q.opts))


def _revert(
    reply: bytes, question: bytes, edits: tuple[Callable[[dns.message.Message], None], ...]
) -> bytes:
    """The reply with the client's question back and the rules' reply edits done. Records
    point at the question's name (compression), so a reply whose question name changes is
    decoded and encoded again, as CoreDNS packs its message again."""
    qend = sections(reply).qend
    if not edits and reply[wire.HEADER_LEN : qend - 4] == question[:-4]:
        return reply[:4] + struct.pack("!H", 1) + reply[6:12] + question + reply[qend:]
    msg = dns.message.from_wire(reply, ignore_trailing=True, one_rr_per_rrset=True)
    name, _ = dns.name.from_wire(question, 0)
    qtype, qclass = struct.unpack_from("!HH", question, len(question) - 4)
    msg.question = [dns.rrset.RRset(name, qclass, qtype)]
    for edit in edits:
        edit(msg)
    return msg.to_wire(max_size=65535)


# --- setup -----------------------------------------------------------------------------------


def setup(directive: Directive, ctx: SetupContext) -> Rewrite | None:
    """The block's first ``rewrite`` is its stage; later ones add their rule to it (CoreDNS
    runs all of a block's ``rewrite`` directives as one plugin)."""
    args = directive.values
    if len(args) < 2:
        for line in directive.block or ():
            args += [line.name.text, *line.values]
    try:
        rule = new_rule(args)
    except RuleError as err:
        raise directive.error(str(err)) from None
    first = _BY_BLOCK.get(id(ctx.block))
    if first is not None and first.block is ctx.block:
        first.rules.append(rule)
        return None
    stage = Rewrite([rule])
    stage.block = ctx.block
    _BY_BLOCK[id(ctx.block)] = stage
    return stage


_BY_BLOCK: weakref.WeakValueDictionary[int, Rewrite] = weakref.WeakValueDictionary()
