"""DNS over HTTPS (RFC 8484): `https://` blocks with real clients (dnspython over HTTP/2 and
HTTP/1.1, kdig +https, curl --doh-url) against certificates the tests make; bad requests
get 400/404/405/413/415; Cache-Control from the answer's TTL; X-Forwarded-For only from
trusted proxies; slow clients are cut. Loopback only, bounded in count and time.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import h2.config
import h2.connection
import h2.events
import httpx2
import pytest

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.tls import client_context, make_cert
from tests.kit.tools import need_tool
from tests.kit.upstream import Upstream

NAME = "dns.test"


@pytest.fixture(scope="module")
def upstream():
    with Upstream() as up:
        yield up


def start(tmp_path, plugins: str) -> tuple[Dnsfw, int]:
    make_cert(tmp_path, NAME)
    port = free_port()
    text = corefile(
        ENCRYPTED, KEYS=f"https://.:{port}", CERT="dot.crt", KEY="dot.key", PLUGINS=plugins
    )
    return Dnsfw(text, tmp_path).start(), port


@pytest.fixture
def forwarding(tmp_path, upstream):
    dnsfw, port = start(tmp_path, f"forward . {upstream.address}")
    yield dnsfw, port
    dnsfw.stop()


def doh(port, tmp_path, name, rdtype="A", *, version=dns.query.HTTPVersion.H2, post=True):
    return dns.query.https(
        dns.message.make_query(name, rdtype),
        f"https://{NAME}:{port}/dns-query",
        bootstrap_address="127.0.0.1",
        verify=client_context(tmp_path / "dot.crt", NAME),
        http_version=version,
        post=post,
        timeout=5,
    )


@pytest.mark.parametrize("version", [dns.query.HTTPVersion.H2, dns.query.HTTPVersion.H1])
@pytest.mark.parametrize("post", [True, False], ids=["POST", "GET"])
def test_dnspython_doh_gets_the_upstream_answer(forwarding, tmp_path, version, post):
    _, port = forwarding
    reply = doh(port, tmp_path, "long-ttl.example.com.", version=version, post=post)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [str(rr) for rr in reply.answer[0]] == ["192.0.2.3"]


def https_connection(port: int, tmp_path) -> http.client.HTTPSConnection:
    context = client_context(tmp_path / "dot.crt", NAME)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=NAME
    )
    return conn


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


def test_cache_control_is_the_smallest_ttl_and_a_connection_is_kept_alive(forwarding, tmp_path):
    _, port = forwarding
    conn = https_connection(port, tmp_path)
    try:
        for name, age in (("long-ttl.example.com.", 86400), ("short-ttl.example.com.", 2)):
            wire = dns.message.make_query(name, "A").to_wire()
            status, headers, body = request(conn, "GET", f"/dns-query?dns={b64(wire)}")
            assert status == 200, body
            assert headers["content-type"] == "application/dns-message"
            assert headers["cache-control"] == f"max-age={age}"
            assert dns.message.from_wire(body).rcode() == dns.rcode.NOERROR
        # a negative answer: the SOA's negative TTL (RFC 2308), from the same connection
        wire = dns.message.make_query("nosuch.example.com.", "A").to_wire()
        status, headers, body = request(
            conn, "POST", "/dns-query", wire, {"content-type": "application/dns-message"}
        )
        assert status == 200
        assert dns.message.from_wire(body).rcode() == dns.rcode.NXDOMAIN
        assert int(headers["cache-control"].removeprefix("max-age=")) <= 300
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/dns-query", None, {}, 400),  # no dns parameter
        ("GET", "/dns-query?dns=%%%", None, {}, 400),  # not base64url
        ("GET", "/dns-query?dns=AAAA", None, {}, 400),  # shorter than a DNS header
        ("GET", "/other", None, {}, 404),
        ("PUT", "/dns-query", b"x" * 20, {}, 405),
        ("POST", "/dns-query", b"x" * 20, {"content-type": "text/plain"}, 415),
        ("POST", "/dns-query", b"x" * 70000, {"content-type": "application/dns-message"}, 413),
        ("GET", "/dns-query?dns=" + "A" * 90000, None, {}, 413),  # a request line too long
    ],
)
def test_bad_requests_get_their_status(forwarding, tmp_path, method, path, body, headers, status):
    _, port = forwarding
    conn = https_connection(port, tmp_path)
    try:
        got, _, _ = request(conn, method, path, body, headers)
        assert got == status
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "body", "content_type", "status"),
    [
        ("POST", b"x" * 20, "text/plain", 415),
        ("POST", b"x" * 70000, "application/dns-message", 413),
        ("POST", b"x" * 5, "application/dns-message", 400),
        ("GET", None, None, 400),
    ],
)
def test_bad_http2_requests_get_their_status(
    forwarding, tmp_path, method, body, content_type, status
):
    _, port = forwarding
    context = client_context(tmp_path / "dot.crt", NAME)
    transport = httpx2.HTTPTransport(http2=True, verify=context)
    with httpx2.Client(transport=transport, timeout=5) as client:
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(
            method,
            f"https://127.0.0.1:{port}/dns-query",
            content=body,
            headers=headers,
            extensions={"sni_hostname": NAME},
        )
        assert response.http_version == "HTTP/2"
        assert response.status_code == status


def test_x_forwarded_for_is_the_client_only_from_a_trusted_proxy(tmp_path):
    plugins = "https {\n    trusted_proxies 127.0.0.0/8\n}\nwhoami"
    dnsfw, port = start(tmp_path, plugins)
    try:
        conn = https_connection(port, tmp_path)
        wire = dns.message.make_query("who.example.", "A").to_wire()
        path = f"/dns-query?dns={b64(wire)}"
        # the right-most address that is not a trusted proxy is the client
        _, _, body = request(conn, "GET", path, headers={"x-forwarded-for": "192.0.2.7, 127.0.0.9"})
        assert str(dns.message.from_wire(body).additional[0][0]) == "192.0.2.7"
        conn.close()
    finally:
        dnsfw.stop()
    untrusted = tmp_path / "untrusted"
    untrusted.mkdir()
    dnsfw, port = start(untrusted, "https {\n    trusted_proxies 10.0.0.1\n}\nwhoami")
    try:
        conn = https_connection(port, untrusted)
        _, _, body = request(conn, "GET", path, headers={"x-forwarded-for": "192.0.2.7"})
        assert str(dns.message.from_wire(body).additional[0][0]) == "127.0.0.1"
        conn.close()
    finally:
        dnsfw.stop()


def test_kdig_https_query(forwarding, tmp_path):
    kdig = need_tool("kdig", "knot-dnsutils")
    _, port = forwarding
    out = subprocess.run(
        [
            *(kdig, "@127.0.0.1", "-p", str(port), "+https"),
            *(f"+tls-ca={tmp_path / 'dot.crt'}", f"+tls-hostname={NAME}"),
            *("long-ttl.example.com", "A"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "status: NOERROR" in out.stdout, out.stdout
    assert "192.0.2.3" in out.stdout
    assert "HTTP session (HTTP/2-POST)" in out.stdout, out.stdout


# web.test is 127.0.0.1 only here: curl can learn it from nowhere but dnsfw's DoH answer
WEB_ZONE = """\
$ORIGIN test.
@ SOA ns1 hostmaster 1 7200 3600 1209600 60
web A 127.0.0.1
"""


def test_curl_resolves_through_dnsfw_doh(tmp_path):
    curl = need_tool("curl", "curl")
    web = free_port()
    with Upstream(WEB_ZONE) as up:
        dnsfw, port = start(tmp_path, f"health 127.0.0.1:{web}\nforward . {up.address}")
        try:
            out = subprocess.run(
                [
                    *(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"),
                    *("--doh-url", f"https://{NAME}:{port}/dns-query"),
                    *("--cacert", str(tmp_path / "dot.crt")),
                    *("--resolve", f"{NAME}:{port}:127.0.0.1"),
                    f"http://web.test:{web}/health",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
            assert out.stdout == "200"
            assert any(q.name == "web.test." for q in up.seen), "curl did not ask dnsfw"
        finally:
            dnsfw.stop()


def test_a_request_trickling_in_is_cut_after_read(forwarding, tmp_path):
    _, port = forwarding
    context = client_context(tmp_path / "dot.crt", NAME)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.settimeout(1)
        line = b"GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: x\r\n"
        closed_at = None
        for n in range(12):  # a byte every 0.5 s: `read 1s` cuts it long before the end
            try:
                tls.send(line[n : n + 1])
                tls.settimeout(0.5)
                if tls.recv(1) == b"":
                    closed_at = n
                    break
            except TimeoutError:
                continue
            except (ConnectionError, ssl.SSLError):
                closed_at = n
                break
        assert closed_at is not None and closed_at < 8


def test_a_busy_http2_connection_outlives_read(tmp_path):
    """POSTs overlap on one HTTP/2 connection for twice `read` (1s): each write ends one
    request's body and starts the next one's headers, so a request is always partly received.
    Each request has its own `read` deadline from its first frame: none is cut off (bounded:
    8 requests, 0.25 s apart)."""
    dnsfw, port = start(tmp_path, "whoami")
    context = client_context(tmp_path / "dot.crt", NAME)
    context.set_alpn_protocols(["h2"])
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", NAME),
        (":path", "/dns-query"),
        ("content-type", "application/dns-message"),
    ]
    statuses: dict[int, str] = {}
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=NAME) as tls,
        ):
            streams = [client.get_next_available_stream_id() + 2 * i for i in range(8)]
            for i, stream in enumerate([*streams, None]):
                if i:
                    wire = dns.message.make_query(f"q{i}.example.org.", "A").to_wire()
                    client.send_data(streams[i - 1], wire, end_stream=True)
                if stream is not None:
                    client.send_headers(stream, headers)
                tls.sendall(client.data_to_send())
                time.sleep(0.25)
            tls.settimeout(5)
            while len(statuses) < len(streams):
                data = tls.recv(65536)
                assert data, f"connection closed after {len(statuses)} replies"
                for event in client.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses[event.stream_id] = dict(event.headers)[b":status"].decode()
                tls.sendall(client.data_to_send())
        assert statuses == dict.fromkeys(streams, "200")
    finally:
        dnsfw.stop()
