"""DoH's HTTP/2 (proxy.doh.HTTP2) frame by frame: what well-behaved clients (dnspython, curl,
kdig, httpx, h2 in test_doh.py) never send, sent raw over TLS: split and padded frames, small
flow-control windows, PING, the stream limit, resets and protocol errors (RFC 9113), and HPACK
blocks whose bytes mean other headers once the dynamic table has changed (RFC 7541)."""

from __future__ import annotations

import socket
import struct

import dns.message
import hpack
import pytest

from tests.kit.corefiles import ENCRYPTED, corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.tls import client_context, make_cert

NAME = "dns.test"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9,
)  # fmt: skip
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
SETTINGS0 = struct.pack(">IBI", SETTINGS, 0, 0)  # an empty SETTINGS: a client's first frame
REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", NAME.encode()),
    (b":path", b"/dns-query"),
    (b"content-type", b"application/dns-message"),
]


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IBI", len(payload) << 8 | kind, flags, stream) + payload


def query(name: str) -> tuple[int, bytes]:
    message = dns.message.make_query(name, "A")
    return message.id, message.to_wire()


class Client:
    """One TLS connection with ALPN h2 that sends and reads raw HTTP/2 frames."""

    def __init__(self, port: int, tmp_path, *, preface: bytes = PREFACE + SETTINGS0) -> None:
        context = client_context(tmp_path / "dot.crt", NAME)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.tls = context.wrap_socket(raw, server_hostname=NAME)
        self.buffer = b""
        self.decoder = hpack.Decoder()
        self.kept: list[tuple[int, int, int, bytes]] = []
        self.headers: dict[int, dict[bytes, bytes]] = {}  # stream -> its reply's headers
        self.tls.sendall(preface)

    def send(self, *frames: bytes) -> None:
        self.tls.sendall(b"".join(frames))

    def read(self) -> tuple[int, int, int, bytes] | None:
        """The next frame (type, flags, stream, payload); None once the server closed."""
        while True:
            if len(self.buffer) >= 9:
                head, flags, stream = struct.unpack(">IBI", self.buffer[:9])
                end = 9 + (head >> 8)
                if len(self.buffer) >= end:
                    payload, self.buffer = self.buffer[9:end], self.buffer[end:]
                    return head & 0xFF, flags, stream & 0x7FFFFFFF, payload
            data = self.tls.recv(65536)
            if not data:
                return None
            self.buffer += data

    def until(self, kind: int, stream: int | None = None) -> tuple[int, int, int, bytes]:
        """The first frame of ``kind`` (on ``stream``) not yet taken, read or kept from before;
        headers are decoded as they are read (the client's HPACK state), into ``headers``."""
        while True:
            for got in self.kept:
                if got[0] == kind and stream in (None, got[2]):
                    self.kept.remove(got)
                    return got
            got = self.read()
            assert got is not None, f"closed before a frame of type {kind}"
            if got[0] == HEADERS:
                self.headers[got[2]] = dict(self.decoder.decode(got[3], raw=True))
            self.kept.append(got)

    def close(self) -> None:
        self.tls.close()


@pytest.fixture
def server(tmp_path):
    make_cert(tmp_path, NAME)
    port = free_port()
    text = corefile(
        ENCRYPTED, KEYS=f"https://.:{port}", CERT="dot.crt", KEY="dot.key", PLUGINS="whoami"
    )
    dnsfw = Dnsfw(text, tmp_path).start()
    yield port
    dnsfw.stop()


def block(headers) -> bytes:
    """A block of literals with incremental indexing (a fresh encoder's table is empty)."""
    return hpack.Encoder().encode(headers, huffman=False)


def test_split_padded_frames_small_windows_and_ping(server, tmp_path):
    """HEADERS padded, with priority and a CONTINUATION; DATA padded; the client's stream window
    is 8 bytes and its header table 0: the reply's header block says so first, its body comes
    8 bytes at a time as the client opens its window; PING is echoed."""
    client = Client(server, tmp_path)
    try:
        settings = struct.pack(">HIHI", 4, 8, 1, 0)  # INITIAL_WINDOW_SIZE 8, HEADER_TABLE_SIZE 0
        ident, wire = query("split.example.")
        headers = block(REQUEST)
        first = bytes([3]) + struct.pack(">IB", 0, 15) + headers[:10] + b"\0" * 3
        client.send(
            frame(SETTINGS, 0, 0, settings),
            frame(PING, 0, 0, b"12345678"),
            frame(HEADERS, PADDED | PRIORITY, 1, first),
            frame(CONTINUATION, END_HEADERS, 1, headers[10:]),
            frame(DATA, PADDED | END_STREAM, 1, bytes([4]) + wire + b"\0" * 4),
        )
        assert client.until(PING)[1:] == (1, 0, b"12345678")
        kind, flags, _, payload = client.until(HEADERS, 1)
        assert payload[0] == 0x20, "no dynamic table size update after HEADER_TABLE_SIZE 0"
        assert client.headers[1][b":status"] == b"200"
        size = int(client.headers[1][b"content-length"])
        body = client.until(DATA, 1)[3]
        assert len(body) == 8
        while len(body) < size:
            client.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 8)))
            body += client.until(DATA, 1)[3]
        assert len(body) == size
        assert dns.message.from_wire(body).id == ident
    finally:
        client.close()


def test_streams_over_the_limit_are_refused_and_a_reset_stream_gets_no_reply(server, tmp_path):
    client = Client(server, tmp_path)
    try:
        encoder = hpack.Encoder()
        opened = [
            frame(HEADERS, END_HEADERS, 2 * i + 1, encoder.encode(REQUEST)) for i in range(101)
        ]
        client.send(*opened)
        assert client.until(RST_STREAM) == (RST_STREAM, 0, 201, struct.pack(">I", 7))
        ident, wire = query("one.example.")
        client.send(
            frame(RST_STREAM, 0, 3, struct.pack(">I", 8)),  # CANCEL
            frame(DATA, END_STREAM, 3, wire),  # on a closed stream: STREAM_CLOSED
            frame(DATA, END_STREAM, 1, wire),
        )
        assert client.until(RST_STREAM, 3)[3] == struct.pack(">I", 5)
        client.until(HEADERS, 1)
        assert client.headers[1][b":status"] == b"200"
        assert dns.message.from_wire(client.until(DATA, 1)[3]).id == ident
    finally:
        client.close()


def test_a_cached_header_block_is_decoded_again_after_the_table_changes(server, tmp_path):
    """The same bytes of indexed fields and literals not indexed, before and after an
    insertion shifts the dynamic table: the second time they name the path /other (404), not
    /dns-query."""
    client = Client(server, tmp_path)
    try:
        static = bytes([0x83, 0x87])  # :method POST, :scheme https
        names = [REQUEST[3], REQUEST[4], REQUEST[2]]  # table: 62 authority, 63 type, 64 path
        _, wire = query("cached.example.")
        length = b"%d" % len(wire)
        # indexed fields, and literals that are not indexed: content-length (static name 28)
        # and x-note (a literal name), as clients send repeated requests
        indexed = (
            static
            + bytes([0x80 | 64, 0x80 | 63, 0x80 | 62, 0x0F, 28 - 15, len(length)])
            + length
            + b"\x10\x06x-note\x01a"
        )
        client.send(
            frame(HEADERS, END_HEADERS, 1, static + block(names)),
            frame(DATA, END_STREAM, 1, wire),
            frame(HEADERS, END_HEADERS, 3, indexed),
            frame(DATA, END_STREAM, 3, wire),
            frame(HEADERS, END_HEADERS, 5, indexed),
            frame(DATA, END_STREAM, 5, wire),
        )
        for stream in (1, 3, 5):
            client.until(HEADERS, stream)
            assert client.headers[stream][b":status"] == b"200"
        # :path /other at 62 shifts the rest: 64 content-type, 63 authority, 62 :path /other
        client.send(
            frame(HEADERS, END_HEADERS | END_STREAM, 7, static + block([(b":path", b"/other")])),
            frame(HEADERS, END_HEADERS, 9, indexed),
            frame(DATA, END_STREAM, 9, wire),
        )
        statuses = {}
        for stream in (7, 9):
            client.until(HEADERS, stream)
            statuses[stream] = client.headers[stream][b":status"]
        assert statuses == {7: b"404", 9: b"404"}
    finally:
        client.close()


def test_a_body_over_the_limit_gets_413_and_the_connection_goes_on(server, tmp_path):
    """DATA past 65,535 bytes: 413 at once; the rest of the body (the stream's window opened
    for it) and its trailers are taken and ignored; the next request is answered."""
    client = Client(server, tmp_path)
    try:
        encoder = hpack.Encoder()
        chunks = [frame(DATA, 0, 1, b"x" * 16384) for _ in range(4)]  # 65,536 bytes
        client.send(frame(HEADERS, END_HEADERS, 1, encoder.encode(REQUEST)), *chunks)
        client.until(HEADERS, 1)
        assert client.headers[1][b":status"] == b"413"
        assert client.until(WINDOW_UPDATE, 1)[3] == struct.pack(">I", 16384)
        ident, wire = query("after.example.")
        client.send(
            frame(DATA, 0, 1, b"x" * 1000),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, encoder.encode([(b"x-trailer", b"1")])),
            frame(HEADERS, END_HEADERS, 3, encoder.encode(REQUEST)),
            frame(DATA, END_STREAM, 3, wire),
        )
        client.until(HEADERS, 3)
        assert client.headers[3][b":status"] == b"200"
        assert dns.message.from_wire(client.until(DATA, 3)[3]).id == ident
    finally:
        client.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(DATA, END_STREAM, 1, b"x" * 20)], 1),  # DATA on an idle stream
        ([frame(HEADERS, END_HEADERS | END_STREAM, 2, bytes([0x82, 0x87, 0x84]))], 1),  # even
        ([frame(CONTINUATION, END_HEADERS, 1, bytes([0x82]))], 1),  # no HEADERS before
        ([frame(HEADERS, 0, 1, bytes([0x82])), frame(PING, 0, 0, b"12345678")], 1),  # cut block
        ([frame(PING, 0, 0, b"1234")], 6),  # PING of 4 bytes
        ([frame(HEADERS, END_HEADERS | END_STREAM, 1, bytes([0xFF, 0x7F]))], 9),  # bad index
        ([struct.pack(">IBI", 16385 << 8 | PING, 0, 0) + b"x" * 8], 6),  # over MAX_FRAME_SIZE
        ([frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 2**31))], 3),  # window too large
    ],
    ids=["idle", "even", "continuation", "interrupted", "ping", "hpack", "size", "window"],
)
def test_a_protocol_error_ends_the_connection_with_goaway(server, tmp_path, frames, code):
    client = Client(server, tmp_path)
    try:
        client.send(*frames)
        goaway = client.until(GOAWAY)
        assert struct.unpack(">II", goaway[3][:8])[1] == code
        assert client.read() is None
    finally:
        client.close()


def test_a_connection_without_the_preface_is_closed(server, tmp_path):
    client = Client(server, tmp_path, preface=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        goaway = client.until(GOAWAY)
        assert struct.unpack(">II", goaway[3][:8])[1] == 1
        assert client.read() is None
    finally:
        client.close()
