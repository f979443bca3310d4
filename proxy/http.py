"""Process-wide HTTP listeners: the admin API, ``health``, ``ready`` and ``prometheus``.

Those stages do not open sockets themselves. Their setup registers a :class:`Site` (a path
prefix and a handler) for a listen address in ``ctx.app.http`` (:func:`add_site`); the runtime
hands the whole map to :class:`HttpListeners`, which keeps one aiohttp server per address for
the life of the process:

* at a reload, :meth:`HttpListeners.prepare` opens the addresses the new configuration adds
  (a bind error fails the reload, and nothing else has changed); :meth:`HttpListeners.commit`,
  called once the new configuration serves, swaps every listener's sites and only then closes
  the addresses the new configuration dropped; :meth:`HttpListeners.abort` closes what a
  failed reload opened. A listener whose address stays keeps its socket and its connections,
  so a scrape or an API call racing a reload is answered by one configuration or the other.
  (CoreDNS closes a changed ``health``/``prometheus`` listener before the new configuration
  starts and leaves it down when the reload fails; dnsfw does not.)
* Several stages may share one address when their paths differ (``/health``, ``/ready``,
  ``/metrics``, ``/v1``); the same stage in several server blocks with the same address and
  settings is one site. Other overlaps are errors at setup, with file and line.

Errors are JSON ``{"error": MESSAGE}`` (:func:`json_error`): those of the admin API, of a path
no site serves, and those aiohttp answers itself for a request no site sees (a request line
over 8190 bytes: 414; a header over 8192 bytes or more than 128 headers: 431; anything else it
cannot parse, such as a bad request line, a header without a colon or bad chunked encoding:
400), through :class:`JsonErrors`, aiohttp's protocol with its ``handle_error`` hook
overridden. Those 4xx are the client's doing: logged at debug level, never with a traceback.
(``/health``, ``/ready`` and ``/metrics`` answer a wrong path or method in plain text, as
CoreDNS does: :func:`refuse_unless_get`.)

ADDRESS syntax (as CoreDNS): ``HOST:PORT``, ``:PORT`` (every address, IPv4 and IPv6),
``[IPV6]:PORT``; HOST is an IP address or a name resolved when the listener opens
(``localhost``: 127.0.0.1 and ::1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from .corefile import Directive, Token

if TYPE_CHECKING:
    from .config import AppContext

log = structlog.get_logger("dnsfw.http")

# aiohttp's limits, the field one a little higher so that LineTooLong's limit tells the lines apart
MAX_LINE = 8190  # bytes of the request line: longer is 414
MAX_FIELD = 8192  # bytes of one header (name and value): longer is 431
MAX_HEADERS = 128  # more is 431
BACKLOG = 128
SHUTDOWN_TIMEOUT = 2.0  # seconds a closing listener waits for requests in progress


@dataclass(frozen=True)
class Address:
    """A listen address: ``host`` "" is every address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # "" (every address) or another name


def parse_address(text: str, token: Token | None, directive: Directive) -> Address:
    """``HOST:PORT``, ``:PORT`` or ``[V6]:PORT``; CorefileError at ``token`` otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise directive.error(f"invalid address '{text}': expected HOST:PORT or :PORT", at=token)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise directive.error(f"invalid IPv6 address in '{text}'", at=token) from None
    elif ":" in host or "[" in host or "]" in host or "/" in host:
        raise directive.error(f"invalid address '{text}': write IPv6 as [ADDRESS]:PORT", at=token)
    return Address(host.lower(), int(port_text))


class Site(Protocol):
    """What a stage serves on an HTTP listener: every path equal to ``prefix`` or under it.

    Sites are frozen dataclasses: equal sites (same settings) registered by several server
    blocks are one.
    """

    name: str  # the directive, for messages
    prefix: str  # "/health", "/v1", ...

    async def handle(self, request: web.BaseRequest, runtime: Any) -> web.StreamResponse: ...


def add_site(app: AppContext, directive: Directive, address: Address, site: Site) -> None:
    """Register ``site`` at ``address``; CorefileError when something else is served there."""
    key = str(address)
    for other_key, sites in app.http.items():
        other = _parse_key(other_key)
        wildcard = not other.host or not address.host
        if other.port == address.port and other.host != address.host and wildcard:
            raise directive.error(
                f"cannot serve HTTP on {key}: {other_key} already listens on that port"
            )
        if other_key == key:
            existing = sites.get(site.prefix)
            if existing is not None and existing != site:
                raise directive.error(
                    f"{key}{site.prefix} is already served by '{existing.name}' with other settings"
                )
    app.http.setdefault(key, {}).setdefault(site.prefix, site)


def _parse_key(key: str) -> Address:
    host, _, port = key.rpartition(":")
    return Address(host.strip("[]"), int(port))


def _bind_addresses(address: Address) -> list[tuple[socket.AddressFamily, str]]:
    if not address.host:
        found = [(socket.AF_INET, "0.0.0.0")]
        if socket.has_ipv6:
            found.append((socket.AF_INET6, "::"))
        return found
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))


def open_sockets(address: Address) -> list[socket.socket]:
    """Bound, listening TCP sockets for ``address``. Raises OSError naming the address."""
    opened: list[socket.socket] = []
    try:
        for family, host in _bind_addresses(address):
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                if not address.host and family == socket.AF_INET6:
                    continue  # no IPv6 here: the IPv4 wildcard is enough
                raise
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind((host, address.port))
            sock.listen(BACKLOG)
    except OSError as err:
        for sock in opened:
            sock.close()
        reason = err.strerror or str(err)
        raise OSError(err.errno, f"cannot listen on http://{address}: {reason}") from None
    return opened


class HttpListener:
    """One address: its sockets, its aiohttp server, and the sites it serves now."""

    def __init__(self, address: Address, runtime: Any) -> None:
        self.address = address
        self.runtime = runtime
        self.sites: Mapping[str, Site] = {}
        self.runner: web.AppRunner | None = None

    async def open(self) -> None:
        sockets = open_sockets(self.address)
        # aiohttp's low-level server: every request goes to dispatch, not to aiohttp's router
        server = JsonErrorsServer(
            self.dispatch,
            access_log=None,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
        )
        self.runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self.runner.setup()
        for sock in sockets:
            await web.SockSite(self.runner, sock, shutdown_timeout=SHUTDOWN_TIMEOUT).start()

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        refused = await _expect(request)
        if refused is not None:
            return refused
        path = request.path
        for prefix, site in self.sites.items():  # a snapshot: a reload replaces the mapping
            if path == prefix or path.startswith(prefix + "/"):
                return await site.handle(request, self.runtime)
        return json_error(404, f"no such endpoint: {path}")

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def _expect(request: web.BaseRequest) -> web.Response | None:
    """``Expect: 100-continue`` answered as aiohttp's router does (the low-level server does
    not): "100 Continue" before the site reads the body; 417 for any other expectation."""
    expect = request.headers.get("Expect")
    if expect is None or request.version != (1, 1):
        return None
    if expect.lower() != "100-continue":
        return json_error(417, f"unsupported Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the reply proper has not started
    return None


class JsonErrors(web.RequestHandler):
    """aiohttp's HTTP/1 protocol, whose errors are dnsfw's: JSON, 4xx for a client's request.

    aiohttp answers itself, through ``handle_error``, a request it cannot parse (before any
    site sees it) and a site that raised (500; 504 on a timeout); it would answer plain text.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:  # the client's doing: no traceback in the journal at its request
            self.logger.debug("bad request from %s: %s", request.remote, message)
        if request.writer.output_size > 0:  # as aiohttp: a reply under way cannot be replaced
            raise ConnectionError("a response is under way: cannot send the error")
        reply = json_error(*_early_error(status, exc, message))
        reply.force_close()
        return reply

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp reads on a body the site did not read whole, after the reply; a body the
        # client broke (bad chunk, bad gzip) is its doing, as above
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            self.logger.debug("bad request body: %s", exc)
        else:
            super().log_exception(*args, **kw)


def _early_error(status: int, exc: BaseException | None, message: str | None) -> tuple[int, str]:
    """The status and message of an error aiohttp answers itself (see JsonErrors)."""
    if isinstance(exc, LineTooLong):
        if exc.args[1] == MAX_LINE:
            return 414, f"request line longer than {MAX_LINE} bytes"
        return 431, f"header longer than {MAX_FIELD} bytes"
    if isinstance(exc, BadHttpMessage) and exc.message.startswith("Too many headers"):
        return 431, f"more than {MAX_HEADERS} headers"
    if status >= 500:
        return status, f"internal error: {HTTPStatus(status).phrase}"
    return status, f"bad HTTP request: {message or HTTPStatus(status).phrase}"


class JsonErrorsServer(web.Server):
    """aiohttp's low-level server, making :class:`JsonErrors` protocols with ``settings``."""

    def __init__(self, handler: Any, **settings: Any) -> None:
        super().__init__(handler, **settings)
        self.settings = settings

    def __call__(self) -> JsonErrors:
        return JsonErrors(self, loop=asyncio.get_running_loop(), **self.settings)


@dataclass(frozen=True)
class Change:
    """What a reload did to the HTTP listeners (addresses)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]


class HttpListeners:
    """The HTTP listeners of the process, kept across reloads (see the module docstring)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.listeners: dict[str, HttpListener] = {}

    async def prepare(self, wanted: Mapping[str, Mapping[str, Site]]) -> list[str]:
        """Open the addresses of ``wanted`` not open yet (serving nothing until ``commit``).

        Returns them; on failure closes them again and raises OSError.
        """
        opened: list[str] = []
        try:
            for key in wanted:
                if key not in self.listeners:
                    listener = HttpListener(_parse_key(key), self.runtime)
                    await listener.open()
                    self.listeners[key] = listener
                    opened.append(key)
        except BaseException:
            await self.abort(opened)
            raise
        return opened

    async def commit(
        self, wanted: Mapping[str, Mapping[str, Site]], opened: Iterable[str]
    ) -> Change:
        """Serve ``wanted`` from now on; close the listeners it does not name."""
        added = tuple(opened)
        removed = tuple(k for k in self.listeners if k not in wanted)
        for key, listener in self.listeners.items():
            listener.sites = dict(wanted.get(key, {}))
        for key in removed:
            await self.listeners.pop(key).close()
        for key in added:
            log.info("http_listening", address=key, paths=",".join(wanted[key]))
        kept = tuple(k for k in self.listeners if k not in added)
        return Change(added, removed, kept)

    async def abort(self, opened: Iterable[str]) -> None:
        for key in opened:
            listener = self.listeners.pop(key, None)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def close(self) -> None:
        listeners = list(self.listeners.values())
        self.listeners.clear()
        await asyncio.gather(*(listener.close() for listener in listeners), return_exceptions=True)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """An error reply as every dnsfw HTTP endpoint writes it: ``{"error": MESSAGE, ...}``."""
    return web.json_response({"error": message, **extra}, status=status)


__all__ = [
    "Address",
    "Change",
    "HttpListener",
    "HttpListeners",
    "JsonErrors",
    "Site",
    "add_site",
    "json_error",
    "open_sockets",
    "parse_address",
]


def refuse_unless_get(request: web.BaseRequest, path: str) -> web.Response | None:
    """The 404 or 405 a single-path, read-only endpoint (``/health``, ``/ready``,
    ``/metrics``) gives to anything but ``GET``/``HEAD`` of its path; None when it is one."""
    if request.path != path:
        return web.Response(status=404, text="404: Not Found\n")
    if request.method not in ("GET", "HEAD"):
        return web.Response(
            status=405, text="405: Method Not Allowed\n", headers={"Allow": "GET, HEAD"}
        )
    return None
