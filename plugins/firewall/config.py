"""The ``firewall`` directive's tokens, validated into plain data (:class:`FirewallSpec`).

Every error points at the offending token's file and line. Syntax and defaults are documented
in the package docstring (``plugins/firewall/__init__.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

import dns.rdatatype

from proxy.config import SetupContext
from proxy.corefile import Directive, Token, did_you_mean
from proxy.durations import parse_duration
from proxy.names import text_to_wire

from . import feeds, headers, lists
from .policy import ACTIONS, BLOCK, BlockResponse, Group, Rule

NAME_RE = re.compile(r"^(?![0-9]+$)[A-Za-z0-9_-]{1,64}$")  # Route 53's Name, without spaces
MAX_TTL = 604800  # Route 53's BlockOverrideTtl upper bound
DEFAULT_BLOCK_TTL = 60
DEFAULT_REFRESH = 4 * 3600.0
PROPERTIES = ("list", "group", "block_ttl", "fail", "ede", "bypass_signals")
GROUP_PROPERTIES = ("clients", "rule")
LIST_OPTIONS = ("format", "refresh", "lenient", "headers_file")
FEED_OPTIONS = ("refresh", "lenient", "headers_file")  # the format is the catalogue's
FILE_LIST_OPTIONS = ("format", "lenient", "versions")
DEFAULT_VERSIONS = 5
MAX_VERSIONS = 100
RULE_OPTIONS = ("qtype", "redirection", "response", "ttl")


@dataclass(frozen=True)
class ListSpec:
    """Where a domain list comes from."""

    name: str
    kind: str  # "file" | "url" (a feed too) | "domains"
    fmt: str = "route53"
    path: str | None = None  # file: absolute path
    url: str | None = None
    refresh: float = DEFAULT_REFRESH  # url: seconds between conditional GETs
    entries: tuple[str, ...] = ()  # domains: canonical entries
    lenient: bool = False  # file, url: skip bad lines (counted) instead of refusing the list
    versions: int = DEFAULT_VERSIONS  # file: earlier versions an admin edit keeps (PATH.1...)
    headers_file: str | None = None  # url: request headers, read at each download (not logged)
    feed: str | None = None  # url: the catalogue feed it was named by (``feed FEED``)
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class FirewallSpec:
    zones: tuple[str, ...]
    lists: tuple[ListSpec, ...]
    groups: tuple[Group, ...]
    block_ttl: int = DEFAULT_BLOCK_TTL
    fail_open: bool = False
    ede: bool = True
    bypass_signals: bool = False
    file: str = ""
    line: int = 0


def parse(directive: Directive, ctx: SetupContext) -> FirewallSpec:
    zones = ctx.zones_from(directive.args)
    if directive.block is None:
        raise directive.error("firewall needs a block with at least one group")
    base = os.path.dirname(os.path.abspath(directive.file))
    list_specs: dict[str, ListSpec] = {}
    group_lines: list[Directive] = []
    options: dict[str, object] = {}
    for line in directive.block:
        name = line.name.text
        if name == "list":
            spec = _list(line, base)
            if spec.name in list_specs:
                raise line.error(f"domain list '{spec.name}' is defined twice", line.args[0])
            list_specs[spec.name] = spec
        elif name == "group":
            group_lines.append(line)
        elif name == "block_ttl":
            options["block_ttl"] = _int_arg(line, 0, MAX_TTL)
        elif name == "fail":
            options["fail_open"] = _choice(line, ("open", "closed")) == "open"
        elif name == "ede":
            options["ede"] = _choice(line, ("on", "off")) == "on"
        elif name == "bypass_signals":
            options["bypass_signals"] = _choice(line, ("on", "off")) == "on"
        else:
            raise line.unknown_property(PROPERTIES)
    if not group_lines:
        raise directive.error("firewall needs at least one group")
    groups = _groups(group_lines, list_specs)
    return FirewallSpec(
        zones=zones,
        lists=tuple(list_specs.values()),
        groups=groups,
        file=directive.file,
        line=directive.line,
        **options,  # type: ignore[arg-type]
    )


def _name(line: Directive, token: Token, what: str) -> str:
    if not NAME_RE.match(token.text):
        raise line.error(
            f"invalid {what} name '{token.text}': use 1-64 letters, digits, '-' or '_' "
            "(not only digits)",
            token,
        )
    return token.text


def _choice(line: Directive, choices: tuple[str, ...]) -> str:
    """The single argument of ``line``, one of ``choices`` (case-insensitive)."""
    if len(line.args) != 1:
        raise line.arg_error()
    return _choice_of(line, line.args[0], choices)


def _int_arg(line: Directive, low: int, high: int) -> int:
    if len(line.args) != 1:
        raise line.arg_error()
    return _int(line, line.args[0], low, high)


def _int(line: Directive, token: Token, low: int, high: int) -> int:
    try:
        value = int(token.text)
    except ValueError:
        raise line.error(f"'{token.text}' is not an integer", token) from None
    if not low <= value <= high:
        raise line.error(f"{value} is out of range ({low} to {high})", token)
    return value


def _format(line: Directive, token: Token) -> str:
    fmt = token.text.lower()
    if fmt not in lists.FORMATS:
        raise line.error(
            f"unknown list format '{token.text}' (one of {', '.join(lists.FORMATS)})", token
        )
    return fmt


def _list(line: Directive, base: str) -> ListSpec:
    args = line.args
    if len(args) < 2:
        raise line.arg_error()
    name = _name(line, args[0], "list")
    kind = args[1].text
    rest = args[2:]
    where = {"file": line.file, "line": line.line}
    if kind == "domains":
        if not rest:
            raise line.error("a 'domains' list needs at least one entry", args[1])
        entries = []
        for token in rest:
            try:
                entries.append(lists.normalize_entry(token.text))
            except ValueError as err:
                raise line.error(
                    f"invalid domain list entry '{token.text}': {err}", token
                ) from None
        return ListSpec(name, "domains", entries=tuple(dict.fromkeys(entries)), **where)
    if kind not in ("file", "url", "feed"):
        raise line.error(f"unknown list source '{kind}' (file, url, feed or domains)", args[1])
    if not rest:
        raise line.arg_error()
    source = rest[0].text
    fmt = "route53"
    refresh = DEFAULT_REFRESH
    lenient = False
    versions = DEFAULT_VERSIONS
    headers_file = None
    feed = None
    if kind == "feed":
        feed = _feed(line, rest[0])
        source, fmt, refresh, lenient = feed.url, feed.format, feed.refresh, True
    known = {"url": LIST_OPTIONS, "feed": FEED_OPTIONS}.get(kind, FILE_LIST_OPTIONS)
    i = 1
    while i < len(rest):
        option = rest[i].text
        if option == "lenient":
            lenient = True
            i += 1
            continue
        if option not in known:
            raise line.error(
                f"unknown list option '{option}'{did_you_mean(option, known)}", rest[i]
            )
        if i + 1 >= len(rest):
            raise line.arg_error()
        value = rest[i + 1]
        if option == "format":
            fmt = _format(line, value)
        elif option == "versions":
            versions = _int(line, value, 0, MAX_VERSIONS)
        elif option == "headers_file":
            headers_file = (
                value.text if os.path.isabs(value.text) else os.path.join(base, value.text)
            )
            _check_headers(line, value, headers_file)
        else:
            refresh = parse_duration(value)
            if refresh < 1:
                raise line.error("refresh must be at least 1s", value)
        i += 2
    if kind == "file":
        path = source if os.path.isabs(source) else os.path.join(base, source)
        return ListSpec(
            name, "file", fmt=fmt, path=path, lenient=lenient, versions=versions, **where
        )
    if not re.match(r"^https?://[^\s/]+", source):
        raise line.error(f"not an http(s) URL: '{source}'", rest[0])
    return ListSpec(
        name,
        "url",
        fmt=fmt,
        url=source,
        refresh=refresh,
        lenient=lenient,
        headers_file=headers_file,
        feed=feed.name if feed else None,
        **where,
    )


def _feed(line: Directive, token: Token) -> feeds.Feed:
    try:
        known = feeds.catalogue()
    except feeds.CatalogueError as err:
        raise line.error(str(err), token) from None
    if token.text not in known:
        raise line.error(
            f"unknown feed '{token.text}'{did_you_mean(token.text, tuple(known))} "
            f"(the feeds of {feeds.path()}: {', '.join(known)})",
            token,
        )
    return known[token.text]


def _check_headers(line: Directive, token: Token, path: str) -> None:
    """A headers file dnsfw can read and parse now (it is read again at each download)."""
    try:
        headers.read(path)
    except (OSError, ValueError) as err:
        raise line.error(f"headers_file: {err}", token) from None


def _groups(lines: list[Directive], list_specs: dict[str, ListSpec]) -> tuple[Group, ...]:
    groups: list[Group] = []
    priorities: dict[int, str] = {}
    names: set[str] = set()
    for line in lines:
        if len(line.args) != 2:
            raise line.arg_error()
        name = _name(line, line.args[0], "group")
        if name in names:
            raise line.error(f"group '{name}' is defined twice", line.args[0])
        names.add(name)
        priority = _int(line, line.args[1], 0, 2**31 - 1)
        if priority in priorities:
            raise line.error(
                f"group priority {priority} is already used by group '{priorities[priority]}'",
                line.args[1],
            )
        priorities[priority] = name
        groups.append(_group(line, name, priority, list_specs))
    return tuple(groups)


def _group(line: Directive, name: str, priority: int, list_specs: dict[str, ListSpec]) -> Group:
    rules: list[Rule] = []
    clients: list = []
    for sub in line.block or ():
        if sub.name.text == "clients":
            if not sub.args:
                raise sub.arg_error()
            for token in sub.args:
                try:
                    clients.append(ipaddress.ip_network(token.text, strict=False))
                except ValueError:
                    raise sub.error(f"invalid client network '{token.text}'", token) from None
        elif sub.name.text == "rule":
            rules.append(_rule(sub, name, list_specs))
        else:
            raise sub.unknown_property(GROUP_PROPERTIES)
    by_priority: dict[int, str] = {}
    by_name: set[str] = set()
    by_key: dict[tuple[str, int | None], str] = {}
    for rule, sub in zip(
        rules, [s for s in line.block or () if s.name.text == "rule"], strict=True
    ):
        if rule.priority in by_priority:
            raise sub.error(
                f"rule priority {rule.priority} is already used by rule '{by_priority[rule.priority]}' "
                f"in group '{name}'",
                sub.args[1],
            )
        by_priority[rule.priority] = rule.name
        if rule.name in by_name:
            raise sub.error(f"rule '{rule.name}' is defined twice in group '{name}'", sub.args[0])
        by_name.add(rule.name)
        key = (rule.list, rule.qtype)
        if key in by_key:
            # Route 53 keys a rule by (group, list, qtype): a second one could never match
            raise sub.error(
                f"rule '{rule.name}' uses list '{rule.list}' with the same qtype as rule "
                f"'{by_key[key]}' in group '{name}'",
                sub.args[3],
            )
        by_key[key] = rule.name
    return Group(name, priority, tuple(rules), tuple(clients))


def _rule(line: Directive, group: str, list_specs: dict[str, ListSpec]) -> Rule:
    args = line.args
    if len(args) < 4:
        raise line.arg_error()
    name = _name(line, args[0], "rule")
    priority = _int(line, args[1], 0, 2**31 - 1)
    action = args[2].text.upper()
    if action not in ACTIONS:
        raise line.error(f"unknown action '{args[2].text}' (ALLOW, ALERT or BLOCK)", args[2])
    list_name = args[3].text
    if list_name not in list_specs:
        raise line.error(f"unknown domain list '{list_name}' (define it with 'list')", args[3])
    qtype: int | None = None
    trust = False
    response = "nodata"
    response_given = False
    target: Token | None = None
    ttl: int | None = None
    i = 4
    while i < len(args):
        option = args[i].text
        if i + 1 >= len(args):
            raise line.arg_error()
        value = args[i + 1]
        if option == "qtype":
            qtype = _qtype(line, value)
        elif option == "redirection":
            trust = _choice_of(line, value, ("inspect", "trust")) == "trust"
        elif option == "response":
            response = _choice_of(line, value, ("nodata", "nxdomain", "override"))
            response_given = True
            if response == "override":
                if i + 2 >= len(args):
                    raise line.error(
                        "'response override' needs a TARGET (domain or IP address)", value
                    )
                target = args[i + 2]
                i += 1
        elif option == "ttl":
            ttl = _int(line, value, 0, MAX_TTL)
        else:
            hint = did_you_mean(option, RULE_OPTIONS)
            raise line.error(f"unknown rule option '{option}'{hint}", args[i])
        i += 2
    if action != BLOCK and response_given:
        raise line.error(f"'response' applies only to BLOCK rules, not {action}", line.args[2])
    if ttl is not None and response != "override":
        raise line.error("'ttl' applies only to 'response override' (see block_ttl)", line.args[0])
    block = BlockResponse(response)
    if target is not None:
        block = _override(line, target, ttl or 0)
    return Rule(name, priority, action, list_name, group, qtype, trust, block, line.file, line.line)


def _choice_of(line: Directive, token: Token, choices: tuple[str, ...]) -> str:
    value = token.text.lower()
    if value not in choices:
        raise line.error(f"'{token.text}' is not one of {', '.join(choices)}", token)
    return value


def _qtype(line: Directive, token: Token) -> int:
    try:
        value = dns.rdatatype.from_text(token.text.upper())
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise line.error(f"unknown query type '{token.text}'", token) from None
    if not 1 <= value <= 65534 or value == dns.rdatatype.OPT:
        raise line.error(f"query type '{token.text}' cannot be matched", token)
    return int(value)


def _override(line: Directive, token: Token, ttl: int) -> BlockResponse:
    text = token.text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is not None:
        return BlockResponse("override", target_ip=str(address), ttl=ttl)
    try:
        canonical = lists.normalize_entry(text)
    except ValueError as err:
        raise line.error(f"invalid override target '{text}': {err}", token) from None
    if canonical.startswith("*"):
        raise line.error(f"invalid override target '{text}': wildcards are not names", token)
    return BlockResponse(
        "override", target_name=canonical + ".", target_wire=text_to_wire(canonical), ttl=ttl
    )
