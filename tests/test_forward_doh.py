"""`forward . https://...`: DNS over HTTPS upstreams, one HTTP/2 connection reused for many
queries. The DoH server is a second dnsfw (its https:// listener, answering with whoami, so
each answer names the connection it came over); loopback only, bounded."""

from __future__ import annotations

import dns.rcode

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.tls import make_cert

NAME = "dns.test"


def doh_server(tmp_path) -> tuple[Dnsfw, int]:
    """A dnsfw answering DoH with whoami on a certificate for NAME (made in tmp_path)."""
    make_cert(tmp_path, NAME)
    doh_port = free_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = Dnsfw(
        corefile(
            ENCRYPTED,
            KEYS=f"https://.:{doh_port}",
            CERT=tmp_path / "dot.crt",
            KEY=tmp_path / "dot.key",
            PLUGINS="whoami",
        ),
        server_dir,
    ).start()
    return server, doh_port


def test_queries_are_forwarded_over_one_reused_http2_connection(tmp_path):
    server, doh_port = doh_server(tmp_path)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client = Dnsfw(
        f""".:$PORT {{
    bind 127.0.0.1
    forward . https://127.0.0.1%{NAME}:{doh_port} {{
        tls {tmp_path / "dot.crt"}
    }}
}}
""",
        client_dir,
    ).start()
    try:
        ports = set()
        for i in range(20):
            reply = client.query(f"q{i}.example.org.", "A")
            assert reply.rcode() == dns.rcode.NOERROR
            # whoami over DoH: _tcp SRV with the forwarder's source port of its connection
            srv = [rr for rr in reply.additional if rr.name.to_text().startswith("_tcp.")]
            assert srv, reply.to_text()
            ports.add(srv[0][0].port)
        assert len(ports) == 1, ports  # every query on the same HTTP/2 connection
    finally:
        client.stop()
        server.stop()


def test_an_upstream_with_another_certificate_is_refused(tmp_path):
    server, doh_port = doh_server(tmp_path)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    # the system CAs do not know the test's certificate
    client = Dnsfw(
        f".:$PORT {{\n    bind 127.0.0.1\n    forward . https://127.0.0.1%{NAME}:{doh_port}\n}}\n",
        client_dir,
    ).start()
    try:
        assert client.query("q.example.org.", "A").rcode() == dns.rcode.SERVFAIL
    finally:
        client.stop()
        server.stop()
