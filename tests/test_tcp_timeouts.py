"""TCP clients that are slow on purpose (slowloris) against the `timeouts` deadlines.

`read` is one deadline per message, from its first byte: bytes trickling in do not extend it.
`write` is one deadline per reply, however much the client keeps sending. `idle` closes a
connection that sends nothing. Real TCP clients on 127.0.0.1, bounded in bytes and rounds.
"""

from __future__ import annotations

import socket
import struct
import time

import dns.message
import dns.query

from tests.kit.corefiles import WHOAMI_TIMEOUTS, corefile

TRICKLE = 0.5  # seconds between the bytes of a slow client
ROUNDS = 12  # bytes a slow client sends at most (6 s): far beyond a `read 1s` deadline


def framed(name: str) -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return struct.pack("!H", len(wire)) + wire


def closed(sock: socket.socket) -> bool:
    """True when the server closed or reset ``sock`` (which never gets replies here)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


def trickle(sockets: list[socket.socket], message: bytes) -> list[int]:
    """Send ``message`` a byte every TRICKLE seconds on every socket until the server closes
    them all or ROUNDS bytes went; the round at which each was closed (None: never)."""
    closed_at: list[int | None] = [None] * len(sockets)
    for n in range(ROUNDS):
        for i, sock in enumerate(sockets):
            if closed_at[i] is None:
                try:
                    sock.send(message[n : n + 1])
                except ConnectionError:
                    closed_at[i] = n
        time.sleep(TRICKLE)
        for i, sock in enumerate(sockets):
            if closed_at[i] is None and closed(sock):
                closed_at[i] = n
        if None not in closed_at:
            break
    return closed_at


def ask_tcp(port: int, name: str) -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)


def test_read_deadline_closes_a_connection_that_trickles_bytes(dnsfw):
    d = dnsfw(corefile(WHOAMI_TIMEOUTS, TIMEOUTS="read 1s"))
    with socket.create_connection(("127.0.0.1", d.port), timeout=3) as slow:
        closed_at = trickle([slow], framed("slowloris.example."))
    # closed by the deadline of the message it started, while its bytes still came
    assert closed_at[0] is not None
    assert ask_tcp(d.port, "after.example.").rcode() == 0


def test_slow_clients_holding_every_slot_lose_them_at_their_deadline(dnsfw):
    d = dnsfw(corefile(WHOAMI_TIMEOUTS, TIMEOUTS="read 1s"), extra_args=("-tcp-max-conns", "2"))
    slow = [socket.create_connection(("127.0.0.1", d.port), timeout=3) for _ in range(2)]
    try:
        for sock in slow:
            sock.send(b"\x00")
        time.sleep(0.2)  # both accepted
        # while they hold both slots, a normal client is refused, as ever
        try:
            refused = ask_tcp(d.port, "refused.example.") is None
        except (ConnectionError, EOFError):
            refused = True
        assert refused
        closed_at = trickle(slow, framed("slow.example.")[1:])
        assert None not in closed_at
        assert ask_tcp(d.port, "normal.example.").rcode() == 0
    finally:
        for sock in slow:
            sock.close()


def test_pipelined_and_split_queries_are_unaffected(dnsfw):
    d = dnsfw(corefile(WHOAMI_TIMEOUTS, TIMEOUTS="read 1s\nidle 2s"))
    with socket.create_connection(("127.0.0.1", d.port), timeout=3) as s:
        # queries keep coming for longer than `read`: each message has its own deadline
        for burst in range(6):
            names = [f"q{burst}-{i}.example." for i in range(10)]
            payload = b"".join(framed(n) for n in names)
            cut = len(payload) // 2 + 3  # the middle of a message
            s.sendall(payload[:cut])
            time.sleep(0.1)
            s.sendall(payload[cut:])
            got = [dns.query.receive_tcp(s, expiration=time.time() + 3)[0] for _ in names]
            assert sorted(str(m.question[0].name) for m in got) == sorted(names)
            time.sleep(0.4)


def test_idle_closes_a_connection_that_never_sends(dnsfw):
    d = dnsfw(corefile(WHOAMI_TIMEOUTS, TIMEOUTS="idle 1s"))
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
        assert s.recv(1) == b""  # closed by the server, not by the 5 s client timeout


def test_write_deadline_closes_a_client_that_sends_but_never_reads(dnsfw):
    d = dnsfw(corefile(WHOAMI_TIMEOUTS, TIMEOUTS="write 1s"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", d.port))
        s.settimeout(3)
        # replies beyond the kernel's socket buffers (up to 4 MB), so some wait in dnsfw
        s.sendall(framed("fill.example.") * 100_000)
        # then one whole query every TRICKLE seconds, never reading: before, each reset the clock
        reset = False
        for _ in range(ROUNDS):
            time.sleep(TRICKLE)
            try:
                s.sendall(framed("more.example."))
            except (ConnectionError, TimeoutError):
                reset = True
                break
        assert reset
