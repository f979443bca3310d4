"""Parsing and validation of a ``forward`` directive into a :class:`ForwardConfig`.

Every token is checked here, at setup; errors carry the offending token's file and line and,
where CoreDNS has one, CoreDNS's message (plugin/forward/setup.go, plugin/pkg/parse/host.go,
plugin/pkg/tls/tls.go). Reading a resolv.conf-style TO file or TLS key material is the only
I/O: no socket is opened.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass, field

import dns.rcode

from proxy import names
from proxy.corefile import CorefileError, Directive, Token, zones_of
from proxy.durations import parse_duration

MAX_TOS = 15
DEFAULT_EXPIRE = 10.0
DEFAULT_MAX_FAILS = 2
DEFAULT_HEALTH_CHECK = 0.5
DEFAULT_READ_TIMEOUT = 2.0
POLICIES = ("random", "round_robin", "sequential")
DEFAULT_PORTS = {"dns": 53, "tls": 853, "https": 443}
UNSUPPORTED_SCHEMES = ("https3", "quic", "grpc", "unix")
TLS_TRANSPORTS = ("tls", "https")  # upstreams reached over TLS
# CoreDNS options dnsfw does not implement: refused rather than silently ignored
NOT_SUPPORTED = (
    "max_connect_attempts",
    "max_idle_conns",
    "max_age",
    "next_on_nodata",
    "resolver",
    "doh_method",
    "source_address",
)
# rcode names as CoreDNS (miekg/dns StringToRcode) spells them, header rcodes only
RCODES = {dns.rcode.to_text(dns.rcode.Rcode(code)): code for code in range(11)}
EXTENDED_RCODES = frozenset(
    (
        "BADSIG",
        "BADVERS",
        "BADKEY",
        "BADTIME",
        "BADMODE",
        "BADNAME",
        "BADALG",
        "BADTRUNC",
        "BADCOOKIE",
    )
)


@dataclass(frozen=True)
class Target:
    """One upstream as written (or read from a resolv.conf file)."""

    transport: str  # "dns", "tls" or "https" (DoH, path /dns-query)
    host: str  # an IP literal; IPv6 may carry a %scope (dns only)
    port: int
    server_name: str = ""  # tls://IP%NAME, https://IP%NAME

    @property
    def address(self) -> str:
        """``HOST:PORT`` as CoreDNS labels it (``[v6]:PORT``), without the scheme."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ForwardConfig:
    """Everything a ``forward`` directive says, validated."""

    from_zone: str
    targets: tuple[Target, ...]
    except_zones: tuple[str, ...] = ()
    force_tcp: bool = False
    prefer_udp: bool = False
    expire: float = DEFAULT_EXPIRE
    max_fails: int = DEFAULT_MAX_FAILS
    health_check: float = DEFAULT_HEALTH_CHECK
    health_rd: bool = True
    health_domain: str = "."
    policy: str = "random"
    max_concurrent: int = 0
    max_concurrent_text: str = "0"
    read_timeout: float = DEFAULT_READ_TIMEOUT
    failfast: bool = False
    next_rcodes: frozenset[int] = frozenset()
    failover_rcodes: frozenset[int] = frozenset()
    tls_servername: str = ""
    tls_context: ssl.SSLContext | None = field(default=None, compare=False)
    # the same certificates for https:// upstreams, offering HTTP/2 by ALPN
    doh_context: ssl.SSLContext | None = field(default=None, compare=False)


def parse(directive: Directive) -> ForwardConfig:
    """Validate a whole ``forward FROM TO... { ... }`` directive."""
    if len(directive.args) < 2:
        raise directive.arg_error()
    from_zone = _from_zone(directive.args[0])
    written = [(token, t) for token in directive.args[1:] for t in parse_to(token)]
    targets = [t for _, t in written]
    if len(targets) > MAX_TOS:
        raise directive.error(f"more than {MAX_TOS} TOs configured: {len(targets)}")
    options: dict[str, object] = {}
    tls_args: tuple[Token, ...] | None = None
    for line in directive.block or ():
        if line.block is not None:
            raise line.arg_error()
        name = line.name.text
        if name == "tls":
            if len(line.args) > 3:
                raise line.arg_error()
            tls_args = line.args
            continue
        handler = _OPTIONS.get(name)
        if handler is None:
            if name in NOT_SUPPORTED:
                raise line.error(f"forward option '{name}' is not supported by dnsfw")
            raise line.unknown_property(["tls", *_OPTIONS])
        options.update(handler(line))
    servername = str(options.get("tls_servername", ""))
    for token, target in written:
        if target.server_name and servername:
            raise directive.error(
                f"both forward ('{servername}') and proxy level ('{target.server_name}') TLS "
                f"servernames are set for upstream proxy '{target.address}'",
                token,
            )
    needs_tls = any(t.transport in TLS_TRANSPORTS for t in targets)
    context = tls_context(tls_args or ()) if needs_tls or tls_args is not None else None
    doh_context = None
    if any(t.transport == "https" for t in targets):
        doh_context = tls_context(tls_args or ())
        doh_context.set_alpn_protocols(["h2"])
    return ForwardConfig(
        from_zone=from_zone,
        targets=tuple(targets),
        tls_context=context,
        doh_context=doh_context,
        **options,  # type: ignore[arg-type]
    )


def _from_zone(token: Token) -> str:
    return _zones(token)[0]  # CoreDNS uses the first zone of a CIDR


def _zones(token: Token) -> list[str]:
    """The zones of a FROM or ``except`` token; a bad CIDR in CoreDNS's words."""
    if "/" not in token.text:
        return zones_of(token)
    try:
        return names.reverse_zones(token.text)
    except ValueError:
        raise CorefileError(token.file, token.line, f"unable to normalize '{token.text}'") from None


# --- TO ------------------------------------------------------------------------------------


def parse_to(token: Token) -> list[Target]:
    """``IP``, ``IP:PORT``, ``[v6]:PORT``, ``dns://...``, ``tls://IP[%NAME][:PORT]``,
    ``https://IP[%NAME][:PORT]`` or a file."""
    text = token.text
    scheme, rest = "dns", text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme in UNSUPPORTED_SCHEMES:
            raise _err(
                token,
                f"'{scheme}' is not supported as a destination protocol in forward: {rest} "
                "(dnsfw forwards over dns://, tls:// and https:// only)",
            )
        if scheme not in DEFAULT_PORTS:
            raise _err(token, f'not an IP address or file: "{text}"')
    server_name = ""
    if scheme in TLS_TRANSPORTS and "%" in rest:
        rest, server_name = _split_server_name(rest)
    host_port = _host_port(rest, DEFAULT_PORTS[scheme])
    if host_port is None:
        if scheme == "dns" and "://" not in text and os.path.isfile(text):
            return _resolv_conf(token)
        raise _err(token, f'not an IP address or file: "{rest}"')
    host, port = host_port
    if scheme in TLS_TRANSPORTS and "%" in host:
        raise _err(token, f'not an IP address or file: "{rest}"')
    return [Target(scheme, host, port, server_name)]


def _split_server_name(rest: str) -> tuple[str, str]:
    """``IP%NAME[:PORT]`` -> (``IP[:PORT]``, NAME), as CoreDNS's splitZone."""
    host, _, name = rest.rpartition("%")
    if ":" in name:
        name, _, port = name.rpartition(":")
        host += ":" + port
    return host, name


def _host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """(IP, port) from ``IP``, ``IP:PORT`` or ``[IP]:PORT``; None when it is not one."""
    host, port = text, default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            return None
        host, port_text = text[1:close], text[close + 2 :]
        port = _port(port_text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text)
    if port is None or not _is_ip(host):
        return None
    return host, port


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        return None
    return int(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _resolv_conf(token: Token) -> list[Target]:
    """Each ``nameserver`` line of a resolv.conf-style file, on port 53 (as CoreDNS)."""
    try:
        with open(token.text, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise _err(token, f'failed to open file "{token.text}": {exc.strerror}') from None
    targets = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            if not _is_ip(fields[1]):
                raise _err(
                    token,
                    f"{token.text}:{number}: nameserver '{fields[1]}' is not an IP address",
                )
            targets.append(Target("dns", fields[1], DEFAULT_PORTS["dns"]))
    if not targets:
        raise _err(token, f"no nameservers found in {token.text}")
    return targets


# --- block options -------------------------------------------------------------------------


def _flag(name: str):
    def parse_flag(line: Directive) -> dict[str, object]:
        if line.args:
            raise line.arg_error()
        return {name: True}

    return parse_flag


def _one_arg(line: Directive) -> Token:
    if len(line.args) != 1:
        raise line.arg_error()
    return line.args[0]


def _except(line: Directive) -> dict[str, object]:
    if not line.args:
        raise line.arg_error()
    zones: list[str] = []
    for token in line.args:
        zones.extend(_zones(token))
    return {"except_zones": tuple(zones)}


def _max_fails(line: Directive) -> dict[str, object]:
    token = _one_arg(line)
    if not (token.text.isascii() and token.text.isdigit()) or int(token.text) >= 2**32:
        raise _err(token, f"max_fails must be an integer from 0 to 4294967295, not '{token.text}'")
    return {"max_fails": int(token.text)}


def _duration(token: Token, name: str) -> float:
    """A non-negative Go duration (CoreDNS's "NAME can't be negative" for a leading '-')."""
    if token.text.startswith("-"):
        raise _err(token, f"{name} can't be negative: {token.text}")
    return parse_duration(token)


def _health_check(line: Directive) -> dict[str, object]:
    if not line.args:
        raise line.arg_error()
    options: dict[str, object] = {
        "health_check": _duration(line.args[0], "health_check"),
        "health_domain": ".",
    }
    rest = list(line.args[1:])
    while rest:
        token = rest.pop(0)
        if token.text == "no_rec":
            options["health_rd"] = False
        elif token.text == "domain":
            if not rest:
                raise line.arg_error()
            name = rest.pop(0)
            try:
                domain = names.text_to_wire(name.text)
            except ValueError:
                raise _err(name, f"health_check: invalid domain name {name.text}") from None
            options["health_domain"] = names.wire_to_text(domain)
        else:
            raise _err(token, f"health_check: unknown option {token.text}")
    return options


def _policy(line: Directive) -> dict[str, object]:
    token = _one_arg(line)
    if token.text not in POLICIES:
        raise _err(token, f"unknown policy '{token.text}'")
    return {"policy": token.text}


def _max_concurrent(line: Directive) -> dict[str, object]:
    token = _one_arg(line)
    try:
        value = int(token.text)
    except ValueError:
        raise _err(token, f"max_concurrent must be an integer, not '{token.text}'") from None
    if value < 0:
        raise _err(token, f"max_concurrent can't be negative: {value}")
    return {"max_concurrent": value, "max_concurrent_text": token.text}


def _read_timeout(line: Directive) -> dict[str, object]:
    seconds = _duration(_one_arg(line), "read_timeout")
    if seconds <= 0:
        raise _err(line.args[0], f"read_timeout must be greater than 0: {line.args[0].text}")
    return {"read_timeout": seconds}


def _rcodes(line: Directive, *, failover: bool) -> frozenset[int]:
    if not line.args:
        raise line.arg_error()
    codes = set()
    for token in line.args:
        name = token.text.upper()
        if name in EXTENDED_RCODES:
            raise _err(
                token,
                f"{token.text} is an extended rcode; dnsfw matches header rcodes (NOERROR..NOTZONE)",
            )
        if name not in RCODES:
            raise _err(token, f"{token.text} is not a valid rcode")
        if failover and RCODES[name] == 0:
            raise _err(token, "NoError cannot be used in failover")
        codes.add(RCODES[name])
    return frozenset(codes)


_OPTIONS = {
    "except": _except,
    "force_tcp": _flag("force_tcp"),
    "prefer_udp": _flag("prefer_udp"),
    "failfast_all_unhealthy_upstreams": _flag("failfast"),
    "expire": lambda line: {"expire": _duration(_one_arg(line), "expire")},
    "max_fails": _max_fails,
    "tls_servername": lambda line: {"tls_servername": _one_arg(line).text},
    "policy": _policy,
    "health_check": _health_check,
    "max_concurrent": _max_concurrent,
    "read_timeout": _read_timeout,
    "next": lambda line: {"next_rcodes": _rcodes(line, failover=False)},
    "failover": lambda line: {"failover_rcodes": _rcodes(line, failover=True)},
}


def tls_context(args: tuple[Token, ...]) -> ssl.SSLContext:
    """A client context as CoreDNS's NewTLSConfigFromArgs: no args (system CAs), CA,
    CERT KEY (system CAs), or CERT KEY CA. TLS 1.2 at least; the peer is always verified."""
    texts = [t.text for t in args]
    # PROTOCOL_TLS_CLIENT verifies the certificate and the host name by default
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    ca_token = args[0] if len(args) == 1 else args[2] if len(args) == 3 else None
    if ca_token is None:
        context.load_default_certs()
    else:
        ca = ca_token.text
        try:
            context.load_verify_locations(cafile=ca)
        except FileNotFoundError as exc:
            raise _err(ca_token, f"error reading {ca}: {exc.strerror}") from None
        except OSError:  # ssl.SSLError included: a file without a PEM certificate
            raise _err(ca_token, f"could not read root certs from {ca}") from None
    if len(texts) >= 2:
        try:
            context.load_cert_chain(texts[0], texts[1])
        except (ssl.SSLError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _err(args[0], f"could not load TLS cert: {reason}") from None
    return context


def _err(token: Token, message: str) -> CorefileError:
    return CorefileError(token.file, token.line, message)
