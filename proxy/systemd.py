"""The systemd service protocol, spoken directly (no libsystemd, no extra dependency).

Readiness and state (``sd_notify(3)``): :func:`notify` sends one datagram of ``KEY=VALUE`` lines
to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). Without the variable it does nothing, so the same code runs under systemd, in a
container or in a terminal. dnsfw sends (see :mod:`proxy.cli`):

* ``READY=1`` once its listeners are bound and every plugin's ``ready()`` is true (lists loaded);
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` when a reload starts, ``READY=1`` when it ended,
  whether it succeeded or failed (a failed reload keeps the old configuration serving);
* ``STOPPING=1`` when a stop begins;
* ``STATUS=...``: one line for ``systemctl status``;
* ``WATCHDOG=1`` every half ``WatchdogSec`` (:func:`watchdog_interval`, :func:`watchdog`), from
  the event loop itself, so a stuck loop stops the pings and systemd restarts the service.

Socket activation (``sd_listen_fds(3)``): :func:`listen_fds` takes the sockets systemd passed as
descriptors 3, 4, ... when ``$LISTEN_PID`` is this process and ``$LISTEN_FDS`` counts them
(``$LISTEN_FDNAMES``: their colon-separated names), then removes those variables so that no
child inherits them. Each becomes an :class:`InheritedSocket` with its family, type and bound
address. :class:`SocketPool` hands them to the server by address: a Corefile listener
``dns://HOST:PORT`` uses the inherited UDP and TCP sockets bound to exactly HOST:PORT (``0.0.0.0``
and ``::`` for a listener without ``bind``) instead of binding its own. Those must come as a
pair (``ListenDatagram=`` and ``ListenStream=`` on the same address); a dual-stack ``[::]``
pair (``BindIPv6Only=both``) also serves the IPv4 wildcard. Inherited sockets stay in the pool
for the life of the process and every listener gets a duplicate, so a listener that a reload
closes and a later reload opens again finds its socket still there (systemd keeps its own copy
all along, so the address is never free to bind anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger("dnsfw.systemd")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_INET = (socket.AF_INET, socket.AF_INET6)
_TYPES = {socket.SOCK_DGRAM: "udp", socket.SOCK_STREAM: "tcp"}


def notify(
    state: str = "", *, status: str | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Send ``state`` (``KEY=VALUE`` lines) and a ``STATUS=`` line to systemd; False when not
    run under systemd's notify protocol. ``status`` is folded onto one line (a line per field).

    A send error is logged, not raised: the service keeps serving, and systemd's own timeouts
    (TimeoutStartSec, WatchdogSec) say what the missing message means.
    """
    if status is not None:
        state = "\n".join(filter(None, (state, "STATUS=" + " ".join(status.split()))))
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path[0] == "@":
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), path)
    except OSError as err:
        log.warning("notify_failed", socket=env["NOTIFY_SOCKET"], state=state, error=str(err))
        return False
    return True


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock of ``MONOTONIC_USEC=`` (sent with RELOADING=1)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), None when it is off.

    As ``sd_watchdog_enabled(3)``: ``$WATCHDOG_USEC`` is the timeout; ``$WATCHDOG_PID``, when
    set, must be this process (the variable may have leaked from a parent).
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


async def watchdog(interval: float) -> None:
    """Ping systemd every ``interval`` seconds until cancelled."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class InheritedSocket:
    """A socket systemd passed, with what :class:`SocketPool` matches it by."""

    sock: socket.socket
    name: str  # from $LISTEN_FDNAMES ("" when not given)
    family: socket.AddressFamily
    type: socket.SocketKind
    host: str  # bound address, normalised ("0.0.0.0", "::", "127.0.0.1", "::1")
    port: int
    dual_stack: bool = False  # an IPv6 socket that also takes IPv4 (IPV6_V6ONLY off)

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{_TYPES.get(self.type, str(self.type))}://{host}:{self.port}"


def inherited_socket(fd: int, name: str = "") -> InheritedSocket | None:
    """The descriptor ``fd`` as an :class:`InheritedSocket`; None (and a warning) when it is not
    a bound UDP or TCP socket over IPv4 or IPv6 (dnsfw has no use for it)."""
    try:
        sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    except OSError as err:
        log.warning("listen_fd_ignored", fd=fd, name=name, reason=str(err))
        return None
    if sock.family not in _INET or sock.type not in _TYPES:
        log.warning("listen_fd_ignored", fd=fd, name=name, reason=f"{sock.family!r} {sock.type!r}")
        sock.detach()  # leave the descriptor alone: it is not ours to close
        return None
    os.set_inheritable(fd, False)
    host, port = sock.getsockname()[:2]
    dual = sock.family == socket.AF_INET6 and not sock.getsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY
    )
    return InheritedSocket(sock, name, sock.family, sock.type, _normal(host), port, dual)


def listen_fds(*, environ: dict[str, str] | None = None) -> list[InheritedSocket]:
    """The sockets systemd passed to this process (empty without socket activation).

    The ``LISTEN_*`` variables are removed from ``environ`` (default ``os.environ``) either way.
    """
    env = os.environ if environ is None else environ
    pid, count, names = (env.pop(var, "") for var in _LISTEN_VARS)
    if pid != str(os.getpid()) or not count.isdigit():
        return []
    labels = names.split(":") if names else []
    found = []
    for i in range(int(count)):
        inherited = inherited_socket(LISTEN_FDS_START + i, labels[i] if i < len(labels) else "")
        if inherited is not None:
            found.append(inherited)
    return found


class SocketPool:
    """Inherited sockets, looked up by (family, type, host, port)."""

    def __init__(self, sockets: Iterable[InheritedSocket]) -> None:
        self.sockets = list(sockets)
        self.used: set[int] = set()  # indexes into self.sockets that a listener took

    def __bool__(self) -> bool:
        return bool(self.sockets)

    def _take(self, family: int, kind: int, host: str, port: int) -> socket.socket | None:
        """A duplicate of the inherited socket bound to host:port, or None."""
        want = _normal(host)
        for i, s in enumerate(self.sockets):
            if (s.family, s.type, s.host, s.port) == (family, kind, want, port):
                self.used.add(i)
                return s.sock.dup()
        return None

    def pairs_for(
        self, family: int, host: str, port: int
    ) -> list[tuple[socket.socket, socket.socket]] | None:
        """The inherited (UDP, TCP) pairs that serve host:port; None when none was passed.

        ``[]`` for the IPv4 wildcard when a dual-stack ``[::]`` pair takes IPv4 too. Raises
        OSError when only one of UDP and TCP was passed: a DNS listener needs both, and binding
        the other one here would serve one transport from outside systemd's control.
        """
        if family == socket.AF_INET and _normal(host) == "0.0.0.0" and self._dual_stack(port):
            return []
        udp = self._take(family, socket.SOCK_DGRAM, host, port)
        tcp = self._take(family, socket.SOCK_STREAM, host, port)
        if udp is not None and tcp is not None:
            return [(udp, tcp)]
        if udp is None and tcp is None:
            return None
        for sock in (udp, tcp):
            if sock is not None:
                sock.close()
        missing = "TCP (ListenStream=)" if tcp is None else "UDP (ListenDatagram=)"
        shown = f"[{host}]" if ":" in host else host
        raise OSError(f"systemd passed no {missing} socket for {shown}:{port}, only the other one")

    def _dual_stack(self, port: int) -> bool:
        kinds = {s.type for s in self.sockets if s.dual_stack and s.host == "::" and s.port == port}
        return kinds == {socket.SOCK_DGRAM, socket.SOCK_STREAM}

    def unused(self) -> list[InheritedSocket]:
        """Inherited sockets that no listener of the configuration took."""
        return [s for i, s in enumerate(self.sockets) if i not in self.used]


def _normal(host: str) -> str:
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    return host
