"""Hostile requests to the HTTP listeners: every error is JSON 4xx, none is a 5xx.

Raw socket writes for HTTP that aiohttp refuses before any site sees it (proxy/http.py's
JsonErrors), the API client for bodies the admin API refuses (proxy/admin.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kit.api import Api, Reply, raw_request
from tests.kit.corefiles import ADMIN, corefile
from tests.kit.dnsfw import free_port

DEEP = b"[" * 100_000 + b"]" * 100_000


def http(method: str, path: str, body: bytes = b"", headers: tuple[bytes, ...] = ()) -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    if body:
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# requests aiohttp refuses before dnsfw sees them, and the status each gets
EARLY = {
    "URL over the limit": (http("GET", "/v1/" + "a" * 10_000), 414),
    "header over the limit": (http("GET", "/v1/lists", headers=(b"X-A: " + b"a" * 10_000,)), 431),
    "too many headers": (
        http("GET", "/v1/lists", headers=tuple(b"X-%d: a" % i for i in range(200))),
        431,
    ),
    "unknown method": (http("FROB", "/v1/lists"), 400),
    "invalid method": (http("G(T", "/v1/lists"), 400),
    "header without a colon": (http("GET", "/v1/lists", headers=(b"NoColonHere",)), 400),
    "bad chunk size": (
        http("PATCH", "/v1/lists/blocked", headers=(b"Transfer-Encoding: chunked",))
        + b"ZZ\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "Content-Length and chunked": (
        http("PATCH", "/v1/lists/blocked", headers=(b"Transfer-Encoding: chunked",), body=b"0"),
        400,
    ),
    "negative Content-Length": (
        http("PUT", "/v1/lists/blocked", headers=(b"Content-Length: -1",)),
        400,
    ),
    "HTTP version 9.9": (b"GET /v1/lists HTTP/9.9\r\n\r\n", 400),
    "bad URL": (http("GET", "http://[::1"), 400),
    "TLS on the HTTP port": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\0" * 40, 400),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "unknown Expect": (http("POST", "/v1/reload", headers=(b"Expect: magic",)), 417),
}

# hostile requests the admin API itself reads: bodies, paths, parameters
HOSTILE = [
    *(request for request, _ in EARLY.values()),
    http("PATCH", "/v1/lists/blocked", DEEP, (b"Content-Type: application/json",)),
    http(
        "PATCH",
        "/v1/lists/blocked",
        b'{"operation": "ADD", "domains": ' + b"[" * 950 + b"]" * 950 + b"}",
    ),
    http("PATCH", "/v1/lists/blocked", b'{"operation": ' + b"{" * 3000 + b"}" * 3000 + b"}"),
    http("POST", "/v1/cache/flush", b'{"name": ' + b"[" * 990 + b"]" * 990 + b"}"),
    http("PATCH", "/v1/lists/blocked", b"hello", (b"Content-Encoding: gzip",)),
    http("PUT", "/v1/lists/blocked", b"\xff\xfe\x00bad\n"),
    http("PATCH", "/v1/lists/blocked", b"\xff" * 100),
    http(
        "PATCH", "/v1/lists/blocked", b'{"operation": "ADD", "domains": ["' + b"a" * 70_000 + b'"]}'
    ),
    http("PATCH", "/v1/lists/blocked", b"[]" * 100, (b"Content-Length: 999999999999999999999",)),
    http("GET", "/v1/lists/%00"),
    http("GET", "/v1/lists/%ff%fe"),
    http("GET", "/v1/lists/" + "%2e%2e/" * 50 + "etc/passwd"),
    http("GET", "/v1/lists/blocked?offset=-1&limit=99999999999999999999"),
    http("GET", "/v1/explain?name=" + "a." * 200 + "&type=A"),
    http("GET", "/v1/explain?name=%00%ff&type=%00"),
    http("GET", "/v1/explain?name=x&client=999.1.1.1"),
    http("GET", "/v1/stats?top=1e9"),
    http("GET", "/v1/" + "x/" * 4000),
    http("POST", "/v1/lists/blocked/refresh", b"x" * 2_000_000),
    http("DELETE", "/v1/lists/blocked"),
    http("GET", "/v1/openapi.json", headers=(b"Accept-Encoding: " + b"gzip, " * 1000 + b"br",)),
]


@pytest.fixture
def admin(dnsfw, upstream, tmp_path: Path) -> tuple[Api, object]:
    (tmp_path / "blocked.txt").write_text("blocked.w.example.com\n")
    (tmp_path / "hosts.txt").write_text("0.0.0.0 hosted.w.example.com\n")
    port = free_port()
    d = dnsfw(corefile(ADMIN, ADMIN=port, AUTH="", UPSTREAM=upstream.address))
    api = Api(port, token=None)
    api.wait()
    return api, d


def assert_json_error(reply: Reply, status: int) -> None:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers.get_content_type() == "application/json"
    assert isinstance(json.loads(reply.body)["error"], str)


def test_json_nested_100000_deep_is_a_400(admin) -> None:
    api, _ = admin
    reply = api.call(
        "PATCH", "/v1/lists/blocked", DEEP, headers={"Content-Type": "application/json"}
    )
    assert_json_error(reply, 400)
    assert "nested too deeply" in reply.json["error"]
    assert api.ok("GET", "/v1/lists/blocked")["entries"] == ["blocked.w.example.com"]


@pytest.mark.parametrize("case", EARLY)
def test_requests_refused_before_the_api_get_json_4xx(admin, case: str) -> None:
    api, _ = admin
    request, status = EARLY[case]
    assert_json_error(raw_request(api.port, request), status)


def test_expect_100_continue_still_gets_its_interim_reply(admin) -> None:
    api, _ = admin
    body = b"a.example.com\nb.example.com\n"
    reply = raw_request(
        api.port, http("PUT", "/v1/lists/blocked", body, (b"Expect: 100-continue",))
    )
    assert reply.status == 200, reply.body
    assert api.ok("GET", "/v1/lists/blocked")["entries"] == ["a.example.com", "b.example.com"]


def test_no_input_gets_a_5xx_or_a_traceback(admin) -> None:
    api, d = admin
    for request in HOSTILE:
        try:
            reply = raw_request(api.port, request)
        except ConnectionResetError:
            continue  # refused before a reply: no 5xx either
        assert reply.status < 500, (request[:80], reply.status, reply.body[:300])
        assert reply.headers.get_content_type() == "application/json", request[:80]
    assert api.ok("GET", "/v1/lists/blocked")["entries"] == ["blocked.w.example.com"]
    assert "Traceback" not in d.stderr
