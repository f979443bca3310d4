"""The ``dnsfw`` command.

    dnsfw run   [-conf FILE] [-dns.port N] [-max-inflight N] [-tcp-max-conns N] [-quiet]
    dnsfw check [-conf FILE] [-dns.port N]      parse and set up everything, open no socket
    dnsfw -plugins                               the directives dnsfw knows, in chain order
    dnsfw --version
    dnsfw COMMAND ...                            a command (plugins.COMMANDS: explain, audit)

Flags take one dash as in CoreDNS (``-conf``) or two (``--conf``). Without ``-conf``,
``./Corefile`` is read; without that file, the built-in ``.:PORT { whoami }``.
Exit status 1 with a ``FILE:LINE - ...`` message for a bad Corefile.

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
import sys
import tempfile

import structlog

import plugins as registry

from . import __version__
from .config import load
from .corefile import CorefileError
from .runtime import Runtime

DEFAULT_COREFILE = ".:{port} {{\n    whoami\n}}\n"


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnsfw", description="DNS firewall (CoreDNS-compatible Corefile)"
    )
    p.add_argument("command", nargs="?", choices=("run", "check"), default="run")
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
        "-tcp-max-conns",
        "--tcp-max-conns",
        dest="tcp_max_conns",
        type=int,
        default=1000,
        help="open TCP client connections per listener; more are closed at once",
    )
    p.add_argument("-quiet", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-plugins", "--plugins", action="store_true", help="list directives and exit")
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    return p


def _conf_path(conf: str | None, dns_port: int) -> str:
    if conf:
        return conf
    if os.path.exists("Corefile"):
        return "Corefile"
    fd, path = tempfile.mkstemp(prefix="dnsfw-default-", suffix=".Corefile")
    with os.fdopen(fd, "w") as f:
        f.write(DEFAULT_COREFILE.format(port=dns_port))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in registry.COMMANDS:
        configure_logging(quiet=True)
        return importlib.import_module(registry.COMMANDS[argv[0]]).main(argv[1:])
    args = _parser().parse_args(argv)
    if args.version:
        print(f"dnsfw-{__version__}")
        return 0
    if args.plugins:
        for name in registry.ORDER:
            mark = (
                "" if name in registry.IMPLEMENTED else "   (CoreDNS only: not supported by dnsfw)"
            )
            print(f"dns.{name}{mark}")
        return 0
    configure_logging(args.quiet)
    path = _conf_path(args.conf, args.dns_port)
    if args.command == "check":
        try:
            config = load(path, dns_port=args.dns_port, checking=True)
        except CorefileError as err:
            print(err, file=sys.stderr)
            return 1
        for key, zones in config.listeners.items():
            print(f"{key}: {len(zones)} zone(s)")
        for block in config.blocks:
            for plugin, reason in block.replays_off():
                print(f"{block.file}:{block.line}: no replays through {plugin}: {reason}")
        print(f"{path}: OK")
        return 0
    runtime = Runtime(
        path,
        dns_port=args.dns_port,
        max_inflight=args.max_inflight,
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
