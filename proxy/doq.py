"""DNS over QUIC (RFC 9250) on a ``quic://`` listener, with aioquic (the optional extra
``dnsfw[quic]``; without it a ``quic://`` block is refused at setup, naming the extra).

Each query comes on its own client-initiated bidirectional stream, 2-byte length prefixed,
with message ID 0; the reply goes back on the same stream, which the server then ends. The
query enters ``Listener.query`` like any other (``Request.transport`` ``quic``), with a
per-stream sink for replies that wait on I/O. A stream that is not one length-prefixed
message, or whose ID is not 0, closes the connection with DOQ_PROTOCOL_ERROR (RFC 9250 4.2).
Bounds: a query over 65,535 bytes resets its stream; streams and bytes in flight per
connection are bounded by QUIC flow control (aioquic's defaults: 128 streams, 1 MiB per
stream); a connection idle for the listener's `idle` timeout closes.
A reload gives the listener the new certificate for the connections that follow, through
aioquic's public API only: the server hands its one QuicConfiguration to each connection it
makes, and a connection reads the certificate from it once, when its first packet comes; so
a reload copies the new configuration's fields into that object, and connections already
made (in their handshake or past it) keep the certificate they started with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived, StreamReset

from .request import Request, Response

DOQ_PROTOCOL_ERROR = 0x2
DOQ_REQUEST_CANCELLED = 0x3
MAX_QUERY = 65535 + 2


def configuration(cert: str, key: str) -> QuicConfiguration:
    """A server configuration with the certificate loaded (raises on a bad one)."""
    config = QuicConfiguration(is_client=False, alpn_protocols=["doq"], max_datagram_frame_size=0)
    config.load_cert_chain(cert, key)
    return config


class DoQListener:
    """aioquic's server on one address, and the configuration its new connections get."""

    def __init__(self, server: QuicServer, config: QuicConfiguration) -> None:
        self.server = server
        self.config = config

    def renew(self, listener: Any) -> None:
        """Connections from now on get the listener's certificate and `idle` (a reload's)."""
        new = listener_configuration(listener)
        for field in dataclasses.fields(new):
            setattr(self.config, field.name, getattr(new, field.name))

    def close(self) -> None:
        self.server.close()


def listener_configuration(listener: Any) -> QuicConfiguration:
    """The block's configuration (its certificate) with the listener's `idle` timeout: a
    copy, as the block's is shared by its listeners and a reload writes into this one."""
    return dataclasses.replace(listener.tls, idle_timeout=listener.timeouts["idle"])


async def open_listener(listener: Any, host: str, port: int) -> DoQListener:
    config = listener_configuration(listener)
    server = await serve(
        host or "::",
        port,
        configuration=config,
        create_protocol=lambda *args, **kw: DoQConnection(listener, *args, **kw),
    )
    return DoQListener(server, config)


class DoQConnection(QuicConnectionProtocol):
    def __init__(self, listener: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener
        self.streams: dict[int, bytearray] = {}

    def quic_event_received(self, event: Any) -> None:
        if isinstance(event, StreamDataReceived):
            data = self.streams.setdefault(event.stream_id, bytearray())
            data += event.data
            if len(data) > MAX_QUERY:
                del self.streams[event.stream_id]
                self._quic.reset_stream(event.stream_id, DOQ_PROTOCOL_ERROR)
                self.transmit()
            elif event.end_stream:
                self._query(event.stream_id, bytes(self.streams.pop(event.stream_id)))
        elif isinstance(event, StreamReset):
            self.streams.pop(event.stream_id, None)

    def _query(self, stream: int, data: bytes) -> None:
        if (
            len(data) < 14
            or int.from_bytes(data[:2], "big") != len(data) - 2
            or data[2:4] != b"\0\0"
        ):
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="not a DoQ query")
            self.transmit()
            return
        listener = self.listener
        if listener.closing:
            self._quic.reset_stream(stream, DOQ_REQUEST_CANCELLED)
            self.transmit()
            return
        peer = self._quic._network_paths[0].addr  # the client's address (aioquic keeps no other)
        reply = listener.query(data[2:], peer, "quic", Exchange(self, stream))
        if reply is not None:
            self.reply(stream, reply)

    def reply(self, stream: int, data: bytes) -> None:
        if data:
            self._quic.send_stream_data(stream, len(data).to_bytes(2, "big") + data, True)
        else:  # a stage dropped the query
            self._quic.reset_stream(stream, DOQ_REQUEST_CANCELLED)
        self.transmit()


class Exchange:
    """One DoQ query in flight: the sink its chain finishes into."""

    __slots__ = ("conn", "stream")

    def __init__(self, conn: DoQConnection, stream: int) -> None:
        self.conn = conn
        self.stream = stream

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None:
        server = self.conn.listener.server
        server.release(req.client)
        self.conn.reply(self.stream, server.complete(req, resp, exc))
