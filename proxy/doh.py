"""DNS over HTTPS (RFC 8484) on an ``https://`` listener: HTTP/2 and HTTP/1.1 after TLS.

A :class:`DoHConnection` is a :class:`proxy.server.TCPConnection` (the same TLS session,
connection limits, handshake bound and `timeouts`) whose plaintext is HTTP: HTTP/2 when the
client chose ``h2`` by ALPN (:class:`HTTP2`, the part of RFC 9113 a DoH server needs, with
``hpack``'s decoder: several queries in flight as streams), else HTTP/1.1 (``h11``: one request
at a time, kept alive). Both are sans-I/O state machines driven on the connection's own bytes:
no Task, no extra copy of the TLS layer, and the chain is entered exactly as from TCP
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
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import h11
import hpack

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


# HTTP/2 (RFC 9113), the part a DoH server needs: frame types, flags, error codes
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 1, 3, 5, 6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 7, 9, 11
MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE's default: the largest frame taken
WINDOW = 65535  # the initial flow-control window of a connection and of a stream
MAX_WINDOW = 2**31 - 1
MAX_BLOCK = 4 * MAX_HEADERS  # compressed header block bytes (HEADERS + CONTINUATION)
FRAME_HEAD = struct.Struct(">IBI")  # length << 8 | type, flags, stream (R bit included)
# SETTINGS: MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, and an INITIAL_WINDOW_SIZE one byte
# over the largest query, so a stream never waits for a WINDOW_UPDATE before its 413
OUR_SETTINGS = struct.pack(">HIHIHI", 3, MAX_STREAMS, 6, MAX_HEADERS, 4, MAX_MESSAGE + 1)
# RFC 7541 Appendix A: the static table's index of the names dnsfw's replies carry
STATIC_NAMES = {
    b":status": 8,
    b"allow": 22,
    b"cache-control": 24,
    b"content-length": 28,
    b"content-type": 31,
}
MAX_BLOCKS = 1024  # encoded reply header blocks kept


class StreamError(Exception):
    """A connection error (RFC 9113 5.4.1): GOAWAY with ``code``, then the connection ends."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return FRAME_HEAD.pack(len(payload) << 8 | kind, flags, stream) + payload


def hpack_integer(value: int, prefix: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a ``prefix``-bit prefix after the bits ``first``."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A header block of literals without indexing (RFC 7541 6.2.2), names from the static
    table where it has them, no Huffman: the client's dynamic table is never used, so a
    reply's block depends on nothing but the reply and can be kept."""
    out = bytearray()
    for name, value in fields:
        index = STATIC_NAMES.get(name, 0)
        out += hpack_integer(index, 4, 0)
        if not index:
            out += hpack_integer(len(name), 7, 0) + name
        out += hpack_integer(len(value), 7, 0) + value
    return bytes(out)


_blocks: dict[tuple[int, int, tuple[tuple[bytes, bytes], ...]], bytes] = {}


def reply_block(reply: Reply) -> bytes:
    """The header block of ``reply`` (kept: replies repeat few status/length/age values)."""
    key = (reply.status, len(reply.body), reply.headers)
    block = _blocks.get(key)
    if block is None:
        if len(_blocks) >= MAX_BLOCKS:
            _blocks.clear()
        fields = ((b":status", b"%d" % reply.status), (b"content-length", b"%d" % key[1]))
        block = _blocks[key] = encode_headers((*fields, *reply.headers))
    return block


def keeps_table(block: bytes) -> bool:
    """Whether decoding a (well-formed) header block leaves the dynamic table as it was: only
    indexed fields and literals not indexed (RFC 7541 6.1, 6.2.2, 6.2.3), as clients send a
    repeated request (content-length a literal). Then the same bytes decode the same until
    the table changes."""
    i, end = 0, len(block)
    while i < end:
        first = block[i]
        if first & 0x80:  # indexed
            i = hpack_decode_integer(block, i, 7)[1]
        elif first & 0xE0:  # with incremental indexing, or a table size update
            return False
        else:
            index, i = hpack_decode_integer(block, i, 4)
            if not index:  # a literal name
                length, i = hpack_decode_integer(block, i, 7)
                i += length
            length, i = hpack_decode_integer(block, i, 7)
            i += length
    return True


def hpack_decode_integer(data: bytes, i: int, prefix: int) -> tuple[int, int]:
    """The HPACK integer at ``data[i]`` with a ``prefix``-bit prefix, and the offset after it."""
    limit = (1 << prefix) - 1
    value = data[i] & limit
    i += 1
    if value == limit:
        shift = 0
        while True:
            byte = data[i]
            i += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value, i


def unpad(payload: bytes) -> bytes:
    if not payload or payload[0] >= len(payload):
        raise StreamError(PROTOCOL_ERROR)
    return payload[1 : len(payload) - payload[0]]


class HTTP2:
    """HTTP/2 on a connection (RFC 9113), the subset a DoH server needs: each stream one
    request, answered as its query finishes; no push, priorities ignored.

    Written here rather than driven through the ``h2`` library, whose generality cost ten times
    a UDP query's CPU per request: frames are parsed in place, the requests' headers decoded by
    ``hpack`` (h2's own decoder; a block that leaves the dynamic table as it was, as clients
    repeat for each request, is decoded once while the table stays), the replies' header blocks are
    literals kept per (status, length, headers)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buffer = bytearray()
        self.preface = False  # the client's connection preface has come
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADERS)
        self.decoded: dict[bytes, dict[bytes, bytes]] = {}  # blocks that keep the table
        self.last = 0  # the highest stream the client opened
        # requests being received: stream -> (headers, body, when its first frame came)
        self.streams: dict[int, tuple[dict[bytes, bytes], bytearray, float]] = {}
        self.draining: set[int] = set()  # answered (413) before their body ended: ignored
        self.block: tuple[int, int, bytearray] | None = None  # HEADERS awaiting CONTINUATION
        self.windows: dict[int, int] = {}  # streams not yet answered whole -> send window
        self.window = WINDOW  # the connection's send window
        self.initial = WINDOW  # the client's SETTINGS_INITIAL_WINDOW_SIZE
        self.frame_size = MAX_FRAME  # the client's SETTINGS_MAX_FRAME_SIZE
        self.consumed = 0  # DATA bytes received since the last connection WINDOW_UPDATE
        self.table_update = True  # the next block starts with a dynamic table size of 0
        self.unsent: dict[int, bytes] = {}  # bodies waiting for flow-control window
        self.control = bytearray()  # frames to send after this read (ACKs, WINDOW_UPDATEs)
        conn.send(frame(SETTINGS, 0, 0, OUR_SETTINGS))

    def received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos, end = 0, len(buf)
        try:
            if not self.preface:
                if buf[: len(PREFACE)] != PREFACE[:end]:
                    raise StreamError(PROTOCOL_ERROR)
                self.preface = end >= len(PREFACE)
                pos = len(PREFACE) if self.preface else 0
            transport = self.conn.transport
            while self.preface and end - pos >= 9 and not transport.is_closing():
                head, flags, stream = FRAME_HEAD.unpack_from(buf, pos)
                length = head >> 8
                if length > MAX_FRAME:
                    raise StreamError(FRAME_SIZE_ERROR)
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                self._frame(head & 0xFF, flags, stream & 0x7FFFFFFF, payload)
        except StreamError as err:
            self._goaway(err.code)
            return
        del buf[:pos]
        if self.control:
            self.conn.send(bytes(self.control))
            self.control.clear()
        self._deadline()

    def _goaway(self, code: int) -> None:
        self.buffer.clear()
        self.control += frame(GOAWAY, 0, 0, struct.pack(">II", self.last, code))
        self.conn.send(bytes(self.control))
        self.control.clear()
        self.conn.close()

    def _deadline(self) -> None:
        """`read` runs for each request from its first frame (the oldest one still coming),
        and for a frame cut between reads from its first bytes."""
        conn = self.conn
        if self.streams:
            conn.started = min(started for _, _, started in self.streams.values())
        elif self.buffer or self.block is not None:
            if not conn.partial:
                conn.started = time.monotonic()
        else:
            conn.partial = False
            return
        conn.partial = True

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if self.block is not None and (kind != CONTINUATION or stream != self.block[0]):
            raise StreamError(PROTOCOL_ERROR)  # a header block is not interrupted
        if kind == DATA:
            self._data(flags, stream, payload)
        elif kind == HEADERS:
            if not stream:
                raise StreamError(PROTOCOL_ERROR)
            if flags & PADDED:
                payload = unpad(payload)
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self._headers(stream, flags, payload)
            else:
                self.block = (stream, flags, bytearray(payload))
        elif kind == CONTINUATION:
            if self.block is None:
                raise StreamError(PROTOCOL_ERROR)
            _, first, block = self.block
            block += payload
            if len(block) > MAX_BLOCK:
                raise StreamError(ENHANCE_YOUR_CALM)
            if flags & END_HEADERS:
                self.block = None
                self._headers(stream, first, bytes(block))  # END_STREAM is the HEADERS' flag
        elif kind == SETTINGS:
            self._settings(flags, stream, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, payload)
        elif kind == PING:
            if stream or len(payload) != 8:
                raise StreamError(PROTOCOL_ERROR if stream else FRAME_SIZE_ERROR)
            if not flags & ACK:
                self.control += frame(PING, ACK, 0, payload)
        elif kind == RST_STREAM:
            if not stream or len(payload) != 4:
                raise StreamError(PROTOCOL_ERROR if not stream else FRAME_SIZE_ERROR)
            self.streams.pop(stream, None)
            self.draining.discard(stream)
            self.windows.pop(stream, None)
            self.unsent.pop(stream, None)
        elif kind == GOAWAY:
            self.conn.close()
        elif kind == PUSH_PROMISE:
            raise StreamError(PROTOCOL_ERROR)  # a client does not push
        # PRIORITY and unknown types: nothing to do (RFC 9113 5.5)

    def _data(self, flags: int, stream: int, payload: bytes) -> None:
        self.consumed += len(payload)  # padding included (RFC 9113 6.1)
        if self.consumed >= WINDOW // 2:
            self.control += frame(WINDOW_UPDATE, 0, 0, self.consumed.to_bytes(4, "big"))
            self.consumed = 0
        if flags & PADDED:
            payload = unpad(payload)
        request = self.streams.get(stream)
        if request is not None:
            body = request[1]
            body += payload
            if len(body) > MAX_MESSAGE:
                del self.streams[stream]
                self.draining.add(stream)
                self.respond(stream, error(413, "query too large"))
            elif flags & END_STREAM:
                del self.streams[stream]
                self._ask(stream, request[0], bytes(body))
                return
        if stream in self.draining:
            if flags & END_STREAM:
                self.draining.discard(stream)
            elif payload:  # let the client send the rest it means to send
                self.control += frame(WINDOW_UPDATE, 0, stream, len(payload).to_bytes(4, "big"))
        elif request is None:
            if not stream or stream > self.last:
                raise StreamError(PROTOCOL_ERROR)  # DATA on an idle stream
            self.control += frame(RST_STREAM, 0, stream, STREAM_CLOSED.to_bytes(4, "big"))

    def _headers(self, stream: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        request = self.streams.pop(stream, None)
        if request is not None:  # trailers: the request ends
            if not flags & END_STREAM:
                raise StreamError(PROTOCOL_ERROR)
            self._ask(stream, request[0], bytes(request[1]))
            return
        if stream in self.draining:  # trailers of a request answered already
            if flags & END_STREAM:
                self.draining.discard(stream)
            return
        if not stream & 1 or stream <= self.last:
            raise StreamError(PROTOCOL_ERROR)  # a client opens odd streams, in order
        self.last = stream
        if len(self.windows) >= MAX_STREAMS:
            self.control += frame(RST_STREAM, 0, stream, REFUSED_STREAM.to_bytes(4, "big"))
            return
        self.windows[stream] = self.initial
        if flags & END_STREAM:
            self._ask(stream, headers, b"")
        else:
            self.streams[stream] = (headers, bytearray(), time.monotonic())

    def _decode(self, block: bytes) -> dict[bytes, bytes]:
        headers = self.decoded.get(block)
        if headers is not None:
            return headers
        try:
            fields = self.decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as err:
            raise StreamError(ENHANCE_YOUR_CALM) from err
        except hpack.HPACKError as err:
            raise StreamError(COMPRESSION_ERROR) from err
        headers = {bytes(name).lower(): bytes(value) for name, value in fields}
        if not keeps_table(block):
            self.decoded.clear()  # the dynamic table has changed
        elif len(self.decoded) < MAX_STREAMS:
            self.decoded[block] = headers
        return headers

    def _ask(self, stream: int, headers: dict[bytes, bytes], body: bytes) -> None:
        method = headers.get(b":method", b"")
        self.conn.ask(stream, method, headers.get(b":path", b""), headers, body)

    def _settings(self, flags: int, stream: int, payload: bytes) -> None:
        if stream:
            raise StreamError(PROTOCOL_ERROR)
        if flags & ACK:
            if payload:
                raise StreamError(FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise StreamError(FRAME_SIZE_ERROR)
        for offset in range(0, len(payload), 6):
            code, value = struct.unpack_from(">HI", payload, offset)
            if code == 1:  # HEADER_TABLE_SIZE: say again that ours is empty
                self.table_update = True
            elif code == 2 and value > 1:  # ENABLE_PUSH
                raise StreamError(PROTOCOL_ERROR)
            elif code == 4:  # INITIAL_WINDOW_SIZE: every stream's window moves by the change
                if value > MAX_WINDOW:
                    raise StreamError(FLOW_CONTROL_ERROR)
                delta, self.initial = value - self.initial, value
                for open_stream in self.windows:
                    self.windows[open_stream] += delta
            elif code == 5:  # MAX_FRAME_SIZE
                if not MAX_FRAME <= value < 1 << 24:
                    raise StreamError(PROTOCOL_ERROR)
                self.frame_size = value
        self.control += frame(SETTINGS, ACK, 0)
        self._send_unsent()

    def _window_update(self, stream: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise StreamError(FRAME_SIZE_ERROR)
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if not stream:
            self.window += increment
            if not increment or self.window > MAX_WINDOW:
                raise StreamError(PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR)
        elif stream in self.windows:
            self.windows[stream] += increment
            if not increment or self.windows[stream] > MAX_WINDOW:
                code = PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR
                self.control += frame(RST_STREAM, 0, stream, code.to_bytes(4, "big"))
                self.windows.pop(stream)
                self.unsent.pop(stream, None)
                return
        self._send_unsent()

    def _send_unsent(self) -> None:
        if self.unsent:
            out = b"".join([self._body(s, self.unsent.pop(s)) for s in list(self.unsent)])
            self.conn.send(out)

    def respond(self, stream: int, reply: Reply, *, close: bool = False) -> None:
        if stream in self.windows:  # else the client reset the stream meanwhile
            block = reply_block(reply)
            if self.table_update:
                block = b"\x20" + block  # a dynamic table size update to 0 (RFC 7541 6.3)
                self.table_update = False
            body = reply.body
            out = frame(HEADERS, END_HEADERS if body else END_HEADERS | END_STREAM, stream, block)
            if body:
                out += self._body(stream, body)
            else:
                del self.windows[stream]
            # each reply in its own write: dnsperf's DoH client stalls on several in one TLS read
            self.conn.send(out)
        if close:
            self.conn.close()

    def _body(self, stream: int, body: bytes) -> bytes:
        """DATA frames of as much of ``body`` as the flow-control windows take; the rest is
        sent on WINDOW_UPDATE."""
        window = min(self.window, self.windows[stream])
        size = len(body)
        if size <= window and size <= self.frame_size:  # a DNS reply: one frame
            self.window -= size
            del self.windows[stream]
            return frame(DATA, END_STREAM, stream, body)
        out = bytearray()
        while body and window > 0:
            chunk, body = body[: min(window, self.frame_size)], body[min(window, self.frame_size) :]
            window -= len(chunk)
            self.window -= len(chunk)
            self.windows[stream] -= len(chunk)
            out += frame(DATA, 0 if body else END_STREAM, stream, chunk)
        if body:
            self.unsent[stream] = body
        else:
            del self.windows[stream]
        return bytes(out)
