"""dnsfw as the tests run it: ``dnsfw run`` as a subprocess from a Corefile (``Dnsfw``), the
CLI for one-shot commands (``run_cli``), and free ports on 127.0.0.1."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

ROOT = Path(__file__).resolve().parents[2]


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


# Ports for test servers come from below the kernel's ephemeral range: a port the kernel picks
# for bind(0) is free now but may be handed to any client socket (a query, a forward) before the
# server binds it, and a dnsfw that then cannot listen fails its test ("Address already in use").
_EPHEMERAL = _ephemeral_ports()
_SERVER_PORTS = [port for port in range(10000, 65536) if port not in _EPHEMERAL]
_pick = random.Random(os.getpid() ^ time.monotonic_ns())


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, outside the ephemeral range."""
    for _ in range(200):
        port = _pick.choice(_SERVER_PORTS)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
        ):
            try:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def with_port(text: str, port: int) -> str:
    """``text`` with ``$PORT`` replaced by ``port``."""
    return text.replace("$PORT", str(port))


class Dnsfw:
    """A running ``dnsfw run`` subprocess; ``port`` is where it listens (UDP and TCP) on 127.0.0.1."""

    def __init__(
        self,
        corefile: str,
        workdir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        env=None,
        wrap: tuple[str, ...] = (),
    ):
        """``wrap``: a command that runs dnsfw's (its arguments follow), e.g. ``unshare``."""
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "Corefile"
        self.write(corefile)
        self.stderr_path = workdir / "dnsfw.stderr"
        self.stdout_path = workdir / "dnsfw.stdout"
        self.args = [
            *wrap,
            *(sys.executable, "-m", "proxy.cli", "run", "-conf", str(self.conf), *extra_args),
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def write(self, corefile: str) -> None:
        """Write ``corefile`` (with this instance's port) where ``dnsfw run`` reads it; a running
        dnsfw rereads it on SIGHUP or reload."""
        self.conf.write_text(with_port(corefile, self.port))

    def start(self, *, wait: bool | str = True, timeout: float = 20.0) -> Dnsfw:
        """``wait``: True = until every plugin is ready (lists loaded) and the listener answers;
        "listening" = until the listener answers (plugins may still be loading); False = not."""
        # the child keeps its own copies of the descriptors
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=err)
        if wait:
            self.wait_ready(timeout, plugins=wait != "listening")
        return self

    def wait_ready(self, timeout: float = 20.0, *, plugins: bool = True) -> None:
        """Until dnsfw logs `started` (listeners open) or, with ``plugins``, `ready` (every list
        loaded), then until it answers a probe over UDP (any rcode). Queries are answered while
        lists load (SERVFAIL when fail closed), so a test counting queries, answers or cache
        entries must not probe earlier; and one probe with a long timeout is counted once,
        where short timeouts could send it twice to a slow start."""
        deadline = time.monotonic() + timeout
        event = "event='ready'" if plugins else "event='started'"
        while event not in self.stderr:
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"dnsfw did not log {event} within {timeout}s:\n{self.stderr}")
            time.sleep(0.02)
        probe = dns.message.make_query("ready.probe.invalid.", "A")
        while True:
            self._check_alive()
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=2.0)
                return
            except (dns.exception.Timeout, OSError) as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dnsfw did not answer within {timeout}s:\n{self.stderr}"
                    ) from err
                time.sleep(0.05)

    def wait_logged(self, event: str, count: int, timeout: float = 20.0) -> None:
        """Until ``event`` (e.g. ``event='reloaded'``) appears ``count`` times in dnsfw's log."""
        deadline = time.monotonic() + timeout
        while self.stderr.count(event) < count:
            assert time.monotonic() < deadline, f"no {event} in:\n{self.stderr}"
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"dnsfw exited with {self.proc.returncode}:\n{self.stderr}")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def query(self, name: str, rdtype: str = "A", *, tcp: bool = False, timeout: float = 3.0, **kw):
        q = dns.message.make_query(name, rdtype, **kw)
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.port, timeout=timeout)
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    """``dnsfw ARGS`` as a subprocess (for check/explain/... tests)."""
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
