"""proxy.systemd: the notify protocol, the watchdog, socket activation; and dnsfw speaking them.

The end-to-end tests start ``dnsfw run`` with a fake ``$NOTIFY_SOCKET`` (an AF_UNIX datagram
socket bound in tmp_path) and through ``tests.kit.socket_activate`` (sockets passed as systemd
passes them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from proxy import systemd
from proxy.systemd import InheritedSocket, SocketPool
from tests.kit.corefiles import WHOAMI, corefile
from tests.kit.dnsfw import Dnsfw, free_port, with_port
from tests.kit.servers import GatedList

# --- notify -------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    assert len(path) < 100, "AF_UNIX paths are limited to 107 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path


def test_notify_sends_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert systemd.notify("READY=1", status="two\nlines", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=two lines"
    assert systemd.notify(status="only status", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"STATUS=only status"


def test_notify_abstract_socket() -> None:
    name = f"dnsfw-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert systemd.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_without_systemd_or_with_a_dead_socket(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env) == expected


async def test_watchdog_pings(notify_socket: tuple[socket.socket, str], monkeypatch) -> None:
    import asyncio

    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    task = asyncio.ensure_future(systemd.watchdog(0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    sock.settimeout(0)
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    assert len(pings) >= 2 and set(pings) == {b"WATCHDOG=1"}


# --- socket activation, in process ---------------------------------------------------------


def test_listen_fds_ignores_another_process_and_clears_the_environment() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert systemd.listen_fds(environ=env) == []
    assert env == {"OTHER": "x"}
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}
    assert systemd.listen_fds(environ=env) == []
    assert env == {}


def test_inherited_socket_reads_family_type_and_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        found = systemd.inherited_socket(os.dup(udp.fileno()), "dns")
        assert found is not None
        try:
            assert (found.family, found.type) == (socket.AF_INET, socket.SOCK_DGRAM)
            assert (found.host, found.port, found.name) == (
                "127.0.0.1",
                udp.getsockname()[1],
                "dns",
            )
            assert not os.get_inheritable(found.sock.fileno())
            assert found.label == f"udp://127.0.0.1:{found.port}"
        finally:
            found.sock.close()


def test_inherited_socket_refuses_what_dnsfw_cannot_serve() -> None:
    read, write = os.pipe()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert systemd.inherited_socket(read) is None
        assert systemd.inherited_socket(unix.fileno()) is None
        os.fstat(unix.fileno())  # left open: not ours to close
    finally:
        unix.close()
        os.close(read)
        os.close(write)


def passed(kind: int, host: str, port: int, *, dual: bool = False) -> InheritedSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return InheritedSocket(socket.socket(family, kind), "", family, kind, host, port, dual)


def test_pool_hands_out_pairs_by_address() -> None:
    pool = SocketPool(
        [
            passed(socket.SOCK_DGRAM, "127.0.0.1", 53),
            passed(socket.SOCK_STREAM, "127.0.0.1", 53),
            passed(socket.SOCK_DGRAM, "::1", 53),
            passed(socket.SOCK_STREAM, "::1", 53),
            passed(socket.SOCK_DGRAM, "127.0.0.1", 5300),
        ]
    )
    pairs = pool.pairs_for(socket.AF_INET, "127.0.0.1", 53)
    assert pairs is not None and len(pairs) == 1
    udp, tcp = pairs[0]
    assert (udp.type, tcp.type) == (socket.SOCK_DGRAM, socket.SOCK_STREAM)
    assert udp.fileno() != pool.sockets[0].sock.fileno()  # a duplicate: the pool keeps its own
    v6 = pool.pairs_for(socket.AF_INET6, "0:0::1", 53)  # the same address
    assert v6 is not None and len(v6) == 1
    assert pool.pairs_for(socket.AF_INET, "0.0.0.0", 53) is None  # bind it yourself
    assert pool.pairs_for(socket.AF_INET, "127.0.0.2", 53) is None
    assert [s.port for s in pool.unused()] == [5300]
    again = pool.pairs_for(socket.AF_INET, "127.0.0.1", 53)  # a reload re-opening it
    assert again is not None
    for sock in (*pairs[0], *v6[0], *again[0], *(s.sock for s in pool.sockets)):
        sock.close()


def test_pool_refuses_half_a_pair() -> None:
    pool = SocketPool([passed(socket.SOCK_DGRAM, "127.0.0.1", 53)])
    with pytest.raises(OSError, match=r"no TCP \(ListenStream=\) socket for 127.0.0.1:53"):
        pool.pairs_for(socket.AF_INET, "127.0.0.1", 53)
    pool.sockets[0].sock.close()


def test_pool_dual_stack_wildcard_takes_ipv4() -> None:
    pool = SocketPool(
        [
            passed(socket.SOCK_DGRAM, "::", 53, dual=True),
            passed(socket.SOCK_STREAM, "::", 53, dual=True),
        ]
    )
    assert pool.pairs_for(socket.AF_INET, "0.0.0.0", 53) == []
    pairs = pool.pairs_for(socket.AF_INET6, "::", 53)
    assert pairs is not None and len(pairs) == 1
    for sock in (*pairs[0], *(s.sock for s in pool.sockets)):
        sock.close()


# --- dnsfw under a fake systemd --------------------------------------------------------------


def messages(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    sock.settimeout(timeout)
    return [sock.recv(4096) for _ in range(count)]


def pending(sock: socket.socket) -> list[bytes]:
    sock.settimeout(0)
    found = []
    while True:
        try:
            found.append(sock.recv(4096))
        except BlockingIOError:
            return found


URL_LIST = """
.:$PORT {
    bind 127.0.0.1
    firewall {
        list blocked url $LIST
        group g 100 {
            rule deny 100 BLOCK blocked response nxdomain
        }
    }
    whoami
}
"""

# whoami misspelt: a reload of it fails
MISSPELT = """\
.:$PORT {
    bind 127.0.0.1
    whoamii
}
"""


def test_ready_after_listeners_and_lists_then_reload_and_stop(
    dnsfw, notify_socket: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = notify_socket
    with GatedList("blocked.example\n") as lists:
        env = {"NOTIFY_SOCKET": path, "DNSFW_STATE_DIR": str(tmp_path / "state"), "NO_PROXY": "*"}
        d = dnsfw(
            corefile(URL_LIST, LIST=lists.url), env=env, wait="listening"
        )  # the list is held back
        assert lists.requested.wait(10)
        time.sleep(0.3)  # a READY=1 sent too early would be here by now
        # nothing but where the start-up stands: no READY=1 while the list is loading
        assert pending(sock) == [b"STATUS=waiting for plugins: firewall"]
        lists.released.set()
        (ready,) = messages(sock, 1)
        assert ready == f"READY=1\nSTATUS=serving dns://127.0.0.1:{d.port}".encode()
        # READY=1 came after the list was loaded: it is in force
        assert d.query("blocked.example").rcode() == dns.rcode.NXDOMAIN
        assert d.query("allowed.example").rcode() == dns.rcode.NOERROR

        d.signal(signal.SIGHUP)
        reloading, ready_again = messages(sock, 2)
    assert reloading.startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    usec = int(reloading.split(b"=")[-1])
    assert abs(usec - systemd.monotonic_usec()) < 60_000_000
    assert ready_again.startswith(b"READY=1\nSTATUS=serving")

    assert d.stop() == 0
    assert messages(sock, 1) == [b"STOPPING=1"]


def test_failed_reload_is_still_followed_by_ready(
    dnsfw, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    d = dnsfw(WHOAMI, env={"NOTIFY_SOCKET": path})
    assert messages(sock, 1)[0].startswith(b"READY=1")
    d.write(MISSPELT)
    d.signal(signal.SIGHUP)
    reloading, ready = messages(sock, 2)
    assert reloading.startswith(b"RELOADING=1")
    assert ready.startswith(b"READY=1\nSTATUS=reload failed, previous configuration serving: ")
    assert b"whoamii" in ready
    assert d.query("still.example").rcode() == dns.rcode.NOERROR


def test_watchdog_pings_from_dnsfw(dnsfw, notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    dnsfw(WHOAMI, env=env)
    got = messages(sock, 4)
    assert got.count(b"WATCHDOG=1") >= 2


def activated(text: str, tmp_path: Path, sockets: list[str]) -> Dnsfw:
    """dnsfw started through tests.kit.socket_activate with ``sockets`` (``--udp``/``--tcp`` args)."""
    d = Dnsfw(text, tmp_path)
    args = [with_port(a, d.port) for a in sockets]
    d.args = [sys.executable, "-m", "tests.kit.socket_activate", *args, "--", *d.args]
    return d


def test_socket_activation_serves_the_passed_sockets(tmp_path: Path) -> None:
    spare = free_port()
    d = activated(
        WHOAMI,
        tmp_path,
        ["--udp", "127.0.0.1:$PORT", "--tcp", "127.0.0.1:$PORT", "--udp", f"127.0.0.1:{spare}"],
    )
    try:
        # the sockets are bound without SO_REUSEADDR: had dnsfw bound its own, it would have
        # failed with EADDRINUSE instead of answering
        d.start()
        assert d.query("udp.example").rcode() == dns.rcode.NOERROR
        assert d.query("tcp.example", tcp=True).rcode() == dns.rcode.NOERROR
        d.signal(signal.SIGHUP)  # a reload keeps serving on the same sockets
        deadline = time.monotonic() + 10
        while "reloaded" not in d.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.query("after.example", tcp=True).rcode() == dns.rcode.NOERROR
        assert d.query("after.example").rcode() == dns.rcode.NOERROR
        unused = [line for line in d.stderr.splitlines() if "event='listen_fd_unused'" in line]
        assert len(unused) == 1
        assert f"socket='udp://127.0.0.1:{spare}' name='udp2'" in unused[0]
    finally:
        assert d.stop() == 0


def test_socket_activation_refuses_half_a_pair(tmp_path: Path) -> None:
    d = activated(WHOAMI, tmp_path, ["--udp", "127.0.0.1:$PORT"])
    d.start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(20) == 1
    assert f"systemd passed no TCP (ListenStream=) socket for 127.0.0.1:{d.port}" in d.stderr


def test_dnsfw_check_ignores_notify_socket(notify_socket: tuple[socket.socket, str], tmp_path):
    sock, path = notify_socket
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    whoami\n}\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check", "-conf", str(conf)],
        env={**os.environ, "NOTIFY_SOCKET": path},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert pending(sock) == []
