"""Parsing and validation of a ``cache`` directive into a :class:`CacheConfig`.

Messages are CoreDNS's (plugin/cache/setup.go), including the Go runtime's texts for a bad
integer (``strconv.Atoi: parsing "x": invalid syntax``); every error carries the offending
token's file and line. Stricter than CoreDNS on purpose: extra arguments after
``success``/``denial``'s MINTTL are refused (CoreDNS ignores them), as are serve_stale's
v1.14.7 extensions (VERIFY_TIMEOUT, RESPONSE_TTL, FAILURE_RECHECK), which dnsfw does not
implement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token, did_you_mean, zones_of
from proxy.durations import parse_duration

DEFAULT_CAPACITY = 10000
MAX_SUCCESS_TTL = 3600
MAX_DENIAL_TTL = 1800
MIN_TTL = 5
SERVFAIL_TTL = 5
MAX_SERVFAIL_TTL = 300  # RFC 2308: no SERVFAIL caching beyond 5 minutes
PREFETCH_WINDOW = 60.0
PREFETCH_PERCENTAGE = 10
STALE_UP_TO = 3600.0
SUCCESS = "success"
DENIAL = "denial"

_GO_INT = re.compile(r"[+-]?[0-9]+\Z")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class TTLs:
    """Capacity and TTL bounds of one of the two caches."""

    capacity: int  # as written; the store rounds it like CoreDNS (see store.effective_capacity)
    max_ttl: int
    min_ttl: int


@dataclass(frozen=True)
class CacheConfig:
    """Everything a ``cache`` directive says, validated; durations in seconds."""

    zones: tuple[str, ...]
    success: TTLs
    denial: TTLs
    servfail_ttl: float = SERVFAIL_TTL
    prefetch: int = 0  # AMOUNT; 0: off
    prefetch_window: float = PREFETCH_WINDOW
    prefetch_percentage: int = PREFETCH_PERCENTAGE
    stale_up_to: float = 0.0  # 0: serve_stale off
    stale_verify: bool = False
    disable_success: tuple[str, ...] = ()
    disable_denial: tuple[str, ...] = ()
    keepttl: bool = False


def parse(directive: Directive, ctx: SetupContext) -> CacheConfig:
    """Validate ``cache [TTL] [ZONES...] { ... }``."""
    args = list(directive.args)
    success = TTLs(DEFAULT_CAPACITY, MAX_SUCCESS_TTL, MIN_TTL)
    denial = TTLs(DEFAULT_CAPACITY, MAX_DENIAL_TTL, MIN_TTL)
    # the first argument is the TTL when it is an integer, else a zone
    if args and _GO_INT.match(args[0].text):
        ttl = _go_int(args[0])
        if ttl <= 0:
            raise _err(args[0], f"cache TTL can not be zero or negative: {ttl}")
        success = TTLs(success.capacity, ttl, success.min_ttl)
        denial = TTLs(denial.capacity, ttl, denial.min_ttl)
        args = args[1:]
    options: dict[str, object] = {"zones": ctx.zones_from(args)}
    for line in directive.block or ():
        if line.block is not None:
            raise line.arg_error()
        name = line.name.text
        if name == SUCCESS:
            success = _ttls(line, success)
        elif name == DENIAL:
            denial = _ttls(line, denial)
        elif name in _OPTIONS:
            options.update(_OPTIONS[name](line))
        else:
            # CoreDNS's answer to an unknown property, with a suggestion for a typo
            known = did_you_mean(name, [SUCCESS, DENIAL, *_OPTIONS])
            raise line.error(line.arg_error().message + known)
    return CacheConfig(success=success, denial=denial, **options)  # type: ignore[arg-type]


def _ttls(line: Directive, current: TTLs) -> TTLs:
    """``success|denial CAPACITY [TTL] [MINTTL]``."""
    args = line.args
    if not args or len(args) > 3:
        raise line.arg_error()
    capacity = _go_int(args[0])
    max_ttl, min_ttl = current.max_ttl, current.min_ttl
    if len(args) > 1:
        max_ttl = _go_int(args[1])
        if max_ttl <= 0:
            raise _err(args[1], f"cache TTL can not be zero or negative: {max_ttl}")
    if len(args) > 2:
        min_ttl = _go_int(args[2])
        if min_ttl < 0:
            raise _err(args[2], f"cache min TTL can not be negative: {min_ttl}")
    return TTLs(capacity, max_ttl, min_ttl)


def _prefetch(line: Directive) -> dict[str, object]:
    args = line.args
    if not args or len(args) > 3:
        raise line.arg_error()
    amount = _go_int(args[0])
    if amount < 0:
        raise _err(args[0], f"prefetch amount should be positive: {amount}")
    options: dict[str, object] = {"prefetch": amount}
    if len(args) > 1:
        options["prefetch_window"] = _go_duration(args[1])
    if len(args) > 2:
        token = args[2]
        last = token.text[-1:]
        if last != "%":
            raise _err(
                token, f"last character of percentage should be `%`, but is: {_go_quote(last)}"
            )
        number = _go_int(Token(token.text[:-1], token.file, token.line))
        if not 10 <= number <= 90:
            raise _err(token, f"percentage should fall in range [10, 90]: {number}")
        options["prefetch_percentage"] = number
    return options


def _serve_stale(line: Directive) -> dict[str, object]:
    args = line.args
    if len(args) > 2:
        raise _err(
            args[2],
            "serve_stale: only [DURATION] [immediate|verify] are supported by dnsfw "
            "(no VERIFY_TIMEOUT, RESPONSE_TTL or FAILURE_RECHECK)",
        )
    up_to = STALE_UP_TO
    if args:
        up_to = _go_duration(args[0])
        if up_to < 0:
            raise _err(args[0], "invalid negative duration for serve_stale")
    verify = False
    if len(args) > 1:
        mode = args[1].text.lower()
        if mode not in ("immediate", "verify"):
            raise _err(args[1], f"invalid value for serve_stale refresh mode: {mode}")
        verify = mode == "verify"
    return {"stale_up_to": up_to, "stale_verify": verify}


def _servfail(line: Directive) -> dict[str, object]:
    if len(line.args) != 1:
        raise line.arg_error()
    token = line.args[0]
    seconds = _go_duration(token)
    if seconds < 0:
        raise _err(token, "invalid negative ttl for servfail")
    if seconds > MAX_SERVFAIL_TTL:
        raise _err(token, "caching SERVFAIL responses over 5 minutes is not permitted")
    return {"servfail_ttl": seconds}


def _disable(line: Directive) -> dict[str, object]:
    args = line.args
    if not args:
        raise line.arg_error()
    zones: list[str] = []
    for token in args[1:]:
        try:
            zones.extend(zones_of(token))
        except CorefileError:
            raise _err(token, f"invalid disabled zone: {token.text}") from None
    # without zones, the whole name space
    which = args[0].text
    if which not in (SUCCESS, DENIAL):
        raise _err(args[0], f'cache type for disable must be "{SUCCESS}" or "{DENIAL}"')
    return {f"disable_{which}": tuple(zones) or (".",)}


def _keepttl(line: Directive) -> dict[str, object]:
    if line.args:
        raise line.arg_error()
    return {"keepttl": True}


_OPTIONS = {
    "prefetch": _prefetch,
    "serve_stale": _serve_stale,
    "servfail": _servfail,
    "disable": _disable,
    "keepttl": _keepttl,
}


def _err(token: Token, message: str) -> CorefileError:
    return CorefileError(token.file, token.line, message)


def _go_int(token: Token) -> int:
    """An integer as Go's strconv.Atoi reads it, with its error texts."""
    text = token.text
    if not _GO_INT.match(text):
        raise _err(token, f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise _err(token, f'strconv.Atoi: parsing "{text}": value out of range')
    return value


def _go_duration(token: Token) -> float:
    """A Go duration in seconds; like time.ParseDuration it may be negative or a bare ``0``."""
    text = token.text
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    try:
        return sign * parse_duration(Token(body, token.file, token.line))
    except CorefileError:
        raise _err(token, f"invalid duration '{text}'") from None


def _go_quote(char: str) -> str:
    """Go's %q of a byte: a single-quoted character literal."""
    if not char.isprintable():
        return "'" + repr(char)[1:-1] + "'"
    return "'" + char.replace("\\", "\\\\").replace("'", "\\'") + "'"
