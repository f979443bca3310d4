"""Listeners, routing, the per-query hot path, lifecycle and reload.

One :class:`Listener` per (transport, host, port) of the configuration owns a UDP socket and a
TCP listening socket and a :class:`~proxy.routing.Router` (zone map -> block), which a reload
swaps whole. A query is parsed (:func:`proxy.request.parse`), routed to the block with the
longest matching zone (DS queries to the most distant non-root one; REFUSED when none matches;
:mod:`proxy.routing`), and its chain is driven by hand (:mod:`proxy.pipeline`). Replies are
post-processed in one place, :meth:`Server.complete`: the client's id, and for UDP truncation
to the client's size with TC.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from . import doh, wire
from .config import Block, Config, ListenerKey
from .metrics import Registry
from .names import wire_to_text
from .pipeline import Continuation
from .replay import MAX_REPLAYS, Replay
from .replay import build as build_replay
from .request import Malformed, Request, Response, parse
from .routing import Router
from .systemd import SocketPool

log = structlog.get_logger("dnsfw.server")

UDP_RCVBUF = 4 << 20
TCP_BACKLOG = 1024
BARE_OPT = 11  # an OPT record without options: root name, type, class, TTL, RDLENGTH 0
# a stream listener's scheme -> the transport its queries carry (Request.transport: the
# `proto` of logs and metrics)
PROTO = {"dns": "tcp", "tls": "tls", "https": "https", "quic": "quic"}


class Listener:
    """The sockets of one listen address and the router they share."""

    def __init__(self, key: ListenerKey, router: Router, server: Server) -> None:
        self.key = key
        self.label = str(key)
        self.router = router
        self.server = server
        # UDP queries (their bytes after the id) the chain answered in a replayable way
        self.replays: dict[bytes, Replay] = {}
        self.udp: list[asyncio.DatagramTransport] = []
        self.tcp: list[asyncio.base_events.Server] = []
        self.quic: list[Any] = []  # quic://: proxy.doq.DoQListener, aioquic's servers
        self.connections: set[TCPConnection] = set()
        self.closing = False
        self.timeouts = listener_timeouts(router)
        # the certificate new connections get (tls://, https://): a reload swaps it
        self.tls = listener_tls(key, router)
        self.handshakes = 0  # TLS handshakes in progress
        self.doh = listener_doh(router)

    def query(self, data: bytes, client: Any, proto: str, sink: Any) -> bytes | None:
        """Run one query: the reply when it finished at once (empty: send nothing), None when
        ``sink.finish`` will get it."""
        server = self.server
        try:
            req = parse(data, client, proto, self.label)
        except Malformed as bad:
            server.malformed += 1
            return bad.reply
        block = self.router.route(req.qname_wire, req.qtype)
        if block is None or (req.qclass != wire.CLASS_IN and req.qclass not in block.classes):
            return wire.build_reply(data, req.qend, wire.REFUSED, opt=req.opt())
        coro = block.chain(req)
        try:
            awaited = coro.send(None)
        except StopIteration as stop:
            resp = stop.value
            if type(resp) is Response and resp.replay is not None:
                self._remember(data, req, resp)
            return server.complete(req, resp, None)
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not take the listener down
            return server.complete(req, None, exc)
        if not server.hold(client):
            coro.close()
            return wire.build_reply(data, req.qend, wire.REFUSED, opt=req.opt())
        Continuation(coro, awaited, req, sink, server.loop)
        return None

    def _remember(self, data: bytes, req: Request, resp: Response) -> None:
        """Keep a replay of this UDP query from what its chain recorded (see proxy.replay).

        Only for names asked in lower case, as stub resolvers ask: a resolver randomising the
        case (DNS 0x20) sends bytes that never come again, whose replays would only churn the
        table. Only for a query that is its question and at most a bare OPT record (the key's
        size is bounded; see proxy.replay). And not when the reply is truncated for this client."""
        trail = req.trail
        if (
            trail is None
            or len(data) != req.qend + (BARE_OPT if req.edns else 0)
            or len(resp.wire) > req.udp_size
            or data[12 : req.qend - 4] != req.qname_wire
        ):
            return
        replays = self.replays
        if len(replays) >= MAX_REPLAYS:
            replays.clear()
        replays[data[2:]] = build_replay(trail, resp.replay)

    def stop_accepting(self) -> None:
        """Take no new queries: UDP datagrams are ignored, the TCP sockets stop accepting,
        and TCP connections close once their queries in flight are answered."""
        self.closing = True
        for tcp_server in self.tcp:
            tcp_server.close()
        for conn in list(self.connections):
            conn.drain_and_close()

    def close(self, *, abort: bool = False) -> None:
        """Close every socket; open TCP connections are aborted (``abort``) or drained first."""
        self.closing = True
        for transport in self.udp:
            transport.close()
        for quic in self.quic:
            quic.close()
        if not abort:
            self.stop_accepting()
            return
        for tcp_server in self.tcp:
            tcp_server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()


def per_client_share(max_inflight: int, per_client: int | None) -> int:
    """Queries one client may have waiting on I/O: ``per_client`` when given (0: the whole
    pool), else a tenth of the pool but at least 100 (a busy client of a small pool is not
    held back before the pool itself is)."""
    if per_client is None:
        return max(max_inflight // 10, 100)
    return per_client or max_inflight


def client_key(client: Any) -> str | bytes:
    """Whose share of the in-flight pool a query takes: its IPv4 address, or the /64 of its
    IPv6 address (one host may use any address of its /64)."""
    host = client[0]
    if ":" not in host:
        return host
    return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])[:8]


def listener_tls(key: ListenerKey, router: Router) -> Any:
    """The TLS context of a tls:// or https:// listener (ssl.SSLContext; for quic:// aioquic's
    QuicConfiguration): the first block's `tls` for the listener's transport (its ALPN), as
    for `timeouts`; None for dns://."""
    first = next(iter(router.zones.values()), None)
    return first.tls.get(key.transport) if first is not None else None


def listener_doh(router: Router) -> doh.DoHOptions:
    """The `https` options of a listener: the first block's, as for `timeouts`."""
    first = next(iter(router.zones.values()), None)
    return first.doh if first is not None else doh.DoHOptions()


def listener_timeouts(router: Router) -> dict[str, float]:
    """TCP timeouts of a listener: the first block's `timeouts`, else CoreDNS's defaults."""
    values = {"read": 3.0, "write": 5.0, "idle": 10.0}
    first = next(iter(router.zones.values()), None)
    if first is not None:
        values.update(first.timeouts)
    return values


class UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        listener = self.listener
        if listener.closing:
            return
        replay = listener.replays.get(data[2:])
        if replay is not None:
            try:
                reply = replay.run(data, addr)
            except Exception as exc:  # noqa: BLE001 - a part's bug: report it, let the chain answer
                listener.server.report_panic("replay_failed", repr(exc))
                reply = None
            if reply:
                self.sendto(reply, addr)
                return
            if reply is None:  # something changed: the chain decides again
                listener.replays.pop(data[2:], None)
            # else a gate held this client back (proxy.replay.HELD): the chain answers it
        reply = listener.query(data, addr, "udp", self)
        if reply:
            self.sendto(reply, addr)

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None:
        server = self.listener.server
        server.release(req.client)
        reply = server.complete(req, resp, exc)
        if reply and self.transport is not None and not self.transport.is_closing():
            self.sendto(reply, req.client)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (client gone): nothing to do
        pass


class TCPConnection(asyncio.Protocol):
    """One client connection: length-prefixed queries, answered in completion order.

    On a tls:// listener the bytes are TLS (DNS over TLS, RFC 7858), decrypted here through
    memory BIOs: no Task per connection, and the connection counts against
    ``-tcp-max-conns`` from its accept on, handshake included. The handshake must finish
    within the listener's `read` timeout, and at most MAX_HANDSHAKES run at once per listener
    (each costs the server a signature): beyond either, the connection is reset (counted)."""

    MAX_PENDING = 128  # queries in flight per connection before we stop reading
    MAX_HANDSHAKES = 128

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.buffer = bytearray()
        self.pending = 0
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.last_active = time.monotonic()  # the last bytes received or reply written
        self.started = 0.0  # when the first byte of the message in ``buffer`` came
        self.written = 0  # bytes of replies handed to the transport
        # (end offset in ``written``, when written) of replies not yet all taken by the client
        self.unsent: deque[tuple[int, float]] = deque()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.paused = False
        self.proto = PROTO[listener.key.transport]  # Request.transport: `proto` in logs, metrics
        self.tls: ssl.SSLObject | None = None  # tls://, https://: the session
        self.tls_in = ssl.MemoryBIO()  # ciphertext received, not yet decrypted
        self.tls_out = ssl.MemoryBIO()  # ciphertext to send
        self.handshaking = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self.listener
        server = listener.server
        context = listener.tls  # the certificate of the moment: a reload's from now on
        if len(listener.connections) >= self.max_connections() or (
            context is not None and listener.handshakes >= self.MAX_HANDSHAKES
        ):
            server.tcp_rejected += 1
            transport.abort()
            return
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        listener.connections.add(self)
        if context is not None:
            self.tls = context.wrap_bio(self.tls_in, self.tls_out, server_side=True)
            self.handshaking = True
            listener.handshakes += 1
            self.started = time.monotonic()  # the handshake has `read` to finish
        self._arm_idle()

    def max_connections(self) -> int:
        return self.listener.server.tcp_max_connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.handshaking:
            self.handshaking = False
            self.listener.handshakes -= 1
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        self.received(data)

    def _decrypt(self, data: bytes) -> bytes:
        """The plaintext in ``data`` (TLS records), after the handshake's turns; what TLS has
        to say back (handshake, session tickets, alerts) is sent."""
        tls = self.tls
        assert tls is not None
        self.tls_in.write(data)
        plain = b""
        try:
            if self.handshaking:
                tls.do_handshake()
                self.handshaking = False
                self.listener.handshakes -= 1
                self.last_active = time.monotonic()
                self.established()
            while chunk := tls.read(65536):  # b"": the session ended (close_notify)
                plain += chunk
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:  # a failed handshake, a bad record, or the client's close_notify
            if self.handshaking:
                self.listener.server.tls_failed += 1
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return b""
        self._flush()
        return plain

    def _flush(self) -> None:
        out = self.tls_out.read()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def established(self) -> None:
        """The TLS handshake is done: the session's protocol (ALPN) is known."""

    def received(self, data: bytes) -> None:
        """Plaintext from the client: length-prefixed DNS messages."""
        now = self.last_active = time.monotonic()
        buf = self.buffer
        if not buf:
            self.started = now  # a message begins: `read` runs from its first byte (one deadline)
        buf += data
        while len(buf) >= 2 and self.transport is not None:
            size = (buf[0] << 8) | buf[1]
            if size == 0:
                self.transport.close()
                return
            if len(buf) < size + 2:
                break
            message = bytes(buf[2 : size + 2])
            del buf[: size + 2]
            self.started = now  # the next message, if it came in the same bytes, begins now
            if self.listener.closing:
                continue
            reply = self.listener.query(message, self.peer, self.proto, self)
            if reply:
                self._write(reply)
            elif reply is None:  # answered later, by finish()
                self.pending += 1
                if self.pending >= self.MAX_PENDING and not self.paused:
                    self.paused = True
                    self.transport.pause_reading()

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None:
        server = self.listener.server
        server.release(req.client)
        self.pending -= 1
        reply = server.complete(req, resp, exc)
        if reply:
            self._write(reply)
        self.resume()

    def resume(self) -> None:
        """After a reply: read again once half the queries in flight are answered, and close
        a draining connection with none left."""
        if self.paused and self.pending <= self.MAX_PENDING // 2 and self.transport is not None:
            self.paused = False
            self.started = time.monotonic()  # a message cut by the pause gets its whole `read`
            self.transport.resume_reading()
        if self.listener.closing and self.pending == 0 and self.transport is not None:
            self.transport.close()

    def reading(self) -> bool:
        """A message is partly received (its `read` deadline runs from ``started``)."""
        return bool(self.buffer)

    def _write(self, reply: bytes) -> None:
        self._send(len(reply).to_bytes(2, "big") + reply)

    def _send(self, data: bytes) -> None:
        """Hand ``data`` to the client (encrypted on TLS listeners); `write` runs for it."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.last_active = time.monotonic()
            if self.tls is not None:
                self.tls.write(data)
                data = self.tls_out.read()
            transport.write(data)
            self.written += len(data)
            if transport.get_write_buffer_size():  # not all in the kernel: `write` runs for it
                self.unsent.append((self.written, self.last_active))

    def _arm_idle(self) -> None:
        # one timer per connection, checking the read, write and idle limits
        timeouts = self.listener.timeouts
        tick = min(1.0, min(timeouts.values()) / 2)
        self.idle_timer = self.listener.server.loop.call_later(tick, self._check_timeouts)

    def _check_timeouts(self) -> None:
        transport = self.transport
        if transport is None:
            return
        timeouts = self.listener.timeouts
        now = time.monotonic()
        quiet = now - self.last_active
        if (
            (self.handshaking or self.reading())
            and not self.paused
            and (now - self.started >= timeouts["read"])
        ):
            # a message (or TLS handshake) not complete within `read` of its first byte,
            # however its bytes trickle in (slowloris); while reading is paused the client
            # cannot send
            if self.handshaking:
                self.listener.server.tls_failed += 1
            transport.abort()
        elif self._oldest_unsent(transport) <= now - timeouts["write"]:
            transport.abort()  # a reply not taken within `write`, whatever the client sends
        elif not (self.pending or self.reading() or self.unsent) and quiet >= timeouts["idle"]:
            transport.close()
        else:
            self._arm_idle()

    def _oldest_unsent(self, transport: asyncio.Transport) -> float:
        """When the oldest reply the client has not yet taken whole was written (inf: none)."""
        taken = self.written - transport.get_write_buffer_size()
        unsent = self.unsent
        while unsent and unsent[0][0] <= taken:
            unsent.popleft()
        return unsent[0][1] if unsent else float("inf")

    def drain_and_close(self) -> None:
        if self.pending == 0 and self.transport is not None:
            self.transport.close()


class DoHConnection(TCPConnection):
    """A connection of an https:// listener: DNS over HTTPS (proxy.doh) on the TLS session."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.http: doh.HTTP11 | doh.HTTP2 | None = None
        self.partial = False  # an HTTP request is partly received

    def max_connections(self) -> int:
        limit = self.listener.doh.max_connections
        tcp = self.listener.server.tcp_max_connections
        return min(limit, tcp) if limit else tcp

    def established(self) -> None:
        assert self.tls is not None
        if self.tls.selected_alpn_protocol() == "h2":
            self.http = doh.HTTP2(self)
        else:
            self.http = doh.HTTP11(self)
            self.MAX_PENDING = 1  # one request at a time: read the next after the reply

    def received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.http is not None:  # it keeps `started` and `partial` (the `read` deadline)
            self.http.received(data)

    def reading(self) -> bool:
        return self.partial

    def ask(
        self, stream: int, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        """Run the query of one HTTP request; its reply goes to ``respond`` now or later."""
        message = doh.dns_message(method, target, headers, body)
        if isinstance(message, doh.Reply):
            self.respond(stream, message)
            return
        listener = self.listener
        if listener.closing:
            self.respond(stream, doh.error(503, "shutting down"), close=True)
            return
        client = doh.client_of(self.peer, headers, listener.doh)
        reply = listener.query(message, client, self.proto, doh.Exchange(self, stream))
        if reply is not None:
            self.respond(stream, doh.answer(reply))
            return
        self.pending += 1
        if self.pending >= self.MAX_PENDING and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def respond(self, stream: int, reply: doh.Reply, *, close: bool = False) -> None:
        if self.http is not None and self.transport is not None:
            self.http.respond(stream, reply, close=close)

    def send(self, data: bytes) -> None:
        if data:
            self._send(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def linger(self) -> None:
        """After a last reply: ignore what the client still sends (the rest of a request too
        large to read), so the reply is not lost to a reset; closed within `read`."""
        self.http = None
        self.partial = True
        self.started = time.monotonic()


def _bind_addresses(host: str) -> list[tuple[socket.AddressFamily, str]]:
    if host:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [(family, host)]
    addresses = [(socket.AF_INET, "0.0.0.0")]
    if socket.has_ipv6:
        addresses.append((socket.AF_INET6, "::"))
    return addresses


def open_sockets(
    key: ListenerKey, inherited: SocketPool | None = None
) -> list[tuple[socket.socket | None, socket.socket]]:
    """Bound (UDP, TCP) socket pairs for a listen address ("" -> every IPv4 and IPv6 address);
    the UDP socket is None for the stream-only transports (tls://, https://).

    A pair systemd passed for the address (socket activation, ``inherited``) is used as it is.
    """
    pairs: list[tuple[socket.socket | None, socket.socket]] = []
    datagram = key.transport == "dns"
    for family, host in _bind_addresses(key.host):
        passed = inherited.pairs_for(family, host, key.port) if inherited and datagram else None
        if passed is not None:
            pairs += passed
            continue
        try:
            udp = socket.socket(family, socket.SOCK_DGRAM) if datagram else None
            tcp = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            if not key.host and family == socket.AF_INET6:
                continue  # no IPv6 on this host: the IPv4 wildcard is enough
            raise
        try:
            for sock in (udp, tcp):
                if sock is None:
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setblocking(False)
            with contextlib.suppress(OSError):
                if udp is not None:
                    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            if udp is not None:
                udp.bind((host, key.port))
            tcp.bind((host, key.port))
            tcp.listen(TCP_BACKLOG)
        except OSError as err:
            if udp is not None:
                udp.close()
            tcp.close()
            if not key.host and family == socket.AF_INET6 and err.errno in (97, 99):
                continue  # IPv6 disabled
            raise OSError(err.errno, f"cannot listen on {key}: {err.strerror}") from None
        pairs.append((udp, tcp))
    return pairs


class Server:
    """The running configuration: listeners, plugin lifecycles, reload and shutdown."""

    def __init__(
        self,
        config: Config,
        *,
        max_inflight: int = 10000,
        max_inflight_per_client: int | None = None,
        tcp_max_connections: int = 1000,
        shutdown_grace: float = 5.0,
        inherited: SocketPool | None = None,
        metrics: Registry | None = None,
    ) -> None:
        self.config = config
        self.inherited = inherited  # sockets from systemd socket activation
        self.max_inflight = max_inflight
        self.max_per_client = per_client_share(max_inflight, max_inflight_per_client)
        # queries waiting on I/O per client (client_key), only for clients that have some
        self.held: dict[str | bytes, int] = {}
        self.tcp_max_connections = tcp_max_connections
        self.shutdown_grace = shutdown_grace
        self.loop = asyncio.get_running_loop()
        self.listeners: dict[ListenerKey, Listener] = {}
        self.inflight = 0
        # plain counters on the hot path; exported through the metrics registry
        self.malformed = 0
        self.overflow = 0
        self.client_overflow = 0
        self.tcp_rejected = 0
        self.tls_failed = 0  # TLS handshakes that failed or timed out
        self.panics = 0
        self._last_panic_log = 0.0  # chain failures are logged at most once a second
        self.started = time.time()
        # called once a replaced configuration's plugins stopped (after the grace time) and
        # the server let go of it
        self.on_retired: Callable[[], None] | None = None
        # registered once: these counters belong to the process, not to a configuration
        self._register_metrics(metrics if metrics is not None else config.app.metrics)

    # --- the in-flight pool ---------------------------------------------------------
    def hold(self, client: Any) -> bool:
        """Take a place in the in-flight pool for a query from ``client`` that must wait on
        I/O; False (counted) when the pool is full or the client already has its share."""
        if self.inflight >= self.max_inflight:
            self.overflow += 1
            return False
        key = client_key(client)
        held = self.held.get(key, 0)
        if held >= self.max_per_client:
            self.client_overflow += 1
            return False
        self.held[key] = held + 1
        self.inflight += 1
        return True

    def release(self, client: Any) -> None:
        """Give back the place :meth:`hold` took for a query from ``client``."""
        self.inflight -= 1
        key = client_key(client)
        held = self.held[key] - 1
        if held:
            self.held[key] = held
        else:
            del self.held[key]  # the table holds only clients with queries in flight

    # --- the reply path -------------------------------------------------------------
    def complete(self, req: Request, resp: Response | None, exc: BaseException | None) -> bytes:
        """The bytes to send for a finished query: SERVFAIL on failure, client id, UDP truncation;
        empty when a stage dropped the query."""
        if exc is not None or type(resp) is not Response:
            self._chain_failed(req, exc, resp)
            return wire.build_reply(req.wire, req.qend, wire.SERVFAIL, flags=wire.RA, opt=req.opt())
        data = resp.wire
        if not data:
            return data  # a stage chose to send nothing (Request.drop)
        if data[0] != req.wire[0] or data[1] != req.wire[1]:
            data = req.wire[:2] + data[2:]
        if req.transport == "udp" and len(data) > req.udp_size:
            flags = ((data[2] << 8) | data[3]) & (wire.AA | wire.RA | wire.AD)
            data = wire.build_reply(
                req.wire, req.qend, resp.rcode, flags=flags | wire.TC, opt=req.opt()
            )
        return data

    def _chain_failed(self, req: Request, exc: BaseException | None, resp: object) -> None:
        error = repr(exc) if exc is not None else f"chain returned {resp!r}"
        self.report_panic("chain_failed", error, qname=req.qname, qtype=req.qtype)

    def report_panic(self, event: str, error: str, **fields: Any) -> None:
        """Count a plugin bug (``coredns_panics_total``) and log it, at most once a second so
        a flood of bad queries cannot flood the journal."""
        self.panics += 1
        now = time.monotonic()
        if now - self._last_panic_log >= 1.0:
            self._last_panic_log = now
            log.error(event, **fields, error=error, total=self.panics)

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        await _run_hooks(self.config.blocks, "start")
        _log_replays_off(self.config.blocks)
        try:
            for key, zones in self.config.listeners.items():
                await self._open(key, Router(zones))
        except BaseException:
            await self._close_all()
            await _run_hooks(self.config.blocks, "stop")
            raise
        for key, zones in self.config.listeners.items():
            log.info(
                "listening",
                listener=str(key),
                zones=",".join(sorted(wire_to_text(z) for z in zones)),
            )

    def ready(self) -> bool:
        return not self.not_ready()

    def not_ready(self) -> list[str]:
        """The plugins whose ``ready()`` is false (e.g. lists still loading): each name, with
        the plugin's ``waiting()`` reason in parentheses when it gives one."""
        return [
            f"{p.name} ({p.waiting()})" if p.waiting() else p.name
            for b in self.config.blocks
            for p in b.plugins
            if not p.ready()
        ]

    async def _open(self, key: ListenerKey, router: Router) -> None:
        listener = Listener(key, router, self)
        self.listeners[key] = listener
        if key.transport == "quic":
            from . import doq  # the optional extra dnsfw[quic]: config refused quic:// without it

            listener.quic.append(await doq.open_listener(listener, key.host, key.port))
            return
        for udp_sock, tcp_sock in open_sockets(key, self.inherited):
            if udp_sock is not None:
                transport, _ = await self.loop.create_datagram_endpoint(
                    lambda: UDPProtocol(listener), sock=udp_sock
                )
                listener.udp.append(transport)
            stream = DoHConnection if key.transport == "https" else TCPConnection
            tcp_server = await self.loop.create_server(
                lambda stream=stream: stream(listener), sock=tcp_sock, backlog=TCP_BACKLOG
            )
            listener.tcp.append(tcp_server)

    async def stop(self) -> None:
        """Graceful stop: stop accepting, let in-flight queries finish (bounded), stop plugins."""
        for listener in self.listeners.values():
            listener.stop_accepting()
        deadline = time.monotonic() + self.shutdown_grace
        while self.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.inflight:
            log.warning("shutdown_abandoned_queries", count=self.inflight)
        await self._close_all()
        await _run_hooks(self.config.blocks, "stop")

    async def _close_all(self) -> None:
        for listener in self.listeners.values():
            listener.close(abort=True)
        self.listeners.clear()
        await asyncio.sleep(0)

    async def reload(self, new: Config) -> None:
        """Swap in a fully set-up configuration; listeners that stay keep their sockets.

        Raises (and changes nothing) if the new configuration's plugins or sockets fail to start.
        """
        old = self.config
        await _run_hooks(new.blocks, "start")
        opened: list[ListenerKey] = []
        try:
            for key, zones in new.listeners.items():
                if key not in self.listeners:
                    await self._open(key, Router(zones))
                    opened.append(key)
        except BaseException:
            for key in opened:
                await self._close_listener(key)
            await _run_hooks(new.blocks, "stop")
            raise
        for key, zones in new.listeners.items():
            listener = self.listeners[key]
            listener.router = Router(zones)
            listener.replays.clear()  # they hold the old configuration's plugins
            listener.timeouts = listener_timeouts(listener.router)
            listener.tls = listener_tls(key, listener.router)  # for connections from now on
            listener.doh = listener_doh(listener.router)
            for quic in listener.quic:  # proxy.doq.DoQListener
                quic.renew(listener)
        for key in [k for k in self.listeners if k not in new.listeners]:
            await self._close_listener(key)
        self.config = new
        _log_replays_off(new.blocks)
        # queries in flight finish on the old chains; stop the old plugins once they had time to
        self.loop.call_later(self.shutdown_grace, lambda: asyncio.ensure_future(self._retire(old)))

    async def _retire(self, old: Config) -> None:
        await _run_hooks(old.blocks, "stop")
        sha512 = old.sha512
        del old  # the last reference the server held: on_retired may free it
        started = time.monotonic()
        if self.on_retired is not None:
            self.on_retired()
        log.info("retired", sha512=sha512, seconds=round(time.monotonic() - started, 3))

    async def _close_listener(self, key: ListenerKey) -> None:
        self.listeners.pop(key).close()

    # (metric, help, attribute of the server, kind): plain ints on the hot path, read at scrape
    SERVER_METRICS = (
        (
            "dnsfw_malformed_queries_total",
            "Queries dropped or answered FORMERR/NOTIMP/BADVERS before entering a chain.",
            "malformed",
            "counter",
        ),
        (
            "dnsfw_inflight_overflow_total",
            "Queries answered REFUSED because too many were waiting on I/O.",
            "overflow",
            "counter",
        ),
        (
            "coredns_panics_total",
            "Queries whose chain raised an exception (answered SERVFAIL).",
            "panics",
            "counter",
        ),
        (
            "dnsfw_inflight_client_overflow_total",
            "Queries answered REFUSED because their client already had its share of the "
            "queries waiting on I/O.",
            "client_overflow",
            "counter",
        ),
        ("dnsfw_inflight_queries", "Queries waiting on I/O now.", "inflight", "gauge"),
        (
            "dnsfw_tls_handshake_failures_total",
            "TLS handshakes (tls://, https://) that failed or did not finish within `read`.",
            "tls_failed",
            "counter",
        ),
    )

    def _register_metrics(self, metrics: Registry) -> None:
        for name, help, attribute, kind in self.SERVER_METRICS:
            metrics.gauge_func(
                name, help, (), lambda a=attribute: [((), getattr(self, a))], kind=kind
            )


async def _run_hooks(blocks: Iterable[Block], hook: str) -> None:
    for block in blocks:
        for plugin in block.plugins:
            try:
                await (plugin.start() if hook == "start" else plugin.stop())
            except Exception as exc:
                if hook == "start":
                    raise
                log.warning("plugin_stop_failed", plugin=plugin.name, error=repr(exc))


def _log_replays_off(blocks: Iterable[Block]) -> None:
    """Say once per block when a stage keeps its queries off the fast path (proxy.replay)."""
    for block in blocks:
        for plugin, reason in block.replays_off():
            log.info(
                "replays_off", block=f"{block.file}:{block.line}", plugin=plugin, reason=reason
            )
