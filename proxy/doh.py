"""DNS over HTTPS (RFC 8484) on an ``https://`` listener: HTTP/2 and HTTP/1.1 after TLS.

A :class:`DoHConnection` is a :class:`proxy.server.TCPConnection` (the same TLS session,
connection limits, handshake bound and `timeouts`) whose plaintext is HTTP: HTTP/2 when the
client chose ``h2`` by ALPN (driven by the ``h2`` library: several queries in flight as
streams), else HTTP/1.1 (``h11``: one request at a time, kept alive). Both are sans-I/O state
machines of the python-hyper project, driven here on the connection's own bytes: no Task, no
extra copy of the TLS layer, and the chain is entered exactly as from TCP
(``Listener.query``), so the firewall, logs and metrics see a ``https`` query like any other.

Requests: ``GET /dns-query?dns=BASE64URL`` and ``POST /dns-query`` with a body of type
``application/dns-message``. 400 for a request that is not DNS (no or bad ``dns``
parameter, a message shorter than a header, an HTTP protocol error), 404 for another path, 405
for another method, 413 for a query over 65,535 bytes or headers over 16 KiB, 415 for another
content type. The reply is 200 ``application/dns-message`` with ``Cache-Control: max-age`` the
smallest TTL of its records (the negative TTL for a NODATA/NXDOMAIN; 0 for an error). A request
must arrive whole within the listener's `read` timeout of its first byte.

The client of a query (rules, logs, rate limits) is the connection's peer; when the peer is
one of the block's ``https { trusted_proxies ... }``, the right-most address of
``X-Forwarded-For`` that is not a trusted proxy (the address the proxy saw).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from . import wire
from .request import Request, Response

PATH = b"/dns-query"
CONTENT_TYPE = b"application/dns-message"
MAX_MESSAGE = 65535  # a DNS message's largest size (RFC 8484 takes it from TCP's 2-byte length)
MAX_HEADERS = 16384  # bytes of a request's headers
MAX_STREAMS = 100  # HTTP/2 requests in flight per connection


@dataclass
class DoHOptions:
    """The block's `https` directive (plugins/https.py)."""

    max_connections: int = 200  # CoreDNS's default; 0: only -tcp-max-conns
    trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=tuple
    )


@dataclass
class Reply:
    """An HTTP answer: status, headers (besides the length) and body."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


def error(status: int, why: str) -> Reply:
    return Reply(status, why.encode() + b"\n", ((b"content-type", b"text/plain"),))


def dns_reply(data: bytes) -> Reply:
    """200 with the DNS reply and its freshness lifetime (RFC 8484 5.1)."""
    return Reply(
        200,
        data,
        ((b"content-type", CONTENT_TYPE), (b"cache-control", b"max-age=%d" % max_age(data))),
    )


def max_age(data: bytes) -> int:
    """The smallest TTL of the reply's records, the negative TTL for a negative answer; 0 for
    an error or a reply that does not parse."""
    try:
        info = wire.AnswerInfo(data)
    except wire.WireError:
        return 0
    if info.rcode not in (wire.NOERROR, wire.NXDOMAIN):
        return 0
    age = info.min_ttl if info.ttl_offsets else 0
    return min(age, info.neg_ttl) if info.neg_ttl >= 0 else age


def dns_message(
    method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
) -> bytes | Reply:
    """The DNS query of a request, or the error :class:`Reply` for it."""
    path, _, query = target.partition(b"?")
    if path != PATH:
        return error(404, "not found: DNS queries go to /dns-query")
    if method == b"GET":
        encoded = next((v for k, _, v in _params(query) if k == b"dns"), None)
        if encoded is None:
            return error(400, "missing the dns parameter")
        if len(encoded) > (MAX_MESSAGE * 4 + 2) // 3:
            return error(413, "query too large")
        try:
            message = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            return error(400, "the dns parameter is not base64url")
    elif method == b"POST":
        if headers.get(b"content-type", b"").split(b";")[0].strip().lower() != CONTENT_TYPE:
            return error(415, "the body must be application/dns-message")
        message = body
    else:
        return Reply(405, b"", ((b"allow", b"GET, POST"),))
    if len(message) < wire.HEADER_LEN:
        return error(400, "not a DNS message")
    if len(message) > MAX_MESSAGE:
        return error(413, "query too large")
    return message


def _params(query: bytes):
    for part in query.split(b"&"):
        key, sep, value = part.partition(b"=")
        yield key, sep, value


def client_of(peer: Any, headers: dict[bytes, bytes], options: DoHOptions) -> Any:
    """The query's client: the peer, or for a trusted proxy the address it forwarded for."""
    trusted = options.trusted_proxies
    forwarded = headers.get(b"x-forwarded-for")
    if not trusted or forwarded is None or not _within(peer[0], trusted):
        return peer
    for hop in reversed(forwarded.decode("latin-1").split(",")):
        try:
            address = ipaddress.ip_address(hop.strip())
        except ValueError:
            return peer  # not an address: the header cannot be trusted
        if not _within(str(address), trusted):
            return (str(address), 0)
    return peer


def _within(host: str, networks: Sequence[Any]) -> bool:
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return any(address in net for net in networks)


class Exchange:
    """One DoH request in flight: the sink its query's chain finishes into."""

    __slots__ = ("conn", "stream")

    def __init__(self, conn: Any, stream: int) -> None:
        self.conn = conn
        self.stream = stream

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None:
        conn = self.conn
        server = conn.listener.server
        server.release(req.client)
        conn.pending -= 1
        conn.respond(self.stream, answer(server.complete(req, resp, exc)))
        conn.resume()


def answer(data: bytes) -> Reply:
    """The HTTP answer for the chain's bytes (none: a stage dropped the query)."""
    return dns_reply(data) if data else error(502, "no answer")


class HTTP11:
    """HTTP/1.1 on a connection (h11): one request at a time, the next read after the reply."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.waiting = False  # a query of this connection is in the chain
        self.looping = False  # in received(): a reply made there lets its loop go on

    def received(self, data: bytes) -> None:
        if data:
            if not self.conn.partial:
                self.conn.started = time.monotonic()  # a request begins: `read` runs from now
            self.h11.receive_data(data)
        self.looping = True
        try:
            self._next_requests()
        finally:
            self.looping = False
        self.conn.partial = self.request is not None or bool(self.h11.trailing_data[0])

    def _next_requests(self) -> None:
        while not self.waiting and self.conn.transport is not None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                status = 413 if "too long" in str(err) or "too large" in str(err) else 400
                self.respond(0, error(status, "bad HTTP request"), close=True)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                self.request = event
                self.body.clear()
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_MESSAGE:
                    self.respond(0, error(413, "query too large"), close=True)
                    return
            elif isinstance(event, h11.EndOfMessage) and self.request is not None:
                request, self.request = self.request, None
                headers = {k.lower(): v for k, v in request.headers}
                self.waiting = True
                self.conn.ask(0, request.method, request.target, headers, bytes(self.body))
            elif isinstance(event, h11.ConnectionClosed):
                self.conn.close()
                return

    def respond(self, _stream: int, reply: Reply, *, close: bool = False) -> None:
        headers = [(b"content-length", b"%d" % len(reply.body)), *reply.headers]
        if close:
            headers.append((b"connection", b"close"))
        try:
            out = self.h11.send(h11.Response(status_code=reply.status, headers=headers))
            out += self.h11.send(h11.Data(data=reply.body)) or b""
            out += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # the client's half was broken: no reply fits
            self.conn.close()
            return
        self.conn.send(out)
        self.waiting = False
        if close or self.h11.our_state is h11.MUST_CLOSE:
            self.conn.linger()
            return
        self.h11.start_next_cycle()
        if not self.looping:
            self.received(b"")  # a pipelined request already received


class HTTP2:
    """HTTP/2 on a connection (h2): each stream one request, answered as its query finishes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        # the replies' headers are dnsfw's own, well-formed: h2 need not check them again
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADERS,
            },
        )
        self.h2.initiate_connection()
        # requests being received: stream -> (headers, body, when its first frame came)
        self.streams: dict[int, tuple[dict[bytes, bytes], bytearray, float]] = {}
        self.unsent: dict[int, bytes] = {}  # bodies waiting for flow-control window
        conn.send(self.h2.data_to_send())

    def received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.conn.send(self.h2.data_to_send())
            self.conn.close()
            return
        for event in events:
            self._event(event)
        self.conn.send(self.h2.data_to_send())
        self._deadline(bool(data) and not events)

    def _deadline(self, cut: bool) -> None:
        """`read` runs for each request from its first frame (the oldest one still coming),
        and for a frame cut between reads from its first bytes."""
        conn = self.conn
        if self.streams:
            conn.started = min(started for _, _, started in self.streams.values())
        elif cut:
            if not conn.partial:
                conn.started = time.monotonic()
        else:
            conn.partial = False
            return
        conn.partial = True

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {bytes(k).lower(): bytes(v) for k, v in event.headers}
            self.streams[event.stream_id] = (headers, bytearray(), time.monotonic())
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                stream[1].extend(event.data)
                if len(stream[1]) > MAX_MESSAGE:
                    del self.streams[event.stream_id]
                    self.respond(event.stream_id, error(413, "query too large"))
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                headers, body, _ = stream
                method = headers.get(b":method", b"")
                target = headers.get(b":path", b"")
                self.conn.ask(event.stream_id, method, target, headers, bytes(body))
        elif isinstance(event, h2.events.StreamReset):
            self.streams.pop(event.stream_id, None)
            self.unsent.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self.unsent):
                self._send_body(stream_id, self.unsent.pop(stream_id))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.conn.close()

    def respond(self, stream: int, reply: Reply, *, close: bool = False) -> None:
        headers = [
            (b":status", b"%d" % reply.status),
            (b"content-length", b"%d" % len(reply.body)),
            *reply.headers,
        ]
        try:
            self.h2.send_headers(stream, headers, end_stream=not reply.body)
            if reply.body:
                self._send_body(stream, reply.body)
        except h2.exceptions.StreamClosedError:
            pass  # the client reset the stream meanwhile
        except h2.exceptions.ProtocolError:
            self.conn.close()
            return
        # each reply in its own write: dnsperf's DoH client stalls on several in one TLS read
        self.conn.send(self.h2.data_to_send())
        if close:
            self.conn.close()

    def _send_body(self, stream: int, body: bytes) -> None:
        """As much of ``body`` as the flow-control window takes; the rest on WINDOW_UPDATE."""
        try:
            window = self.h2.local_flow_control_window(stream)
        except h2.exceptions.StreamClosedError:
            return
        size = self.h2.max_outbound_frame_size
        while body and window > 0:
            chunk, body = body[: min(size, window)], body[min(size, window) :]
            window -= len(chunk)
            self.h2.send_data(stream, chunk, end_stream=not body)
        if body:
            self.unsent[stream] = body
