"""From parsed server blocks to a runnable configuration.

For each server block, the directives are set up in ``plugins.ORDER`` (repeats in Corefile
order), each by its plugin module's ``setup``; the resulting plugin objects are folded into the
block's chain. Then the blocks' keys and ``bind`` addresses are grouped into listeners
(transport, host, port) with a zone map each, and duplicates are refused as CoreDNS refuses
them. Nothing here opens a socket: ``dnsfw check`` runs exactly this.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import plugins as registry

from . import discovery
from .corefile import (
    CorefileError,
    Directive,
    ServerBlock,
    ServerKey,
    Token,
    fingerprint,
    parse,
    parse_file,
    zones_of,
)
from .doh import DoHOptions
from .metrics import Registry
from .names import text_to_wire
from .pipeline import Handler, Plugin, build_chain
from .services import Services
from .wire import CLASS_IN

SERVED_SCHEMES = frozenset({"dns", "tls", "https", "quic"})
# schemes whose listeners need the block's `tls` certificate -> the ALPN ids they offer
# (RFC 7858's "dot"; DoH: HTTP/2, else HTTP/1.1)
TLS_ALPN: dict[str, tuple[str, ...]] = {
    "tls": ("dot",),
    "https": ("h2", "http/1.1"),
    "quic": ("doq",),  # RFC 9250; its context is aioquic's (the optional extra dnsfw[quic])
}


@dataclass
class AppContext:
    """Process-wide facts and registrations shared by every block's setup."""

    conf_path: str
    dns_port: int = 53
    checking: bool = False  # under `dnsfw check`: set up, but no I/O that changes anything
    # `dnsfw check` (not explain, audit): try the sources it would download (url lists) now;
    # one that fails is a warning (the service may start before the network), with `strict`
    # an error
    probe: bool = False
    strict: bool = False
    reloading: bool = False  # set up to replace a running configuration (start hooks may wait)
    metrics: Registry = field(default_factory=Registry)
    # what plugins offer the core (the admin API), under typed keys (proxy.services)
    services: Services = field(default_factory=Services)
    # process-wide settings that proxy.runtime applies (not per server block):
    # HTTP endpoints by listen address and path prefix (proxy.http.Site: admin, health, ...),
    http: dict[str, dict[str, Any]] = field(default_factory=dict)
    reload: Any = None  # the `reload` stage's settings (plugins.reload.ReloadSpec)
    lameduck: float = 0.0  # seconds to keep serving after a stop signal (`health`)
    # state that outlives one configuration: `dnsfw run` passes the same dict to every reload
    shared: dict[str, Any] = field(default_factory=dict)
    # what `dnsfw check` prints without failing: "FILE:LINE - Warning: ..." (see warn)
    warnings: list[str] = field(default_factory=list)
    # checks that need every block's listeners (a `forward` to one of them would loop): build()
    # runs them once the listeners are known; each raises CorefileError with file and line
    listener_checks: list[Callable[[Sequence[ListenerKey]], None]] = field(default_factory=list)
    # `_dns.resolver.arpa` SVCB records of the encrypted listeners (proxy.discovery), filled
    # in place once the listeners are known: a plugin may hold the list from its setup on
    discovery: list[bytes] = field(default_factory=list)
    # set by the runtime serving this configuration: stop the process with exit status 1 after
    # logging why (the `loop` plugin's "loop detected"); None under `dnsfw check`
    fatal: Callable[[str], None] | None = None

    def warn(self, file: str, line: int, message: str) -> None:
        """A setup finding that is legal but surely not meant (a rule that can never match)."""
        self.warnings.append(f"{file}:{line} - Warning: {message}")


@dataclass
class BlockContext:
    """What one server block's setups read, and what config-only plugins (``bind``) set."""

    keys: tuple[ServerKey, ...]
    file: str
    line: int
    bind: list[str] = field(default_factory=list)  # listen addresses; empty: all
    bind_token: Token | None = None
    timeouts: dict[str, float] = field(default_factory=dict)  # TCP read/write/idle (`timeouts`)
    # the `tls` certificate (plugins/tls.py), one context per TLS_ALPN scheme
    tls: dict[str, Any] = field(default_factory=dict)
    tls_names: tuple[str, ...] = ()  # its subjectAltName DNS names (discovery's target)
    doh: DoHOptions = field(default_factory=DoHOptions)  # the `https` directive

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k.zone for k in self.keys))


@dataclass
class SetupContext:
    """Handed to each plugin's ``setup(directive, ctx)``."""

    block: BlockContext
    app: AppContext

    def zones_from(self, args: Sequence[Token]) -> tuple[str, ...]:
        """Zones given as arguments, normalised; the block's zones when there are none
        (CoreDNS's OriginsFromArgsOrServerBlock)."""
        if not args:
            return self.block.zones
        return tuple(zone for token in args for zone in zones_of(token))


@dataclass
class Block:
    """One set-up server block: its keys, listen addresses and chain."""

    keys: tuple[ServerKey, ...]
    bind: tuple[str, ...]
    plugins: list[Plugin]  # every plugin object, chain order (lifecycle hooks run on these)
    chain: Handler
    file: str
    line: int
    timeouts: dict[str, float] = field(default_factory=dict)
    # query classes its chain takes: IN, and those a stage names (Plugin.qclasses)
    classes: frozenset[int] = frozenset({CLASS_IN})
    tls: dict[str, Any] = field(default_factory=dict)  # scheme -> context
    tls_names: tuple[str, ...] = ()
    doh: DoHOptions = field(default_factory=DoHOptions)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.plugins]

    def replays_off(self) -> list[tuple[str, str]]:
        """(plugin, reason) of the stages that keep their queries from being replayed."""
        return [(p.name, p.replays.reason) for p in self.plugins if not p.replays.takes_part]


@dataclass(frozen=True)
class ListenerKey:
    transport: str
    host: str  # "" is every address
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


@dataclass
class Config:
    blocks: list[Block]
    listeners: dict[ListenerKey, dict[bytes, Block]]  # zone (wire, lower-case) -> block
    app: AppContext
    sha512: str = ""  # fingerprint of the parsed Corefile it was built from (``reload``)


def load(
    path: str,
    *,
    dns_port: int = 53,
    checking: bool = False,
    reloading: bool = False,
    metrics: Registry | None = None,
    shared: dict[str, Any] | None = None,
    text: str | None = None,
    probe: bool = False,
    strict: bool = False,
) -> Config:
    """Parse ``path`` and set up every block. Raises CorefileError with file and line.

    ``metrics`` and ``shared`` are the process's (``dnsfw run``); by default a fresh registry
    and dict, as for ``dnsfw check``. ``text``: the Corefile's text, not read from ``path``
    (the built-in default configuration). ``probe``, ``strict``: see :class:`AppContext`.
    """
    blocks = parse_blocks(path, dns_port, text)
    app = AppContext(
        conf_path=path,
        dns_port=dns_port,
        checking=checking,
        reloading=reloading,
        probe=probe,
        strict=strict,
    )
    if metrics is not None:
        app.metrics = metrics
    if shared is not None:
        app.shared = shared
    config = build(blocks, app)
    config.sha512 = fingerprint(blocks)
    return config


def parse_blocks(path: str, dns_port: int, text: str | None = None) -> list[ServerBlock]:
    """The server blocks of the Corefile at ``path``, or of ``text`` named ``path``."""
    if text is None:
        return parse_file(path, directives=registry.ORDER, dns_port=dns_port)
    return parse(text, filename=path, directives=registry.ORDER, dns_port=dns_port)


def build(blocks: list[ServerBlock], app: AppContext) -> Config:
    built = [setup_block(b, app) for b in blocks]
    listeners = group_listeners(built)
    for check in app.listener_checks:
        check(tuple(listeners))
    app.discovery[:] = discovery.records(
        (key.transport, key.host, key.port, next(iter(zones.values())).tls_names)
        for key, zones in listeners.items()
    )
    return Config(built, listeners, app)


def plugin_module(name: str, at: Directive) -> ModuleType:
    module = registry.IMPLEMENTED.get(name)
    if module is None:
        raise at.error("not supported by dnsfw").with_plugin(name)
    return importlib.import_module(module)


def setup_block(block: ServerBlock, app: AppContext) -> Block:
    for key in block.keys:
        if key.scheme not in SERVED_SCHEMES:
            raise CorefileError(
                key.token.file,
                key.token.line,
                f"{key.scheme}:// servers are not supported by dnsfw yet "
                f"(dns://, tls://, https://, quic://)",
            )
    ctx = SetupContext(BlockContext(block.keys, block.file, block.line), app)
    rank = {name: i for i, name in enumerate(registry.ORDER)}
    # stable sort: repeated directives keep their Corefile order
    ordered = sorted(block.directives, key=lambda d: rank[d.name.text])
    seen: set[str] = set()
    plugins: list[Plugin] = []
    for directive in ordered:
        name = directive.name.text
        module = plugin_module(name, directive)
        if getattr(module, "ONCE", False) and name in seen:
            raise directive.error("this plugin can only be used once per Server Block").with_plugin(
                name
            )
        seen.add(name)
        try:
            plugin = module.setup(directive, ctx)
        except CorefileError as err:
            raise err if err.plugin else err.with_plugin(name) from None
        if plugin is not None:
            if not isinstance(plugin, Plugin):
                raise directive.error(
                    f"{type(plugin).__name__} does not meet the plugin contract "
                    "(plugins/__init__.py: name, replays, serve)"
                ).with_plugin(name)
            plugins.append(plugin)
    return Block(
        keys=block.keys,
        bind=tuple(ctx.block.bind),
        plugins=plugins,
        chain=build_chain(plugins),
        file=block.file,
        line=block.line,
        timeouts=dict(ctx.block.timeouts),
        classes=frozenset({CLASS_IN}).union(*(p.qclasses for p in plugins)),
        tls=_needs_tls(block, ctx.block.tls),
        doh=ctx.block.doh,
        tls_names=ctx.block.tls_names,
    )


def _needs_tls(block: ServerBlock, contexts: dict[str, Any]) -> dict[str, Any]:
    """The block's certificates; refused when a tls://, https:// or quic:// key has none to
    serve (quic:// without aioquic: the extra to install)."""
    for key in block.keys:
        if key.scheme in TLS_ALPN and key.scheme not in contexts:
            message = f"{key.scheme}:// needs a certificate: add `tls CERT KEY` to the block"
            if key.scheme == "quic" and contexts:
                message = (
                    "quic:// (DNS over QUIC) needs the optional extra dnsfw[quic]: "
                    "pip install 'dnsfw[quic]' (aioquic)"
                )
            raise CorefileError(key.token.file, key.token.line, message)
    return contexts


def group_listeners(blocks: list[Block]) -> dict[ListenerKey, dict[bytes, Block]]:
    """Listeners and their zone maps; refuses what CoreDNS refuses (register.go)."""
    listeners: dict[ListenerKey, dict[bytes, Block]] = {}
    defined: dict[
        tuple[str, str, int, str], tuple[str, ServerKey]
    ] = {}  # (scheme, zone, port, host)
    for block in blocks:
        hosts = block.bind or ("",)
        for key in block.keys:
            for host in hosts:
                address = key.address
                where = f"{address} on {host}" if host else address
                previous = defined.get((key.scheme, key.zone, key.port, host))
                if previous is not None:
                    raise CorefileError(
                        key.token.file,
                        key.token.line,
                        f"cannot serve {where} - it is already defined",
                    )
                wildcard = defined.get((key.scheme, key.zone, key.port, ""))
                if host and wildcard is not None:
                    raise CorefileError(
                        key.token.file,
                        key.token.line,
                        f"cannot serve {where} - zone overlap listener capacity with {address}",
                    )
                defined[(key.scheme, key.zone, key.port, host)] = (host, key)
                listener = ListenerKey(key.scheme, host, key.port)
                listeners.setdefault(listener, {})[text_to_wire(key.zone)] = block
    # a wildcard block defined after bound ones on the same zone:port overlaps them too
    for (scheme, zone, port, host), (_, key) in defined.items():
        if not host and any(h and (s, z, p) == (scheme, zone, port) for (s, z, p, h) in defined):
            raise CorefileError(
                key.token.file,
                key.token.line,
                f"cannot serve {key.address} - zone overlap listener capacity with another "
                f"block's bind on {key.address}",
            )
    return listeners
