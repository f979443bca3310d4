"""Socket activation as systemd does it, for tests (like ``systemd-socket-activate``).

    python -m tests.kit.socket_activate [--udp HOST:PORT] [--tcp HOST:PORT] ... -- COMMAND ARGS...

Binds the sockets in the order given (TCP ones listening), moves them to descriptors 3, 4, ...,
sets ``LISTEN_FDS``, ``LISTEN_FDNAMES`` (``udp0:tcp1``...) and ``LISTEN_PID`` to
this process's id, and execs COMMAND in its place, so the pid stays the one ``LISTEN_PID``
names. The sockets do not set SO_REUSEADDR: a program that binds the same address itself
instead of using them fails with EADDRINUSE.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys

FIRST_FD = 3
KINDS = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}


def bound(kind: str, address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, KINDS[kind])
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, int(port)))
    if kind == "tcp":
        sock.listen(128)
    return sock


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="socket_activate")
    for kind in KINDS:
        parser.add_argument(
            f"--{kind}",
            dest="sockets",
            action="append",
            default=[],
            type=lambda value, kind=kind: (kind, value),
            metavar="HOST:PORT",
        )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    sockets = [bound(kind, address) for kind, address in args.sockets]
    # first out of the way of 3, 4, ... (close-on-exec copies), then into place
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 100) for s in sockets]
    for s in sockets:
        s.close()
    for i, fd in enumerate(high):
        os.dup2(fd, FIRST_FD + i, inheritable=True)
    env = dict(os.environ)
    env["LISTEN_FDS"] = str(len(sockets))
    env["LISTEN_FDNAMES"] = ":".join(f"{kind}{i}" for i, (kind, _) in enumerate(args.sockets))
    env["LISTEN_PID"] = str(os.getpid())
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main(sys.argv[1:])
