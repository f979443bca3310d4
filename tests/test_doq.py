"""DNS over QUIC (RFC 9250): `quic://` blocks with dnspython's DoQ client against a
certificate the test makes; the query runs the chain (whoami sees it as a stream transport,
Route 53 logs it as DoQ); discovery lists it. Loopback only, bounded."""

from __future__ import annotations

import json
import signal
import sys
import time

import dns.message
import dns.query
import dns.quic
import dns.rcode
import pytest

# what dnspython raises on a connection that ended (it has no public name for it)
from dns.quic._common import UnexpectedEOF

import proxy
from proxy.config import load
from proxy.corefile import CorefileError
from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port, run_cli
from tests.kit.tls import make_cert

NAME = "dns.test"


def test_dnspython_doq_query_is_answered_and_logged_as_doq(tmp_path):
    make_cert(tmp_path, NAME)
    port = free_port()
    log = tmp_path / "queries.log"
    plugins = f"log . {{\n    format route53\n    output {log}\n}}\nwhoami"
    dnsfw = Dnsfw(
        corefile(
            ENCRYPTED, KEYS=f"quic://.:{port}", CERT="dot.crt", KEY="dot.key", PLUGINS=plugins
        ),
        tmp_path,
    ).start()
    try:
        for i in range(3):  # one connection per query from dnspython's sync client
            reply = dns.query.quic(
                dns.message.make_query(f"q{i}.example.org.", "A"),
                "127.0.0.1",
                port=port,
                verify=str(tmp_path / "dot.crt"),
                server_hostname=NAME,
                timeout=5,
            )
            assert reply.rcode() == dns.rcode.NOERROR
            assert str(reply.additional[0][0]) == "127.0.0.1"
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            doq = [x for x in lines if x["transport"] == "DoQ"]
            if len(doq) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sorted(x["query_name"] for x in doq) == [f"q{i}.example.org." for i in range(3)]
    finally:
        dnsfw.stop()


def test_without_aioquic_a_quic_block_is_refused_naming_the_extra(tmp_path, monkeypatch):
    make_cert(tmp_path, NAME)
    # as where the extra is not installed: proxy.doq cannot be imported
    monkeypatch.setitem(sys.modules, "proxy.doq", None)
    monkeypatch.delattr(proxy, "doq", raising=False)
    conf = tmp_path / "Corefile"
    conf.write_text("quic://.:8853 {\n    tls dot.crt dot.key\n    whoami\n}\n")
    with pytest.raises(CorefileError) as refused:
        load(str(conf), checking=True)
    assert str(refused.value) == (
        f"{conf}:1 - Error during parsing: quic:// (DNS over QUIC) needs the optional extra "
        "dnsfw[quic]: pip install 'dnsfw[quic]' (aioquic)"
    )


def start(tmp_path, idle: str = "60s") -> tuple[Dnsfw, int]:
    make_cert(tmp_path, NAME)
    port = free_port()
    text = corefile(
        ENCRYPTED, KEYS=f"quic://.:{port}", CERT="dot.crt", KEY="dot.key", PLUGINS="whoami"
    )
    # (60 s: a connection kept across a reload must not go idle while the reload runs)
    text = text.replace("idle 2s", f"idle {idle}")
    return Dnsfw(text, tmp_path).start(), port


def doq(
    port: int, ca, connection: dns.quic.SyncQuicConnection | None = None
) -> dns.message.Message:
    """A query on a new connection that trusts only ``ca`` (or on ``connection``)."""
    query = dns.message.make_query("example.org.", "A")
    return dns.query.quic(
        query,
        "127.0.0.1",
        port=port,
        verify=str(ca),
        server_hostname=NAME,
        connection=connection,
        timeout=5,
    )


def refused(port: int, ca) -> bool:
    """True when a new connection that trusts only ``ca`` is closed in its handshake."""
    try:
        doq(port, ca)
    except UnexpectedEOF:  # the client's alert (a certificate CA 1 did not sign)
        return True
    return False


def test_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        ca1 = tmp_path / "ca1.crt"  # each certificate is self-signed: its own CA
        ca1.write_bytes((tmp_path / "dot.crt").read_bytes())
        manager = dns.quic.SyncQuicManager(verify_mode=str(ca1), server_name=NAME)
        kept = manager.connect("127.0.0.1", port)
        try:
            assert doq(port, ca1, kept).rcode() == dns.rcode.NOERROR
            make_cert(tmp_path, NAME)  # a new certificate and key in the same files
            ca2 = tmp_path / "ca2.crt"
            ca2.write_bytes((tmp_path / "dot.crt").read_bytes())
            assert ca2.read_bytes() != ca1.read_bytes()
            dnsfw.signal(signal.SIGHUP)
            dnsfw.wait_logged("event='reloaded'", 1)
            # a new connection is served the new certificate: it verifies against CA 2 only
            assert doq(port, ca2).rcode() == dns.rcode.NOERROR
            assert refused(port, ca1)
            # the connection made before the reload still answers
            assert doq(port, ca1, kept).rcode() == dns.rcode.NOERROR
        finally:
            kept.close()
            manager.closed("127.0.0.1", port)
    finally:
        dnsfw.stop()


def test_bad_certificate_at_reload_keeps_the_old_one(tmp_path):
    dnsfw, port = start(tmp_path)
    try:
        good = tmp_path / "good.crt"
        good.write_bytes((tmp_path / "dot.crt").read_bytes())
        (tmp_path / "dot.key").write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
        dnsfw.signal(signal.SIGHUP)
        dnsfw.wait_logged("event='reload_failed'", 1)
        assert "plugin/tls:" in dnsfw.stderr and "Corefile:3" in dnsfw.stderr
        assert doq(port, good).rcode() == dns.rcode.NOERROR
    finally:
        dnsfw.stop()


def test_after_a_reload_new_connections_still_close_after_idle(tmp_path):
    dnsfw, port = start(tmp_path, idle="2s")
    try:
        dnsfw.signal(signal.SIGHUP)
        dnsfw.wait_logged("event='reloaded'", 1)
        ca = tmp_path / "dot.crt"
        manager = dns.quic.SyncQuicManager(verify_mode=str(ca), server_name=NAME)
        conn = manager.connect("127.0.0.1", port)
        try:
            assert doq(port, ca, conn).rcode() == dns.rcode.NOERROR
            # the server's `idle 2s` (its QUIC max_idle_timeout, which the client applies too)
            # ended the connection; 5 s is far beyond it (aioquic's own default is 60 s)
            time.sleep(5)
            with pytest.raises(UnexpectedEOF):
                doq(port, ca, conn)
        finally:
            conn.close()
            manager.closed("127.0.0.1", port)
    finally:
        dnsfw.stop()


@pytest.mark.parametrize("policy", ["require_and_verify", "request"])
def test_client_auth_on_a_quic_block_is_refused_with_file_and_line(tmp_path, policy):
    make_cert(tmp_path, NAME)
    conf = tmp_path / "Corefile"
    conf.write_text(
        f"tls://.:{free_port()} quic://.:{free_port()} {{\n"
        "    tls dot.crt dot.key dot.crt {\n"
        f"        client_auth {policy}\n"
        "    }\n"
        "    whoami\n"
        "}\n"
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode != 0
    assert (
        f"plugin/tls: {conf}:3 - Error during parsing: client_auth {policy} cannot apply to "
        "quic:// (DNS over QUIC): aioquic, its QUIC stack, cannot ask clients for a certificate"
    ) in result.stderr, result.stderr


def test_client_auth_nocert_on_a_quic_block_is_taken(tmp_path):
    make_cert(tmp_path, NAME)
    conf = tmp_path / "Corefile"
    conf.write_text(
        f"quic://.:{free_port()} {{\n"
        "    tls dot.crt dot.key {\n        client_auth nocert\n    }\n"
        "    whoami\n}\n"
    )
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr
