"""The admin HTTP API: JSON under ``/v1`` on the ``admin`` stage's listener (plugins/admin.py).

=======  ================================  ===============================================
GET      /v1/openapi.json                  this API as an OpenAPI 3.0 document
GET      /v1/lists                         every domain list of every firewall, with status
GET      /v1/lists/{name}?offset=&limit=   one list: status and a page of entries (sorted)
PATCH    /v1/lists/{name}                  ``{"operation": "ADD"|"REMOVE"|"REPLACE",
                                           "domains": [...]}``, at most 1000 domains;
                                           Route 53's ``Operation``/``Domains`` too
PUT      /v1/lists/{name}                  REPLACE with a text body, one entry per line
POST     /v1/lists/{name}/refresh          re-read the list's source (file or URL)
GET      /v1/rules                         the effective evaluation order of each firewall
GET      /v1/explain?name=&type=&client=   the rule walk of one query (as ``dnsfw explain``,
                                           without --resolve: ``chain`` is null)
GET      /v1/stats?top=N                   totals and rates, rcodes, firewall actions and
                                           rules, cache, top blocked/alerted names and
                                           clients, upstreams, reloads, uptime
POST     /v1/reload                        reload the Corefile: 200 with what changed, or
                                           400 with the error (the old configuration serves)
POST     /v1/cache/flush                   every cache entry, or ``{"name": NAME}``'s
=======  ================================  ===============================================

**Authentication.** With ``token_file``, every ``/v1`` request needs
``Authorization: Bearer TOKEN``: 401 (with ``WWW-Authenticate: Bearer``) without it, 403 with
another token (compared in constant time). Without ``token_file`` (loopback addresses only)
no header is needed.

**Edits.** PATCH and PUT apply to ``file`` lists in the ``route53`` format. The new list is
written to its file (temp file, fsync, rename, fsync of the directory) and swapped in whole
before the reply: a query sent after the reply sees it, and a restart or a crash after the
reply loses nothing. ``url`` lists, inline (``domains``) lists and ``hosts``/``adblock`` files
answer 409 with the reason. Invalid entries answer 400 with ``errors``, one line per bad entry
and why (for PUT with its line number), and the list is unchanged. PATCH takes at most 1000
domains, as Route 53's UpdateFirewallDomains does (clients written for it behave the same),
and takes its body as written for it too: ``{"Operation": "ADD", "Domains": [...]}``, with an
optional ``FirewallDomainListId`` that must be the list's name (one casing per body: a mix
is refused);
PUT is the bulk path (parsed, built and written in a forked child, as a reload's lists are:
a 1M-entry REPLACE does not hold the DNS listeners). A list name used by several firewalls
(server blocks) is edited
once and re-read by the others; if they name different sources, the edit answers 409.
Edits and reloads are serialised (:attr:`proxy.runtime.Runtime.lock`).

**Errors** are JSON ``{"error": MESSAGE}`` (400, 401, 403, 404, 405, 409, 413; 502 when a
refresh failed, the old list serving on), and so are those of requests the HTTP listener
refuses before the API sees them (400, 414, 417, 431: :mod:`proxy.http`). Request bodies: JSON
at most 1 MiB, PUT at most 64 MiB (413 beyond); a body that does not decode or parse (JSON
nested too deeply included) is 400. No input gets a 5xx.

**Statistics** come from the ``admin`` stage of each server block that has one (it counts
what it sees: the final rcode, the firewall's decision, the client) and from the plugins'
own interfaces (``stats()`` of each cache, ``upstreams()``, rule counters). Top blocked names, top alerted names and top clients are Misra-Gries
summaries of :data:`TOP_CAPACITY` counters each (bounded memory; a reported count is at most
``max_undercount`` below the true one). Rates are over the last 10 and 60 whole seconds.

The API reaches plugins only through the typed keys of :mod:`proxy.services` and their
Protocols: ``DOMAIN_LISTS`` (``lists()``, ``entries()``, ``edit()``, ``replace()``,
``refresh()``, ``rules()``, ``explain()``, ``location``; refusals raise
:class:`~proxy.services.Refused`), ``RULE_COUNTERS`` (``rule_matches()``), ``CACHES``
(``stats()``, ``flush()``) and ``UPSTREAMS`` (``upstreams()``). Queries are routed to
server blocks by :mod:`proxy.routing`, as the server routes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import dns.rcode
import dns.rdatatype
import structlog
from aiohttp import web

from . import __version__, names
from .build import build
from .http import json_error
from .openapi import document
from .routing import routes
from .services import (
    CACHES,
    DOMAIN_LISTS,
    RULE_COUNTERS,
    UPSTREAMS,
    DomainLists,
    ListState,
    Refused,
    Services,
)

if TYPE_CHECKING:
    from .runtime import Runtime

log = structlog.get_logger("dnsfw.admin")

MAX_JSON_BODY = 1 << 20
MAX_TEXT_BODY = 64 << 20
MAX_PATCH_DOMAINS = 1000  # Route 53's UpdateFirewallDomains limit per call
PAGE_DEFAULT = 1000
PAGE_MAX = 10000
TOP_CAPACITY = 1024  # counters per top-k summary
TOP_DEFAULT = 10
TOP_MAX = 100
RATE_WINDOW = 60  # seconds of per-second counts kept
STATS_KEY = "admin.stats"  # the QueryStats in ctx.app.shared (survives reloads)
AUTH_KEY = "dnsfw.admin.auth"  # request item: the site asks for a token
IDENTITY_KEY = "dnsfw.admin.identity"  # request item: "anonymous" or "token:FINGERPRINT"


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


# --- statistics ---------------------------------------------------------------------------
class TopK:
    """The most frequent keys of a stream in bounded memory (Misra-Gries).

    Holds at most ``capacity`` counters. A new key when the table is full decrements every
    counter by one and drops those at zero; each such pass removes ``capacity`` counts, so the
    work stays O(1) per key amortised, and a key's count is low by at most ``passes``.
    """

    __slots__ = ("capacity", "counts", "passes")

    def __init__(self, capacity: int = TOP_CAPACITY) -> None:
        self.capacity = capacity
        self.counts: dict[str | bytes, int] = {}
        self.passes = 0

    def add(self, key: str | bytes) -> None:
        """Count ``key``: text, or a wire-format name (reported as text)."""
        counts = self.counts
        n = counts.get(key)
        if n is not None:
            counts[key] = n + 1
        elif len(counts) < self.capacity:
            counts[key] = 1
        else:
            self.passes += 1
            self.counts = {k: v - 1 for k, v in counts.items() if v > 1}

    def top(self, n: int) -> list[dict[str, Any]]:
        named: dict[str, int] = {}
        for key, count in self.counts.items():
            text = names.wire_to_text(key) if isinstance(key, bytes) else key
            named[text] = named.get(text, 0) + count  # a name counted in both forms
        best = sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [{"name": key, "count": count} for key, count in best]


class QueryStats:
    """What the ``admin`` stages saw, for ``GET /v1/stats``; shared by every configuration.

    :meth:`count` runs once per query (``plugins.admin``): a few int and dict operations.
    """

    def __init__(self) -> None:
        self.total = 0
        self.rcodes: dict[int, int] = {}
        self.actions: dict[str, int] = {}
        self.blocked = TopK()
        self.alerted = TopK()
        self.clients = TopK()
        # per-second counts of the last RATE_WINDOW seconds: slot = second % RATE_WINDOW
        self.second = [0] * RATE_WINDOW
        self.queries = [0] * RATE_WINDOW
        self.blocks = [0] * RATE_WINDOW

    def count(
        self, rcode: int, client_ip: str, start: float, decision: Any, qname_wire: bytes
    ) -> None:
        """One answered query: its rcode, client, monotonic receive time, firewall decision."""
        self.total += 1
        self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
        self.clients.add(client_ip)
        now = int(start)
        slot = now % RATE_WINDOW
        if self.second[slot] != now:
            self.second[slot] = now
            self.queries[slot] = self.blocks[slot] = 0
        self.queries[slot] += 1
        if decision is not None:
            action = decision.action
            self.actions[action] = self.actions.get(action, 0) + 1
            # the wire name: its text is built only for the names reported
            if action == "BLOCK":
                self.blocks[slot] += 1
                self.blocked.add(decision.name or qname_wire)
            elif action == "ALERT":
                self.alerted.add(decision.name or qname_wire)

    def rate(self, counts: list[int], seconds: int, now: float | None = None) -> float:
        """Per second over the last ``seconds`` whole seconds before ``now`` (default: the
        monotonic clock of ``Request.start``); the current, partial second is left out."""
        now = int(time.monotonic() if now is None else now)
        total = sum(
            counts[s % RATE_WINDOW]
            for s in range(now - seconds, now)
            if self.second[s % RATE_WINDOW] == s
        )
        return round(total / seconds, 3)

    def to_json(self, top: int) -> dict[str, Any]:
        return {
            "queries": {
                "total": self.total,
                "rate_10s": self.rate(self.queries, 10),
                "rate_60s": self.rate(self.queries, 60),
                "blocked_rate_60s": self.rate(self.blocks, 60),
                "by_rcode": {_rcode_text(rc): n for rc, n in sorted(self.rcodes.items())},
            },
            "firewall_actions": dict(sorted(self.actions.items())),
            "top": {
                "blocked": self.blocked.top(top),
                "alerted": self.alerted.top(top),
                "clients": self.clients.top(top),
                "capacity": TOP_CAPACITY,
                "max_undercount": {
                    "blocked": self.blocked.passes,
                    "alerted": self.alerted.passes,
                    "clients": self.clients.passes,
                },
            },
        }


def _rcode_text(rcode: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return str(rcode)


# --- the site -------------------------------------------------------------------------------
Handler = Callable[["Runtime", web.BaseRequest, dict[str, str]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AdminSite:
    """The ``/v1`` API on one address (see the module docstring)."""

    token: str | None = field(default=None, repr=False)
    name: ClassVar[str] = "admin"
    prefix: ClassVar[str] = "/v1"

    async def handle(self, request: web.BaseRequest, runtime: Runtime) -> web.StreamResponse:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        request[AUTH_KEY] = self.token is not None
        request[IDENTITY_KEY] = (
            "anonymous" if self.token is None else f"token:{_digest(self.token).hex()[:12]}"
        )
        method = "GET" if request.method == "HEAD" else request.method
        allowed: list[str] = []
        for route_method, pattern, params, handler in ROUTES:
            m = pattern.fullmatch(request.path)
            if m is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            unknown = sorted(set(request.query) - params)
            if unknown:
                return json_error(400, f"unknown query parameter(s): {', '.join(unknown)}")
            try:
                return await handler(runtime, request, m.groupdict())
            except ApiError as err:
                return json_error(err.status, str(err), **err.extra)
            except Exception as exc:  # noqa: BLE001 - a bug answers 500, the listener lives on
                log.exception("admin_request_failed", path=request.path, error=repr(exc))
                return json_error(500, f"internal error: {exc!r}")
        if allowed:
            reply = json_error(405, f"method {request.method} not allowed on {request.path}")
            reply.headers["Allow"] = ", ".join(allowed)
            return reply
        return json_error(404, f"no such endpoint: {request.path}")

    def _authorize(self, request: web.BaseRequest) -> web.Response | None:
        if self.token is None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            reply = json_error(401, "authorization required: Authorization: Bearer TOKEN")
            reply.headers["WWW-Authenticate"] = 'Bearer realm="dnsfw"'
            return reply
        # digests of equal length: compare_digest then leaks nothing, not even the length
        if not hmac.compare_digest(_digest(given.strip()), _digest(self.token)):
            return json_error(403, "invalid token")
        return None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


# --- helpers --------------------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _int_param(request: web.BaseRequest, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
        raise ApiError(400, f"query parameter '{name}' must be an integer from {low} to {high}")
    return int(text)


async def _body(request: web.BaseRequest, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    data = bytearray()
    try:
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
    except web.RequestPayloadError as err:  # a body that does not decode (Content-Encoding)
        raise ApiError(400, f"request body unreadable: {err}") from None
    return bytes(data)


async def _json_body(request: web.BaseRequest, *, optional: bool = False) -> dict[str, Any]:
    raw = await _body(request, MAX_JSON_BODY)
    if not raw.strip() and optional:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON: {err}") from None
    except RecursionError:  # json.loads recurses per level: arrays nested thousands deep
        raise ApiError(400, "request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    return data


def _name(text: str) -> bytes:
    """A query name from the API (one trailing dot optional) in wire form; ApiError if bad."""
    if not text:
        raise ApiError(400, "invalid name: ''")  # the root is "."
    try:
        return names.text_to_wire(text)
    except ValueError as err:
        raise ApiError(400, f"invalid name: {err}") from None


def _refusal(err: Refused) -> ApiError:
    """A plugin's refusal as an API error."""
    return ApiError(err.status, str(err), **({"errors": list(err.errors)} if err.errors else {}))


def _services(runtime: Runtime) -> Services:
    return runtime.config.app.services


def _firewalls(runtime: Runtime) -> list[DomainLists]:
    return _services(runtime).get(DOMAIN_LISTS)


def _status_json(firewall: DomainLists, status: ListState) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "firewall": firewall.location}


def _find(runtime: Runtime, name: str) -> list[tuple[DomainLists, ListState]]:
    found = [(fw, st) for fw in _firewalls(runtime) for st in fw.lists() if st.name == name]
    if not found:
        raise ApiError(404, f"no domain list named '{name}'")
    return found


# --- lists ----------------------------------------------------------------------------------
async def openapi(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    return _json(document(auth=request[AUTH_KEY]))


async def list_lists(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    rows = [_status_json(fw, st) for fw in _firewalls(runtime) for st in fw.lists()]
    return _json({"lists": rows})


async def get_list(runtime: Runtime, request: web.BaseRequest, p: dict[str, str]) -> web.Response:
    offset = _int_param(request, "offset", 0, 0, 100_000_000)
    limit = _int_param(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    found = _find(runtime, p["name"])
    firewall, status = found[0]
    return _json(
        {
            "list": _status_json(firewall, status),
            "firewalls": [fw.location for fw, _ in found],
            "offset": offset,
            "limit": limit,
            "total": status.entries,
            "entries": firewall.entries(p["name"], offset, limit),
        }
    )


async def patch_list(runtime: Runtime, request: web.BaseRequest, p: dict[str, str]) -> web.Response:
    operation, domains = _list_edit(await _json_body(request), p["name"])
    if operation not in ("ADD", "REMOVE", "REPLACE"):
        raise ApiError(400, "'operation' must be ADD, REMOVE or REPLACE")
    if not isinstance(domains, list):
        raise ApiError(400, "'domains' must be an array of domain list entries")
    if len(domains) > MAX_PATCH_DOMAINS:
        raise ApiError(
            400,
            f"at most {MAX_PATCH_DOMAINS} domains per PATCH (as Route 53's "
            "UpdateFirewallDomains); PUT the whole list to replace it in bulk",
        )
    client, identity = _who(request)
    return await _edit(
        runtime,
        p["name"],
        operation,
        lambda fw: fw.edit(p["name"], operation, domains, client=client, identity=identity),
    )


# PATCH bodies in dnsfw's casing, or in Route 53's (UpdateFirewallDomains), never mixed
_EDIT_FIELDS = {"operation": "operation", "domains": "domains"}
_ROUTE53_EDIT_FIELDS = {
    "Operation": "operation",
    "Domains": "domains",
    "FirewallDomainListId": "id",
}


def _list_edit(body: dict[str, Any], name: str) -> tuple[Any, Any]:
    """(operation, domains) of a PATCH body; Route 53's ``FirewallDomainListId``, when
    given, must name the list of the URL."""
    fields = _ROUTE53_EDIT_FIELDS if set(body) & set(_ROUTE53_EDIT_FIELDS) else _EDIT_FIELDS
    unknown = sorted(set(body) - set(fields))
    if unknown:
        known = ", ".join(k for k in fields if k != "FirewallDomainListId")
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)} (expected {known})")
    edit = {fields[key]: value for key, value in body.items()}
    if "id" in edit and edit["id"] != name:
        raise ApiError(400, f"'FirewallDomainListId' is not the list of the URL ('{name}')")
    return edit.get("operation"), edit.get("domains")


async def put_list(runtime: Runtime, request: web.BaseRequest, p: dict[str, str]) -> web.Response:
    raw = await _body(request, MAX_TEXT_BODY)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"request body is not UTF-8 text: {err}") from None
    client, identity = _who(request)
    return await _edit(
        runtime,
        p["name"],
        "REPLACE",
        lambda fw: fw.replace(p["name"], text, client=client, identity=identity),
    )


def _who(request: web.BaseRequest) -> tuple[str, str]:
    """(client address, identity) of an edit, for its log line and the file's comment."""
    return request.remote or "unknown", request[IDENTITY_KEY]


async def _edit(
    runtime: Runtime, name: str, operation: str, apply: Callable[[DomainLists], Awaitable[int]]
) -> web.Response:
    started = time.monotonic()
    async with runtime.lock:  # not while a reload replaces the firewalls
        found = _find(runtime, name)
        sources = {(st.kind, st.source, st.format) for _, st in found}
        if len(sources) > 1:
            where = ", ".join(fw.location for fw, _ in found)
            raise ApiError(409, f"list '{name}' names different sources in {where}; edit those")
        (first, _), *others = found
        try:
            size = await apply(first)
            for firewall, _ in others:  # the same file: they read back what was written
                await firewall.refresh(name)
        except Refused as err:
            raise _refusal(err) from None
        status = next(st for st in first.lists() if st.name == name)
    return _json(
        {
            "operation": operation,
            "entries": size,
            "seconds": round(time.monotonic() - started, 3),
            "list": _status_json(first, status),
        }
    )


async def refresh_list(
    runtime: Runtime, request: web.BaseRequest, p: dict[str, str]
) -> web.Response:
    found = _find(runtime, p["name"])
    rows = []
    for firewall, _ in found:
        try:
            rows.append(_status_json(firewall, await firewall.refresh(p["name"])))
        except Refused as err:
            raise _refusal(err) from None
    return _json({"lists": rows})


# --- rules, explain -------------------------------------------------------------------------
async def rules(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    return _json({"firewalls": [fw.rules() for fw in _firewalls(runtime)]})


async def explain(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    name = request.query.get("name", "")
    if not name.strip():
        raise ApiError(400, "query parameter 'name' is required")
    type_text = request.query.get("type", "A")
    client = request.query.get("client", "127.0.0.1")
    try:
        qtype = int(dns.rdatatype.from_text(type_text.upper()))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise ApiError(400, f"unknown query type '{type_text}'") from None
    try:
        ipaddress.ip_address(client)
    except ValueError:
        raise ApiError(400, f"'client' is not an IP address: {client!r}") from None
    qname = _name(name)
    listeners = []
    every = _firewalls(runtime)
    for key, block in routes(runtime.config.listeners, qname, qtype):
        if block is None:
            listeners.append({"listener": str(key), "refused": True})
            continue
        firewalls = [fw for fw in every if any(fw is p for p in block.plugins)]
        listeners.append(
            {
                "listener": str(key),
                "refused": False,
                "block": f"{block.file}:{block.line}",
                "plugins": block.names,
                "firewalls": [
                    dataclasses.asdict(fw.explain(qname, qtype, client)) for fw in firewalls
                ],
            }
        )
    query = {
        "name": names.wire_to_text(qname),
        "type": dns.rdatatype.to_text(qtype),
        "client": client,
    }
    return _json({"query": query, "listeners": listeners})


# --- stats, reload, cache -------------------------------------------------------------------
async def stats(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    top = _int_param(request, "top", TOP_DEFAULT, 1, TOP_MAX)
    services = _services(runtime)
    seen = runtime.shared.get(STATS_KEY)
    server = runtime.server
    assert server is not None
    caches = [dataclasses.asdict(c.stats()) for c in services.get(CACHES)]
    upstreams = []
    for forward in services.get(UPSTREAMS):
        for up in forward.upstreams():
            row = dataclasses.asdict(up)
            latency = row.pop("avg_latency")
            row["avg_latency_ms"] = round(latency * 1000, 3) if latency is not None else None
            upstreams.append(row)
    matches: dict[tuple[str, str, str, str], int] = {}
    for counters in services.get(RULE_COUNTERS):
        for labels, n in counters.rule_matches():  # the same rule from several: added up
            matches[labels] = matches.get(labels, 0) + n
    by_rule = [
        {"group": g, "rule": r, "list": lst, "action": a, "matches": n}
        for (g, r, lst, a), n in matches.items()
    ]
    last = runtime.last_reload
    return _json(
        {
            "version": __version__,
            "build": build(),
            "started_at": runtime.started,
            "uptime_seconds": round(time.time() - runtime.started, 3),
            **(seen.to_json(top) if seen is not None else {"queries": None}),
            "firewall_rules": by_rule,
            "cache": {
                "hits": sum(c["success_hits"] + c["denial_hits"] for c in caches),
                "misses": sum(c["misses"] for c in caches),
                "entries": sum(c["success_entries"] + c["denial_entries"] for c in caches),
                "caches": caches,
            },
            "upstreams": upstreams,
            "server": {
                "listeners": [str(k) for k in server.listeners],
                "inflight": server.inflight,
                "malformed": server.malformed,
                "inflight_overflow": server.overflow,
                "tcp_rejected": server.tcp_rejected,
                "panics": server.panics,
            },
            "reloads": {
                "total": runtime.reloads,
                "failed": int(runtime.reload_failed.value),
                "last": last.to_json() if last is not None else None,
            },
        }
    )


async def reload(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    result = await runtime.reload("api")
    if result.ok:
        return _json(result.to_json())
    return json_error(400, result.error or "reload failed", reload=result.to_json())


async def flush(runtime: Runtime, request: web.BaseRequest, _: dict[str, str]) -> web.Response:
    body = await _json_body(request, optional=True)
    unknown = sorted(set(body) - {"name"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    if "name" in body and "name" in request.query:
        raise ApiError(400, "give the name in the body or in the query, not in both")
    name = body["name"] if "name" in body else request.query.get("name")
    if "name" in body and not isinstance(name, str):
        raise ApiError(400, "'name' must be a domain name")
    if name is not None:
        _name(name)
    caches = _services(runtime).get(CACHES)
    try:
        removed = sum(cache.flush(name) for cache in caches)
    except ValueError as err:
        raise ApiError(400, f"invalid name: {err}") from None
    return _json({"flushed": removed, "caches": len(caches), "name": name})


_LIST = r"/v1/lists/(?P<name>[^/]+)"
# method, path, the query parameters it takes (others are refused: a typo is not ignored)
ROUTES: list[tuple[str, re.Pattern[str], frozenset[str], Handler]] = [
    (method, re.compile(path), frozenset(params.split()), handler)
    for method, path, params, handler in (
        ("GET", r"/v1/openapi\.json", "", openapi),
        ("GET", r"/v1/lists", "", list_lists),
        ("GET", _LIST, "offset limit", get_list),
        ("PATCH", _LIST, "", patch_list),
        ("PUT", _LIST, "", put_list),
        ("POST", _LIST + "/refresh", "", refresh_list),
        ("GET", r"/v1/rules", "", rules),
        ("GET", r"/v1/explain", "name type client", explain),
        ("GET", r"/v1/stats", "top", stats),
        ("POST", r"/v1/reload", "", reload),
        ("POST", r"/v1/cache/flush", "name", flush),
    )
]
