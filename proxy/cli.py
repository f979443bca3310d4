"""The ``dnsfw`` command.

    dnsfw run   [-conf FILE] [-dns.port N] [-max-inflight N] [-max-inflight-per-client N]
                [-tcp-max-conns N] [-quiet]
    dnsfw check [-conf FILE] [-dns.port N] [-strict]  parse and set up everything, open no socket
    dnsfw -plugins                               the directives dnsfw implements, in chain order
    dnsfw --version                              version, platform, Python, build (git commit)
    dnsfw COMMAND ...                            a command (plugins.COMMANDS: explain, audit)

``dnsfw -h`` lists them all, each command with the first line of its module's docstring.
Flags take one dash as in CoreDNS (``-conf``) or two (``--conf``). Without ``-conf``,
``./Corefile`` is read; without that file, as CoreDNS, the built-in ``.:PORT { whoami }``
(PORT from ``-dns.port``, default 53), and dnsfw says so. Exit status 1 with a
``FILE:LINE - ...`` message for a bad Corefile; ``check`` prints warnings (rules that can
never match, a url list it cannot download now...) on stderr and still exits 0; with
``-strict`` a url list it cannot download is an error (exit 1).

Signals while running: SIGTERM/SIGINT stop gracefully (in-flight queries finish, bounded);
SIGHUP and SIGUSR1 reload the Corefile (a failed reload changes nothing and is logged).
Under systemd, ``run`` reports READY/RELOADING/STOPPING and watchdog pings and takes listening
sockets from socket activation (:mod:`proxy.systemd`). The running process, its reloads and
its HTTP listeners are :class:`proxy.runtime.Runtime`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import sys

import structlog

import plugins as registry

from . import __version__
from .build import RUNTIME, build
from .config import load
from .corefile import CorefileError
from .runtime import Runtime

DEFAULT_COREFILE = ".:{port} {{\n    whoami\n}}\n"
CORE_COMMANDS = {
    "run": "serve DNS with the Corefile (the default command)",
    "check": "parse and set up everything (lists read), open no socket; exit 1 on error",
}


def configure_logging(quiet: bool = False) -> None:
    """Service logs: one key=value line per event on stderr (journald adds the time there too)."""
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(name)s %(levelname)s %(message)s", stream=sys.stderr)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _commands() -> str:
    """One line per command: run, check, then each of plugins.COMMANDS (its docstring's
    first line, "dnsfw NAME - what it does")."""
    lines = [f"  {name:<9} {text}" for name, text in CORE_COMMANDS.items()]
    for name, module in registry.COMMANDS.items():
        doc = importlib.import_module(module).__doc__ or ""
        summary = doc.strip().splitlines()[0].split(" - ", 1)[-1].rstrip(".")
        lines.append(f"  {name:<9} {summary} (dnsfw {name} -h)")
    return "commands:\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnsfw",
        usage=f"dnsfw [run|check] [options]  |  dnsfw {{{','.join(registry.COMMANDS)}}} ...  "
        "|  dnsfw -plugins",
        description="DNS firewall (CoreDNS-compatible Corefile)",
        epilog=_commands(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "command", nargs="?", choices=tuple(CORE_COMMANDS), default="run", help=argparse.SUPPRESS
    )
    p.add_argument("-conf", "--conf", dest="conf", help="Corefile to load (default ./Corefile)")
    p.add_argument(
        "-dns.port",
        "--dns.port",
        "-p",
        dest="dns_port",
        type=int,
        default=53,
        help="default port of dns:// server blocks without one (default 53)",
    )
    p.add_argument(
        "-max-inflight",
        "--max-inflight",
        dest="max_inflight",
        type=int,
        default=10000,
        help="queries that may wait on upstream I/O at once; more are REFUSED",
    )
    p.add_argument(
        "-max-inflight-per-client",
        "--max-inflight-per-client",
        dest="max_inflight_per_client",
        type=int,
        default=None,
        help="of those, how many one client (IPv4 address, IPv6 /64) may have; more are "
        "REFUSED (default: a tenth of -max-inflight, at least 100; 0: no share)",
    )
    p.add_argument(
        "-tcp-max-conns",
        "--tcp-max-conns",
        dest="tcp_max_conns",
        type=int,
        default=1000,
        help="open TCP client connections per listener; more are closed at once",
    )
    p.add_argument("-quiet", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument(
        "-strict",
        "--strict",
        action="store_true",
        help="check: a url list that cannot be downloaded now is an error, not a warning",
    )
    p.add_argument(
        "-plugins",
        "--plugins",
        action="store_true",
        help="list the directives dnsfw implements, in chain order, and exit",
    )
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    return p


def _corefile(conf: str | None, dns_port: int) -> tuple[str, str | None]:
    """(path, text): ``-conf``, else ./Corefile, else CoreDNS's default ``.:PORT { whoami }``
    (text given, read from no file; messages name it "Corefile", as CoreDNS's do)."""
    if conf:
        return conf, None
    if os.path.exists("Corefile"):
        return "Corefile", None
    text = DEFAULT_COREFILE.format(port=dns_port)
    default = " ".join(text.split())
    print(
        f"dnsfw: no -conf and no ./Corefile: using the default configuration, {default}",
        file=sys.stderr,
    )
    return "Corefile", text


def _plugins() -> None:
    """The directives dnsfw implements in chain order, as CoreDNS prints its compiled-in ones."""
    for name in registry.ORDER:
        if name in registry.IMPLEMENTED:
            print(f"dns.{name}")
    others = len(registry.ORDER) - len(registry.IMPLEMENTED)
    print(f"({others} other CoreDNS directives parse but are refused: not supported by dnsfw)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in registry.COMMANDS:
        configure_logging(quiet=True)
        return importlib.import_module(registry.COMMANDS[argv[0]]).main(argv[1:])
    args = _parser().parse_args(argv)
    if args.version:  # as CoreDNS: name-version, then platform, runtime and build
        print(f"dnsfw-{__version__}")
        print(f"{sys.platform}/{platform.machine()}, {RUNTIME}, {build()}")
        return 0
    if args.plugins:
        _plugins()
        return 0
    configure_logging(args.quiet)
    path, text = _corefile(args.conf, args.dns_port)
    if args.command == "check":
        try:
            config = load(
                path,
                dns_port=args.dns_port,
                checking=True,
                text=text,
                probe=True,
                strict=args.strict,
            )
        except CorefileError as err:
            print(err, file=sys.stderr)
            return 1
        for key, zones in config.listeners.items():
            print(f"{key}: {len(zones)} zone(s)")
        for block in config.blocks:
            for plugin, reason in block.replays_off():
                print(f"{block.file}:{block.line}: no replays through {plugin}: {reason}")
        for warning in config.app.warnings:
            print(warning, file=sys.stderr)
        print(f"{path if text is None else 'default configuration'}: OK")
        return 0
    runtime = Runtime(
        path,
        text=text,
        dns_port=args.dns_port,
        max_inflight=args.max_inflight,
        max_inflight_per_client=args.max_inflight_per_client,
        tcp_max_connections=args.tcp_max_conns,
    )
    try:
        runtime.configure()
    except CorefileError as err:
        print(err, file=sys.stderr)
        return 1
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        pass
    try:
        return asyncio.run(runtime.run())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
