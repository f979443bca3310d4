"""Unbound, Debian's recursive resolver, as the upstream of end-to-end tests.

``Unbound(upstream, workdir)`` writes a configuration to ``workdir`` and runs ``unbound -d``
on 127.0.0.1 (a free port, UDP and TCP) as a subprocess, stopped by its PID. A stub zone for
the root sends every iterative query to ``upstream`` (``tests.kit.upstream.Upstream``, which
answers from its zones), so Unbound resolves the test's names as it resolves the internet's:
it follows CNAME and DNAME chains and caches, with no network beyond loopback. Only the
iterator module runs (no DNSSEC validation: the zones are unsigned). Without the ``unbound``
program the test is skipped, or fails in CI (:mod:`tests.kit.tools`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from .dnsfw import free_port
from .tools import need_tool

CONFIG = """\
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
stub-zone:
    name: "."
    stub-addr: {stub}
remote-control:
    control-enable: no
"""


class Unbound:
    """A running ``unbound`` resolving through ``upstream`` (``HOST:PORT``); ``address`` is
    where it listens."""

    def __init__(self, upstream: str, workdir: Path) -> None:
        host, port = upstream.rsplit(":", 1)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.conf = workdir / "unbound.conf"
        self.conf.write_text(CONFIG.format(port=self.port, workdir=workdir, stub=f"{host}@{port}"))
        self.log = workdir / "unbound.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> Unbound:
        binary = need_tool("unbound", "unbound")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-d", "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        probe = dns.message.make_query(".", "SOA")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unbound exited with {self.proc.returncode}:\n{self.output}")
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=1.0)
                return self
            except (dns.exception.Timeout, OSError) as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"unbound did not answer:\n{self.output}") from err
                time.sleep(0.05)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Unbound:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
