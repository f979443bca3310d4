"""Small servers the tests point dnsfw at: a list download held back until released, and a
DNS relay (a resolver that forwards to another one, e.g. back to dnsfw)."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GatedList:
    """An HTTP server on 127.0.0.1 whose list download waits until ``release()``."""

    def __init__(self, body: str) -> None:
        self.requested = threading.Event()
        self.released = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                gate.requested.set()
                gate.released.wait(20)
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/blocked.txt"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GatedList:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


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


class FlakyList:
    """An HTTP server on 127.0.0.1 serving ``body`` at ``url``, whose first ``failures`` GETs
    are answered ``status`` (a list server that is down at first). ``body`` and ``failures``
    may be changed while it runs; ``hits`` counts the GETs."""

    def __init__(self, body: str, failures: int, status: int = 503) -> None:
        self.body = body
        self.failures = failures
        self.hits = 0
        self.lock = threading.Lock()
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with flaky.lock:
                    flaky.hits += 1
                    failing = flaky.failures > 0
                    flaky.failures -= failing
                    data = flaky.body.encode()
                if failing:
                    self.send_error(status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/list.txt"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail(self, failures: int) -> None:
        with self.lock:
            self.failures = failures

    def __enter__(self) -> FlakyList:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
