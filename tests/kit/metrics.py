"""HTTP probes of the health, ready and prometheus endpoints, and reading a metrics exposition."""

from __future__ import annotations

import http.client
import re
import time


def get(port: int, path: str, method: str = "GET", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode()
    finally:
        conn.close()


def wait_http(port: int, path: str = "/health", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(port, path)
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing on {port}"
            time.sleep(0.05)


def sample(text: str, name: str, /, **labels: str) -> float:
    """The value of one series in a text exposition (labels in any order)."""
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if m is None:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"no {name} {labels} in:\n{text}")
