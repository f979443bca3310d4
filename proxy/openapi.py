"""The OpenAPI 3.0 document of the admin API (served at ``GET /v1/openapi.json``).

It is the API's contract: ``tests/test_admin_schema.py`` runs schemathesis against a live
dnsfw with it. Change it together with :mod:`proxy.admin`.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .http import MAX_FIELD, MAX_HEADERS, MAX_LINE

NAME_PATTERN = "^[A-Za-z0-9_-]+$"  # firewall list names (plugins/firewall/config.py)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request: malformed HTTP, parameters or body (the message says why; invalid "
        "entries are listed in `errors`)",
        401: "No `Authorization: Bearer TOKEN` header",
        403: "Wrong token",
        404: "No such list or endpoint",
        405: "Method not allowed",
        409: "The list cannot be edited (url, inline or hosts/adblock list) or is ambiguous",
        413: "Request body too large",
        414: f"Request line longer than {MAX_LINE} bytes",
        417: "An `Expect` header other than `100-continue`",
        431: f"A header longer than {MAX_FIELD} bytes, or more than {MAX_HEADERS} headers",
        502: "Re-reading the list's source failed; the old list keeps serving",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


# what any request may get from the HTTP listener itself (proxy/http.py), before the API
HTTP_ERRORS = (400, 414, 417, 431)

_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_NULLABLE_STRING = {"type": "string", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
            "reload": _ref("ReloadResult"),
        },
    },
    "ListStatus": {
        "type": "object",
        "required": ["name", "kind", "source", "format", "entries", "status", "editable"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["file", "url", "domains"]},
            "source": {"type": "string"},
            "format": {"type": "string", "enum": ["route53", "hosts", "adblock"]},
            "entries": {"type": "integer", "minimum": 0},
            "status": {"type": "string", "enum": ["loading", "loaded", "failed"]},
            "loaded_at": _NULLABLE_NUMBER,
            "load_seconds": _NULLABLE_NUMBER,
            "error": _NULLABLE_STRING,
            "skipped": {"type": "integer"},
            "failures": {"type": "integer"},
            "consecutive_failures": {
                "type": "integer",
                "description": "url lists: failed downloads since the last good one",
            },
            "next_download_at": {
                **_NULLABLE_NUMBER,
                "description": "url lists: when the next download is due (Unix time): a "
                "retry with backoff after a failure, else the next refresh",
            },
            "editable": {"type": "boolean"},
            "editable_reason": {
                **_NULLABLE_STRING,
                "description": "why the admin API cannot edit it (an edit answers 409 with it)",
            },
            "firewall": {"type": "string", "description": "FILE:LINE of the firewall"},
        },
    },
    "ListPage": {
        "type": "object",
        "required": ["list", "offset", "limit", "total", "entries"],
        "properties": {
            "list": _ref("ListStatus"),
            "firewalls": {"type": "array", "items": {"type": "string"}},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "total": {"type": "integer"},
            "entries": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ListEdit": {"oneOf": [_ref("ListEditFields"), _ref("UpdateFirewallDomains")]},
    "ListEditFields": {
        "type": "object",
        "additionalProperties": False,
        "required": ["operation", "domains"],
        "properties": {"operation": _ref("Operation"), "domains": _ref("Domains")},
    },
    "UpdateFirewallDomains": {
        "type": "object",
        "description": "the body of Route 53's UpdateFirewallDomains",
        "additionalProperties": False,
        "required": ["Operation", "Domains"],
        "properties": {
            "Operation": _ref("Operation"),
            "Domains": _ref("Domains"),
            "FirewallDomainListId": {"type": "string", "description": "the list's name"},
        },
    },
    "Operation": {"type": "string", "enum": ["ADD", "REMOVE", "REPLACE"]},
    "Domains": {
        "type": "array",
        "maxItems": 1000,
        "items": {"type": "string"},
        "description": "route53 entries: example.com, *.example.com, *",
    },
    "EditResult": {
        "type": "object",
        "required": ["operation", "entries", "list"],
        "properties": {
            "operation": {"type": "string"},
            "entries": {"type": "integer"},
            "seconds": {"type": "number"},
            "list": _ref("ListStatus"),
        },
    },
    "Lists": {
        "type": "object",
        "required": ["lists"],
        "properties": {"lists": {"type": "array", "items": _ref("ListStatus")}},
    },
    "Rules": {
        "type": "object",
        "required": ["firewalls"],
        "properties": {
            "firewalls": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string"},
                        "line": {"type": "integer"},
                        "zones": {"type": "array", "items": {"type": "string"}},
                        "fail": {"type": "string", "enum": ["open", "closed"]},
                        "groups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "priority": {"type": "integer"},
                                    "clients": {"type": "array", "items": {"type": "string"}},
                                    "rules": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                        },
                    },
                },
            }
        },
    },
    "Explanation": {
        "type": "object",
        "required": ["query", "listeners"],
        "properties": {
            "query": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "client": {"type": "string"},
                },
            },
            "listeners": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["listener", "refused"],
                    "properties": {
                        "listener": {"type": "string"},
                        "refused": {"type": "boolean"},
                        "block": {"type": "string"},
                        "plugins": {"type": "array", "items": {"type": "string"}},
                        "firewalls": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
    "Stats": {
        "type": "object",
        "required": ["uptime_seconds", "cache", "upstreams", "server", "reloads"],
        "properties": {
            "version": {"type": "string"},
            "build": {"type": "string", "description": "git describe of the artefact's commit"},
            "started_at": {"type": "number"},
            "uptime_seconds": {"type": "number"},
            "queries": {"type": "object", "nullable": True},
            "firewall_actions": {"type": "object"},
            "firewall_rules": {"type": "array", "items": {"type": "object"}},
            "top": {"type": "object"},
            "cache": {"type": "object"},
            "upstreams": {"type": "array", "items": {"type": "object"}},
            "server": {"type": "object"},
            "reloads": {"type": "object"},
        },
    },
    "Change": {
        "type": "object",
        "nullable": True,
        "properties": {
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
            "kept": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ReloadResult": {
        "type": "object",
        "required": ["ok", "reason", "at", "seconds"],
        "properties": {
            "ok": {"type": "boolean"},
            "reason": {"type": "string"},
            "at": {"type": "number"},
            "seconds": {"type": "number"},
            "error": _NULLABLE_STRING,
            "changed": {"type": "boolean"},
            "sha512": {"type": "string"},
            "listeners": _ref("Change"),
            "http": _ref("Change"),
        },
    },
    "Flush": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 253}},
    },
    "FlushResult": {
        "type": "object",
        "required": ["flushed", "caches"],
        "properties": {
            "flushed": {"type": "integer"},
            "caches": {"type": "integer"},
            "name": _NULLABLE_STRING,
        },
    },
}

_LIST_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 64},
}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


PATHS: dict[str, Any] = {
    "/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
        }
    },
    "/v1/lists": {
        "get": {
            "operationId": "listLists",
            "summary": "Every domain list of every firewall, with its status",
            "responses": {"200": _json(_ref("Lists"), "The lists")},
        }
    },
    "/v1/lists/{name}": {
        "parameters": [_LIST_NAME],
        "get": {
            "operationId": "getList",
            "summary": "A list's status and a page of its entries (sorted: *, *.name, names)",
            "parameters": [
                _query(
                    "offset", {"type": "integer", "minimum": 0, "maximum": 100000000}, "first entry"
                ),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 10000},
                    "page size (default 1000)",
                ),
            ],  # fmt: skip
            "responses": {"200": _json(_ref("ListPage"), "The list"), **_errors(400, 404)},
        },
        "patch": {
            "operationId": "updateList",
            "summary": "ADD, REMOVE or REPLACE entries (at most 1000; PUT replaces in bulk)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ListEdit")}},
            },
            "responses": {
                "200": _json(_ref("EditResult"), "Written to the list's file and in force"),
                **_errors(400, 404, 409, 413),
            },
        },
        "put": {
            "operationId": "replaceList",
            "summary": "REPLACE the list with a text body, one route53 entry per line",
            "requestBody": {
                "required": True,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "responses": {
                "200": _json(_ref("EditResult"), "Written to the list's file and in force"),
                **_errors(400, 404, 409, 413),
            },
        },
    },
    "/v1/lists/{name}/refresh": {
        "parameters": [_LIST_NAME],
        "post": {
            "operationId": "refreshList",
            "summary": "Re-read the list's source (its file, or its URL)",
            "responses": {
                "200": _json(_ref("Lists"), "The list as loaded now"),
                **_errors(404, 409, 502),
            },
        },
    },
    "/v1/rules": {
        "get": {
            "operationId": "rules",
            "summary": "The effective evaluation order: groups, rules, lists, actions",
            "responses": {"200": _json(_ref("Rules"), "Each firewall's walk")},
        }
    },
    "/v1/explain": {
        "get": {
            "operationId": "explain",
            "summary": "How each listener and firewall would decide one query",
            "parameters": [
                _query(
                    "name", {"type": "string", "minLength": 1, "maxLength": 253}, "query name", True
                ),
                _query(
                    "type", {"type": "string", "default": "A"}, "query type (A, AAAA, TYPE65, ...)"
                ),
                _query("client", {"type": "string", "default": "127.0.0.1"}, "client IP address"),
            ],  # fmt: skip
            "responses": {"200": _json(_ref("Explanation"), "The walk"), **_errors(400)},
        }
    },
    "/v1/stats": {
        "get": {
            "operationId": "stats",
            "summary": "Totals, rates, rcodes, firewall actions, cache, top names, upstreams",
            "parameters": [
                _query("top", {"type": "integer", "minimum": 1, "maximum": 100}, "top-k size (10)")
            ],
            "responses": {"200": _json(_ref("Stats"), "Statistics"), **_errors(400)},
        }
    },
    "/v1/reload": {
        "post": {
            "operationId": "reload",
            "summary": "Reload the Corefile (a failure keeps the running configuration)",
            "responses": {
                "200": _json(_ref("ReloadResult"), "Reloaded; what changed"),
                **_errors(400),
            },
        }
    },
    "/v1/cache/flush": {
        "post": {
            "operationId": "flushCache",
            "summary": "Remove every cache entry, or every entry of one name",
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("Flush")}},
            },
            "parameters": [
                _query(
                    "name", {"type": "string", "minLength": 1, "maxLength": 253}, "or in the body"
                )
            ],
            "responses": {
                "200": _json(_ref("FlushResult"), "Entries removed"),
                **_errors(400, 413),
            },
        }
    },
}


def _with(responses: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``responses`` and those of ``extra`` it does not describe itself."""
    return {**responses, **{code: r for code, r in extra.items() if code not in responses}}


def document(auth: bool = True) -> dict[str, Any]:
    """The OpenAPI document; ``auth``: the listener has a ``token_file``."""
    extra = _errors(*HTTP_ERRORS, *((401, 403) if auth else ()))
    paths = {
        path: {
            key: op if key == "parameters" else {**op, "responses": _with(op["responses"], extra)}
            for key, op in item.items()
        }
        for path, item in PATHS.items()
    }
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "dnsfw admin API",
            "version": __version__,
            "description": "Domain lists, rules, explain, statistics, reload and cache of a "
            "running dnsfw. See proxy/admin.py.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
