"""One upstream of ``forward``: its sockets, the query exchange, and its health counters.

UDP: a pool of :data:`POOL_SIZE` connected UDP sockets per upstream, each on a port the kernel
picks at random from its ephemeral range (connect() binds it), so a query's source port is
one of several random ports. A socket older than ``expire`` is replaced by the plugin's
maintenance task; the old one stays open for ``read_timeout`` more so late replies to its
pending queries still land (and are counted, not used, after their timeout).

TCP and DNS over TLS: one pipelined connection per upstream carries any number of queries
at once; it takes new queries until it is ``expire`` old, then closes when its last query is
done. A connection the upstream closes while queries wait (it had answered before) makes
those queries retry once on a fresh connection, as CoreDNS does with a cached connection.

Each query gets a random 16-bit id from the kernel's CSPRNG, unique among the pending queries
of its socket or connection. A reply is accepted only when its id is pending and it is a
response with exactly one question equal to ours (name compared case-insensitively, type and
class exactly); on UDP the connected socket already drops datagrams from any other address.
Everything else is ignored and counted (``coredns_forward_rejected_replies_total``). The
records of an accepted reply are checked by the plugin (see :mod:`plugins.forward`).

The exchange API is synchronous and allocation-lean: ``ask_udp``/``ask_stream`` register the
query (a future plus a ``call_later`` timeout handle, cancelled on reply) and return the
future. It resolves to the reply bytes, or to an error message (a ``str``): a timeout, a
connection failure, or :data:`RETRY`. No exceptions, no Task per query.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Any

import dns.rcode
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import structlog

from proxy.metrics import Child, HistogramChild, Registry

from .options import ForwardConfig, Target

log = structlog.get_logger("dnsfw.forward")

POOL_SIZE = 4  # UDP sockets (source ports) per upstream
NEVER = 1 << 62  # "down at" threshold when max_fails is 0: never marked down
RETRY = "cached connection was closed by peer"  # the one error a query retries at once
QDCOUNT_ONE = b"\x00\x01"
ID_BATCH = 8192  # bytes of CSPRNG output drawn at once: 4096 query ids


class _Ids:
    """Random 16-bit query ids as 2-byte keys, read from os.urandom in batches."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = os.urandom(ID_BATCH)
        self.pos = 0

    def next(self) -> bytes:
        pos = self.pos
        if pos >= ID_BATCH:
            self.buf = os.urandom(ID_BATCH)
            pos = 0
        self.pos = pos + 2
        return self.buf[pos : pos + 2]


_ids = _Ids()
new_id = _ids.next


def _deliver(pending: dict[bytes, Any], data: bytes, up: Upstream) -> bool:
    """Resolve the pending query ``data`` answers; False (and counted) when it answers none."""
    key = data[:2]
    entry = pending.get(key)
    if entry is None:
        up.rejected_unknown.value += 1
        return False
    qname = entry[2]
    end = 12 + len(qname)
    if (
        len(data) < end + 4
        or not data[2] & 0x80
        or data[4:6] != QDCOUNT_ONE
        or data[12:end].lower() != qname
        or data[end : end + 4] != entry[3]
    ):
        up.rejected_mismatch.value += 1
        return False
    del pending[key]
    entry[1].cancel()
    entry[0].set_result(data)
    return True


def _fail_all(pending: dict[bytes, Any], message: str) -> None:
    for fut, timer, _, _ in pending.values():
        timer.cancel()
        if not fut.done():
            fut.set_result(message)
    pending.clear()


class UdpSocket(asyncio.DatagramProtocol):
    """One connected UDP socket of an upstream's pool and its pending queries."""

    __slots__ = ("up", "pending", "transport", "born", "close_timer")

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.pending: dict[bytes, Any] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.born = 0.0
        self.close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        _deliver(self.pending, data, self.up)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on this connected socket: nothing listens at the upstream, so
        # every query waiting here fails now instead of at its timeout (as a Go read would)
        if isinstance(exc, ConnectionRefusedError):
            _fail_all(self.pending, self.up.refused_message)

    def connection_lost(self, exc: Exception | None) -> None:
        udp = self.up.udp
        if self in udp:  # lost without our close(): let maintenance open a replacement
            udp.remove(self)
        _fail_all(self.pending, self.up.closed_message)

    def expire(self, key: bytes) -> None:
        entry = self.pending.pop(key, None)
        if entry is not None:
            entry[0].set_result(self.up.timeout_udp)

    def close(self) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
        if self.transport is not None:
            self.transport.close()
        _fail_all(self.pending, self.up.closed_message)


class StreamConn(asyncio.Protocol):
    """One TCP or TLS connection to an upstream: length-prefixed, pipelined queries."""

    def __init__(self, up: Upstream, born: float) -> None:
        self.up = up
        self.born = born
        self.pending: dict[bytes, Any] = {}
        self.unsent: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answered = 0
        self.closed = False
        self.retired = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.unsent:
            transport.write(b"".join(self.unsent))  # type: ignore[attr-defined]
            self.unsent.clear()
        self._close_if_done()  # retired while connecting, its queries already timed out

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < size + 2:
                break
            message = bytes(buf[2 : size + 2])
            del buf[: size + 2]
            if _deliver(self.pending, message, self.up):
                self.answered += 1
        self._close_if_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.up.conns.discard(self)
        # a connection that answered before was a reused one the peer dropped: retry elsewhere
        _fail_all(self.pending, RETRY if self.answered else self.up.closed_message)

    def send(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)
        else:
            self.unsent.append(frame)

    def expire(self, key: bytes) -> None:
        entry = self.pending.pop(key, None)
        if entry is not None:
            entry[0].set_result(self.up.timeout_stream)
        self._close_if_done()

    def connect_failed(self, message: str) -> None:
        self.closed = True
        self.up.conns.discard(self)
        _fail_all(self.pending, message)

    def retire(self) -> None:
        """Take no new queries; close once the pending ones are done."""
        self.retired = True
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.retired and not self.pending and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()
        _fail_all(self.pending, self.up.closed_message)


class DoHConn(StreamConn):
    """One HTTP/2 connection to a DoH upstream (RFC 8484): each query a POST to /dns-query
    on its own stream, many in flight, the connection reused until ``expire`` (as a TCP/TLS
    one). Queries keep their random id, which the reply carries back (``_deliver``)."""

    def __init__(self, up: Upstream, born: float) -> None:
        super().__init__(up, born)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, tuple[bytes, bytearray]] = {}  # stream -> (query id, body)
        self.headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", up.server_name.encode()),
            (b":path", b"/dns-query"),
            (b"content-type", b"application/dns-message"),
            (b"accept", b"application/dns-message"),
        ]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.h2.initiate_connection()
        frames, self.unsent = self.unsent, []
        self.transport = transport  # type: ignore[assignment]
        for frame in frames:
            self.send(frame)
        self._flush()
        self._close_if_done()

    def send(self, frame: bytes) -> None:
        """Post the query of a length-prefixed ``frame`` (as StreamConn takes them)."""
        if self.transport is None:
            self.unsent.append(frame)
            return
        message = frame[2:]
        stream = self.h2.get_next_available_stream_id()
        headers = [*self.headers, (b"content-length", b"%d" % len(message))]
        try:
            self.h2.send_headers(stream, headers)
            self.h2.send_data(stream, message, end_stream=True)
        except h2.exceptions.ProtocolError:  # too many streams, or the peer is going away
            self.retire()
            return
        self.streams[stream] = (message[:2], bytearray())
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers).get(b":status")
                if status != b"200":
                    self._failed(event.stream_id, f"doh {self.up.address}: HTTP {status!r}")
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
            elif isinstance(event, h2.events.StreamEnded):
                done = self.streams.pop(event.stream_id, None)
                if done is not None and _deliver(self.pending, bytes(done[1]), self.up):
                    self.answered += 1
            elif isinstance(event, h2.events.StreamReset):
                self._failed(event.stream_id, f"doh {self.up.address}: stream reset")
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.retire()
        self._flush()
        self._close_if_done()

    def _failed(self, stream: int, message: str) -> None:
        done = self.streams.pop(stream, None)
        entry = self.pending.pop(done[0], None) if done is not None else None
        if entry is not None:
            entry[1].cancel()
            entry[0].set_result(message)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


class Upstream:
    """An upstream server: its sockets, health (``fails``) and counters."""

    def __init__(self, target: Target, cfg: ForwardConfig, metrics: Registry) -> None:
        self.target = target
        self.address = target.address  # CoreDNS's `to` label: HOST:PORT
        self.doh = target.transport == "https"
        self.tls = target.transport in ("tls", "https")
        self.stream_only = self.tls or cfg.force_tcp
        self.expire = cfg.expire
        self.read_timeout = cfg.read_timeout
        self.server_name = target.server_name or cfg.tls_servername or target.host.split("%")[0]
        self.tls_context = cfg.doh_context if self.doh else cfg.tls_context if self.tls else None
        self.fails = 0
        self.down_at = cfg.max_fails or NEVER
        self.loop: asyncio.AbstractEventLoop | None = None
        self.udp: list[UdpSocket] = []
        self.retiring: set[UdpSocket] = set()
        self.conn: StreamConn | None = None
        self.conns: set[StreamConn] = set()
        self.probe: asyncio.Task[None] | None = None
        self.stopped = False
        stream_proto = "https" if self.doh else "tcp-tls" if self.tls else "tcp"
        self.timeout_udp = f"read udp {self.address}: i/o timeout"
        self.timeout_stream = f"read {stream_proto} {self.address}: i/o timeout"
        self.refused_message = f"read udp {self.address}: connection refused"
        self.closed_message = (
            f"{stream_proto if self.stream_only else 'udp'} {self.address}: connection closed"
        )
        self.stream_proto = stream_proto
        # plain numbers for upstreams(); metric children bumped in place
        self.answers = 0
        self.rtt_sum = 0.0
        rejected = metrics.counter(
            "coredns_forward_rejected_replies_total",
            "Replies from upstreams that matched no pending query (unknown id, or not a "
            "response to our question), ignored.",
            ("to", "reason"),
        )
        self.rejected_unknown: Child = rejected.labels(self.address, "unknown_id")  # type: ignore[assignment]
        self.rejected_mismatch: Child = rejected.labels(self.address, "mismatch")  # type: ignore[assignment]
        self.malformed: Child = metrics.counter(
            "dnsfw_forward_malformed_replies_total",
            "Replies to a pending query that do not parse (answered SERVFAIL unless another "
            "upstream answers).",
            ("to",),
        ).labels(self.address)  # type: ignore[assignment]
        self.hc_failures: Child = metrics.counter(
            "coredns_proxy_healthcheck_failures_total",
            "Count of failed health checks per upstream.",
            ("proxy_name", "to"),
        ).labels("forward", self.address)  # type: ignore[assignment]
        self._durations = metrics.histogram(
            "coredns_proxy_request_duration_seconds",
            "Histogram of the time each request took.",
            ("proxy_name", "to", "rcode"),
        )
        self._by_rcode: dict[int, HistogramChild] = {}

    # --- health ----------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.fails < self.down_at

    def answered(self, rcode: int, seconds: float) -> None:
        """A valid reply: record it, and clear the failure count (the upstream is up)."""
        self.answers += 1
        self.rtt_sum += seconds
        child = self._by_rcode.get(rcode)
        if child is None:
            child = self._new_duration(rcode)
        child.observe(seconds)
        if self.fails:
            self.recovered()

    def recovered(self) -> None:
        if self.fails >= self.down_at:
            log.info("upstream_up", to=self.address)
        self.fails = 0

    def failed(self) -> None:
        self.fails += 1
        if self.fails == self.down_at:
            log.warning("upstream_down", to=self.address, fails=self.fails)

    def _new_duration(self, rcode: int) -> HistogramChild:
        child = self._durations.labels("forward", self.address, dns.rcode.to_text(rcode))
        self._by_rcode[rcode] = child  # type: ignore[assignment]
        return child  # type: ignore[return-value]

    # --- exchange --------------------------------------------------------------------
    def ask_udp(self, body: bytes, qname: bytes, tail: bytes, timeout: float) -> asyncio.Future:
        """Send ``body`` (a query without its 2 id bytes) over UDP; see the module docstring."""
        loop = self.loop
        socks = self.udp
        key = new_id()
        if not socks:
            fut = loop.create_future()  # type: ignore[union-attr]
            fut.set_result(f"dial udp {self.address}: no socket")
            return fut
        sock = socks[key[1] % len(socks)]
        pending = sock.pending
        while key in pending:
            key = new_id()
        fut = loop.create_future()  # type: ignore[union-attr]
        pending[key] = (fut, loop.call_later(timeout, sock.expire, key), qname, tail)  # type: ignore[union-attr]
        sock.transport.sendto(key + body)  # type: ignore[union-attr]
        return fut

    def ask_stream(self, body: bytes, qname: bytes, tail: bytes, timeout: float) -> asyncio.Future:
        """Send ``body`` over this upstream's TCP/TLS connection (opened when needed)."""
        loop = self.loop
        conn = self._stream()
        pending = conn.pending
        key = new_id()
        while key in pending:
            key = new_id()
        fut = loop.create_future()  # type: ignore[union-attr]
        pending[key] = (fut, loop.call_later(timeout, conn.expire, key), qname, tail)  # type: ignore[union-attr]
        message = key + body
        conn.send(len(message).to_bytes(2, "big") + message)
        if self.expire <= 0:
            conn.retire()  # expire 0: one query per connection
        return fut

    async def exchange_stream(
        self, body: bytes, qname: bytes, tail: bytes, timeout: float
    ) -> bytes | str:
        """:meth:`ask_stream`, retried once on a fresh connection when a reused one was closed."""
        result = await self.ask_stream(body, qname, tail, timeout)
        if result is RETRY:
            result = await self.ask_stream(body, qname, tail, timeout)
        return result

    def _stream(self) -> StreamConn:
        conn = self.conn
        loop = self.loop
        now = loop.time()  # type: ignore[union-attr]
        if (
            conn is not None
            and not conn.closed
            and not conn.retired
            and now - conn.born < self.expire
        ):
            return conn
        if conn is not None:
            conn.retire()
        conn = (DoHConn if self.doh else StreamConn)(self, now)
        self.conn = conn
        self.conns.add(conn)
        conn.task = loop.create_task(self._connect(conn))  # type: ignore[union-attr]
        return conn

    async def _connect(self, conn: StreamConn) -> None:
        loop = self.loop
        assert loop is not None
        host, port = self.target.host, self.target.port
        try:
            async with asyncio.timeout(max(self.read_timeout, 1.0)):
                if self.tls:
                    await loop.create_connection(
                        lambda: conn,
                        host,
                        port,
                        ssl=self.tls_context,
                        server_hostname=self.server_name,
                    )
                else:
                    await loop.create_connection(lambda: conn, host, port)
        except TimeoutError:
            conn.connect_failed(f"dial {self.stream_proto} {self.address}: i/o timeout")
        except (OSError, ssl.SSLError) as exc:
            conn.connect_failed(f"dial {self.stream_proto} {self.address}: {exc}")
        finally:
            conn.task = None

    # --- sockets ---------------------------------------------------------------------
    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the UDP pool (not for TLS or force_tcp upstreams). Failures are logged, and
        retried by :meth:`maintain`: an unreachable upstream must not stop the server."""
        self.loop = loop
        self.stopped = False
        if self.stream_only:
            return
        while len(self.udp) < POOL_SIZE:
            sock = await self._open_udp()
            if sock is None:
                return
            self.udp.append(sock)

    async def _open_udp(self) -> UdpSocket | None:
        loop = self.loop
        assert loop is not None
        family = socket.AF_INET6 if ":" in self.target.host else socket.AF_INET
        try:
            raw = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            log.error("upstream_socket_failed", to=self.address, error=str(exc))
            return None
        try:
            raw.setblocking(False)
            raw.connect((self.target.host, self.target.port))  # binds a random ephemeral port
            proto = UdpSocket(self)
            await loop.create_datagram_endpoint(lambda: proto, sock=raw)
        except OSError as exc:
            raw.close()
            log.error("upstream_socket_failed", to=self.address, error=str(exc))
            return None
        proto.born = loop.time()
        return proto

    async def maintain(self, now: float) -> None:
        """Replace UDP sockets older than ``expire``, reopen missing ones, retire an old
        TCP/TLS connection."""
        if self.stopped:
            return
        loop = self.loop
        assert loop is not None
        if not self.stream_only:
            for i, sock in enumerate(self.udp):
                if self.expire > 0 and now - sock.born >= self.expire:
                    fresh = await self._open_udp()
                    if fresh is None or self.stopped:
                        if fresh is not None:
                            fresh.close()
                        break
                    self.udp[i] = fresh
                    self.retiring.add(sock)
                    # late replies to its pending queries may still come: close after they time out
                    sock.close_timer = loop.call_later(
                        self.read_timeout + 0.5, self._close_retired, sock
                    )
            if len(self.udp) < POOL_SIZE:
                await self.open(loop)
        conn = self.conn
        if conn is not None and (conn.closed or now - conn.born >= self.expire):
            self.conn = None
            conn.retire()

    def _close_retired(self, sock: UdpSocket) -> None:
        self.retiring.discard(sock)
        sock.close_timer = None
        sock.close()

    def close(self) -> None:
        """Close every socket and connection; pending queries end with an error at once."""
        self.stopped = True
        if self.probe is not None:
            self.probe.cancel()
        for sock in [*self.udp, *self.retiring]:
            sock.close()
        self.udp.clear()
        self.retiring.clear()
        for conn in list(self.conns):
            conn.abort()
        self.conns.clear()
        self.conn = None
