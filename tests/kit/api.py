"""A client for dnsfw's admin API, and the token the tests give it."""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """A tiny client for the admin API (http.client: no proxy settings apply)."""

    def __init__(self, port: int, token: str | None = TOKEN) -> None:
        self.port = port
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        *,
        token: str | None | bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        sent = dict(headers or {})
        token = self.token if token is True else token
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if isinstance(body, dict):
            body = json.dumps(body)
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        reply = self.call(method, path, body, **kw)
        assert reply.status == 200, (reply.status, reply.body)
        return reply.json

    def wait(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", "/v1/lists", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> Reply:
    """Send ``data`` to 127.0.0.1:``port`` as it is (malformed HTTP too) and read the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()  # skips a "100 Continue"
        return Reply(resp.status, resp.headers, resp.read())
