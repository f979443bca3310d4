"""DNS over TLS (RFC 7858): `tls://` blocks and the `tls` directive, with real clients
(dnspython, kdig +tls) against certificates the tests make; certificate reloads; handshakes
that never finish and floods of them are bounded. Loopback only, bounded in count and time.
"""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port, run_cli
from tests.kit.tls import client_context, der, make_cert, served_cert
from tests.kit.tools import need_tool

NAME = "dns.test"


def start(tmp_path, plugins: str = "whoami", *, args: tuple[str, ...] = ()) -> tuple[Dnsfw, int]:
    make_cert(tmp_path, NAME)
    tls_port = free_port()
    text = corefile(
        ENCRYPTED,
        KEYS=f"tls://.:{tls_port}",
        CERT="dot.crt",
        KEY="dot.key",
        PLUGINS=plugins,
    )
    return Dnsfw(text, tmp_path, extra_args=args).start(), tls_port


def dot(port: int, tmp_path, name: str = "example.org.", rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    context = client_context(tmp_path / "dot.crt", NAME)
    return dns.query.tls(
        query, "127.0.0.1", port=port, ssl_context=context, server_hostname=NAME, timeout=5
    )


def test_dnspython_dot_query_is_answered_by_the_chain_as_tcp(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        reply = dot(port, tmp_path)
        assert reply.rcode() == dns.rcode.NOERROR
        # whoami saw the peer of the TLS connection, on a stream transport (as CoreDNS: _tcp)
        srv = [rr for rr in reply.additional if rr.name.to_text().startswith("_tcp.")]
        assert srv, reply.to_text()
        assert str(reply.additional[0][0]) == "127.0.0.1"
    finally:
        dnsfw.stop()


def test_pipelined_queries_on_one_tls_connection_are_all_answered(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        context = client_context(tmp_path / "dot.crt", NAME)
        queries = [dns.message.make_query(f"q{i}.example.org.", "A") for i in range(20)]
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            # every query in one write, before reading any reply (RFC 7858 3.3)
            tls.sendall(b"".join(struct.pack("!H", len(w)) + w for w in map(to_wire, queries)))
            ids = set()
            for _ in queries:
                size = struct.unpack("!H", recv_exactly(tls, 2))[0]
                ids.add(dns.message.from_wire(recv_exactly(tls, size)).id)
        assert ids == {q.id for q in queries}
    finally:
        dnsfw.stop()


def to_wire(query: dns.message.Message) -> bytes:
    return query.to_wire()


def recv_exactly(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_kdig_tls_query(tmp_path):
    kdig = need_tool("kdig", "knot-dnsutils")
    dnsfw, port = start(tmp_path)
    try:
        out = subprocess.run(
            [
                kdig,
                *("@127.0.0.1", "-p", str(port), "+tls"),
                f"+tls-ca={tmp_path / 'dot.crt'}",
                f"+tls-hostname={NAME}",
                "example.org",
                "A",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "status: NOERROR" in out.stdout, out.stdout
        assert "TLS session (TLS1." in out.stdout, out.stdout
    finally:
        dnsfw.stop()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("nosuch.crt nosuch.key", "tls: cannot read {dir}/nosuch.crt: No such file or directory"),
        ("dot.crt nosuch.key", "tls: cannot read {dir}/nosuch.key: No such file or directory"),
        ("bad.crt dot.key", "is not a valid PEM pair"),
    ],
)
def test_bad_certificate_at_start_is_an_error_with_file_and_line(tmp_path, files, message):
    make_cert(tmp_path, NAME)
    (tmp_path / "bad.crt").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    conf = tmp_path / "Corefile"
    conf.write_text(f"tls://.:{free_port()} {{\n    tls {files}\n    whoami\n}}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode != 0
    assert f"plugin/tls: {conf}:2 - Error during parsing: " in result.stderr, result.stderr
    assert message.format(dir=tmp_path) in result.stderr


def test_tls_block_without_a_certificate_is_refused(tmp_path):
    conf = tmp_path / "Corefile"
    conf.write_text("tls://.:8853 {\n    whoami\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode != 0
    assert "Corefile:1 - Error during parsing: tls:// needs a certificate" in result.stderr


def test_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        first = der(tmp_path / "dot.crt")
        old_ca = tmp_path / "old.crt"
        old_ca.write_bytes((tmp_path / "dot.crt").read_bytes())
        context = client_context(old_ca, NAME)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as kept,
        ):
            make_cert(tmp_path, NAME)  # a new certificate and key in the same files
            second = der(tmp_path / "dot.crt")
            assert second != first
            dnsfw.signal(signal.SIGHUP)
            dnsfw.wait_logged("event='reloaded'", 1)
            assert served_cert(port, tmp_path / "dot.crt", NAME) == second
            # the connection made before the reload still answers, with its certificate
            wire = dns.message.make_query("kept.example.org.", "A").to_wire()
            kept.sendall(struct.pack("!H", len(wire)) + wire)
            size = struct.unpack("!H", recv_exactly(kept, 2))[0]
            assert dns.message.from_wire(recv_exactly(kept, size)).rcode() == dns.rcode.NOERROR
            assert kept.getpeercert(binary_form=True) == first
    finally:
        dnsfw.stop()


def test_bad_certificate_at_reload_keeps_the_old_one(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        served = der(tmp_path / "dot.crt")
        good = tmp_path / "good.crt"
        good.write_bytes((tmp_path / "dot.crt").read_bytes())
        (tmp_path / "dot.key").write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
        dnsfw.signal(signal.SIGHUP)
        dnsfw.wait_logged("event='reload_failed'", 1)
        assert "plugin/tls:" in dnsfw.stderr and "Corefile:3" in dnsfw.stderr
        assert served_cert(port, good, NAME) == served
        assert dot(port, tmp_path).rcode() == dns.rcode.NOERROR
    finally:
        dnsfw.stop()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes or resets ``sock`` (which sends nothing) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_a_handshake_that_never_comes_is_cut_after_read(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:
            # `read 1s`: the handshake must be done within it; 10 s is far beyond
            assert closed_within(silent, 10)
    finally:
        dnsfw.stop()


def test_a_handshake_flood_is_bounded_by_the_connection_limit(tmp_path):
    dnsfw, port = start(tmp_path, args=("-tcp-max-conns", "4"))
    try:
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.3)  # the server accepted them all (each now waits for its handshake)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                assert closed_within(extra, 5)  # beyond the limit: reset at once
            # once `read` cut the stalled handshakes, the listener takes clients again
            assert all(closed_within(s, 10) for s in stalled)
            assert dot(port, tmp_path).rcode() == dns.rcode.NOERROR
        finally:
            for s in stalled:
                s.close()
    finally:
        dnsfw.stop()
