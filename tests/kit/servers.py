"""Small servers the tests point dnsfw at: list downloads (held back until released, failing
at first, or recording each request's headers), and a DNS relay (a resolver that forwards to
another one, e.g. back to dnsfw)."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class _ListServer:
    """An HTTP server on 127.0.0.1 answering every GET of ``url`` with :meth:`answer`: the
    list's text, or an HTTP error status."""

    path = "/list.txt"

    def __init__(self) -> None:
        owner = self
        self.headers: list[dict[str, str]] = []  # each GET's request headers, in order

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.headers.append(dict(self.headers))
                answer = owner.answer()
                if isinstance(answer, int):
                    self.send_error(answer)
                    return
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self) -> str | int:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class GatedList(_ListServer):
    """A list download that waits until ``release()``."""

    path = "/blocked.txt"

    def __init__(self, body: str) -> None:
        self.body = body
        self.requested = threading.Event()
        self.released = threading.Event()
        super().__init__()

    def answer(self) -> str:
        self.requested.set()
        self.released.wait(20)
        return self.body

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        super().__exit__(*exc)


class UdpRelay:
    """A DNS-over-UDP forwarder on 127.0.0.1 (``address``) that sends each datagram to
    ``127.0.0.1:target_port`` from a socket of its own and relays the reply back (5 s at most).
    Pointed at dnsfw by dnsfw's forward, it makes the loop through another server that only
    the ``loop`` plugin sees."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.relayed = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                data, client = self.sock.recvfrom(65535)
            except OSError:
                return  # closed
            self.relayed += 1
            threading.Thread(target=self._relay, args=(data, client), daemon=True).start()

    def _relay(self, data: bytes, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out, contextlib.suppress(OSError):
            out.settimeout(5.0)
            out.sendto(data, self.target)
            reply, _ = out.recvfrom(65535)
            self.sock.sendto(reply, client)

    def __enter__(self) -> UdpRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's recvfrom
        self.sock.close()


class FlakyList(_ListServer):
    """A list server whose first ``failures`` GETs are answered ``status`` (down at first).
    ``body`` and ``failures`` may be changed while it runs; ``hits`` counts the GETs."""

    def __init__(self, body: str, failures: int, status: int = 503) -> None:
        self.body = body
        self.failures = failures
        self.status = status
        self.hits = 0
        self.lock = threading.Lock()
        super().__init__()

    def answer(self) -> str | int:
        with self.lock:
            self.hits += 1
            if self.failures > 0:
                self.failures -= 1
                return self.status
            return self.body

    def fail(self, failures: int) -> None:
        with self.lock:
            self.failures = failures


class StaticList(_ListServer):
    """A list server answering every GET with ``body`` (``headers`` shows what each sent)."""

    def __init__(self, body: str) -> None:
        self.body = body
        super().__init__()

    def answer(self) -> str:
        return self.body
