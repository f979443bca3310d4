"""acl - allows, blocks, filters or drops queries by client address and query type, as
CoreDNS's ``acl``.

Syntax::

    acl [ZONES...] {
        ACTION [type QTYPE...] [net SOURCE...]
    }

* **ZONES** the rule applies to (default: the server block's zones).
* **ACTION**: ``allow``, ``block`` (REFUSED, with an OPT record of payload 4096, DO set, and
  the Extended DNS Error 15 "Blocked"), ``filter`` (an empty NOERROR answer, the same OPT with
  EDE 17 "Filtered") or ``drop`` (no answer at all). A query no line matches is allowed.
* **QTYPE**: record types (``A``, ``AAAA``, ...; ``*`` every type, the default).
* **SOURCE**: client addresses, CIDR or a single address (``*`` every address, the default).

The lines of a block are tried in order and the first that matches the query's type and
client decides. The plugin may appear several times per server block: each ``acl`` whose
zones hold the query name decides in Corefile order, and the first that does not let the
query through (``allow`` stops there, letting it go on) answers it. The client is the source
address of the query's packet (a NAT or a forwarding resolver in front hides the real one);
an address that does not parse is blocked.

Errors are CoreDNS's: ``unexpected token "X"; expect 'allow', 'block', 'filter' or 'drop'``,
``unexpected token "X"; expect 'type | net'``, ``no token specified in "type" section``,
``unexpected token "X"; expect legal QTYPE``, ``illegal CIDR notation "X"``.

Metrics (CoreDNS's): ``coredns_acl_blocked_requests_total{server,zone,view}``,
``coredns_acl_filtered_requests_total{server,zone,view}``,
``coredns_acl_dropped_requests_total{server,zone,view}`` and
``coredns_acl_allowed_requests_total{server,view}``.

Replays (:mod:`proxy.replay`): the decision depends on the client, and replays are keyed by
the query's bytes for every client, so it is a replay :class:`~proxy.replay.Gate`, made once
per listener, query type and set of rules the name falls under: ``serve`` asks it with
``req.admit`` and every replay asks it again for its own client (an allowed query is counted
there). A client it does not let through is not answered by the replay: that query runs the
chain, where ``acl`` answers it (block, filter, drop) and counts it. Cost on a replay: one dict
look-up of the client's address (decisions are kept per address, up to 65,536 addresses).

Examples::

    . {
        acl {
            block type A net 192.168.0.0/16
        }
    }

    . {
        acl {
            filter type A net 192.168.0.0/16
        }
    }

    . {
        acl {
            allow net 192.168.1.0/24
            block net 192.168.0.0/16
        }
    }

    . {
        acl {
            allow net 192.168.0.0/24 192.168.1.0/24
            block
        }
    }

    example.org {
        acl a.example.org {
            block net 192.168.1.0/24
        }
    }

    . {
        acl {
            drop net 192.0.2.0/24
        }
    }
"""

from __future__ import annotations

import ipaddress
import json
import weakref
from typing import Any

import dns.rdatatype

from proxy import wire
from proxy.config import SetupContext
from proxy.corefile import Directive
from proxy.metrics import Child, Metric
from proxy.names import longest_zone, text_to_wire
from proxy.pipeline import Handler, Plugin
from proxy.replay import TAKES_PART, Gate
from proxy.request import Request, Response

ALLOW, BLOCK, FILTER, DROP = "allow", "block", "filter", "drop"
ANY_TYPE = -1
EDE_BLOCKED = 15
EDE_FILTERED = 17
MAX_REMEMBERED = 65536  # client addresses whose decision a gate keeps

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALL_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)


class Policy:
    """One line of an ``acl`` block."""

    __slots__ = ("action", "qtypes", "networks")

    def __init__(self, action: str, qtypes: frozenset[int], networks: tuple[Network, ...]):
        self.action = action
        self.qtypes = qtypes
        self.networks = networks


class Rule:
    """One ``acl`` directive: its zones (wire -> text) and lines."""

    __slots__ = ("zones", "policies")

    def __init__(self, zones: dict[bytes, str], policies: list[Policy]) -> None:
        self.zones = zones
        self.policies = policies


# (zone, the lines of one rule that can match the query's type), for the rules the name is in
Applicable = tuple[tuple[str, tuple[Policy, ...]], ...]


class Verdict(Gate):
    """The decision of the ``acl`` rules that apply to one query type and name set, per client:
    True (and counted as allowed) when the query may go on."""

    __slots__ = ("applicable", "allowed", "decided")

    def __init__(self, applicable: Applicable, allowed: Child) -> None:
        self.applicable = applicable
        self.allowed = allowed
        self.decided: dict[str, tuple[str, str] | None] = {}  # address -> (action, zone)

    def __call__(self, client: Any, now: float) -> bool:
        host = client[0]
        try:
            decision = self.decided[host]
        except KeyError:
            decision = self.decide(host)
        if decision is None:
            self.allowed.value += 1
            return True
        return False

    def decide(self, host: str) -> tuple[str, str] | None:
        """(action, zone) for a query from ``host`` that is not let through, else None."""
        decision = self._decide(host)
        if len(self.decided) >= MAX_REMEMBERED:
            self.decided.clear()
        self.decided[host] = decision
        return decision

    def _decide(self, host: str) -> tuple[str, str] | None:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            zone = self.applicable[0][0] if self.applicable else "."
            return BLOCK, zone  # as CoreDNS: a source address that does not parse is blocked
        for zone, policies in self.applicable:
            for policy in policies:
                if any(address in network for network in policy.networks):
                    if policy.action == ALLOW:
                        return None
                    return policy.action, zone
        return None


class Acl(Plugin):
    name = "acl"
    replays = TAKES_PART  # as a Gate: replays ask it for each client (see the docstring)

    def __init__(self, rules: list[Rule], families: dict[str, Metric]) -> None:
        self.rules = rules
        self.families = families
        self.gates: dict[tuple[str, int, tuple[str, ...]], Verdict] = {}
        self.children: dict[tuple[str, str, str], Child] = {}
        self.block: object = None  # the BlockContext it was set up for (setup)

    async def serve(self, req: Request, next: Handler) -> Response:
        gate = self._gate(req)
        if req.admit(gate):
            return await next(req)
        decision = gate.decided.get(req.client[0]) or gate.decide(req.client[0])
        assert decision is not None
        action, zone = decision
        self._child(action, req.server, zone).value += 1
        if action == DROP:
            return req.drop()
        rcode, code = (
            (wire.REFUSED, EDE_BLOCKED) if action == BLOCK else (wire.NOERROR, EDE_FILTERED)
        )
        opt = wire.opt_record(4096, True, wire.ede_option(code))
        return Response(wire.build_reply(req.wire, req.qend, rcode, opt=opt), rcode, "acl")

    def _gate(self, req: Request) -> Verdict:
        zones = tuple(
            rule.zones[zone] if (zone := longest_zone(req.qname_wire, rule.zones)) else ""
            for rule in self.rules
        )
        key = (req.server, req.qtype, zones)
        gate = self.gates.get(key)
        if gate is None:
            applicable = tuple(
                (zone, tuple(p for p in rule.policies if _types_match(p, req.qtype)))
                for zone, rule in zip(zones, self.rules, strict=True)
                if zone
            )
            allowed = self.families[ALLOW].labels(req.server, "")
            if len(self.gates) >= MAX_REMEMBERED:
                self.gates.clear()
            gate = self.gates[key] = Verdict(applicable, allowed)  # type: ignore[arg-type]
        return gate

    def _child(self, action: str, server: str, zone: str) -> Child:
        key = (action, server, zone)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.families[action].labels(server, zone, "")  # type: ignore[assignment]
        return child  # type: ignore[return-value]


def _types_match(policy: Policy, qtype: int) -> bool:
    return ANY_TYPE in policy.qtypes or qtype in policy.qtypes


# --- setup -----------------------------------------------------------------------------------


def setup(directive: Directive, ctx: SetupContext) -> Acl | None:
    """The block's first ``acl`` is its stage; a later one adds its rule to it (CoreDNS runs
    all of a block's ``acl`` directives as one plugin: an ``allow`` ends the walk)."""
    zones = {text_to_wire(zone): zone for zone in ctx.zones_from(directive.args)}
    rule = Rule(zones, [_policy(line) for line in directive.block or ()])
    first = _BY_BLOCK.get(id(ctx.block))
    if first is not None and first.block is ctx.block:
        first.rules.append(rule)
        return None
    acl = Acl([rule], _families(ctx))
    acl.block = ctx.block
    _BY_BLOCK[id(ctx.block)] = acl
    return acl


# each block's stage while the block is set up (held weakly: a finished setup lets go)
_BY_BLOCK: weakref.WeakValueDictionary[int, Acl] = weakref.WeakValueDictionary()


def _policy(line: Directive) -> Policy:
    action = line.name.text.lower()
    if action not in (ALLOW, BLOCK, FILTER, DROP):
        raise line.error(
            f"unexpected token {_q(line.name.text)}; expect 'allow', 'block', 'filter' or 'drop'"
        )
    qtypes: set[int] = set()
    networks: list[Network] = []
    has_type = has_net = False
    tokens = line.values
    while tokens:
        if tokens[0].lower() not in ("type", "net"):
            raise line.error(f"unexpected token {_q(tokens[0])}; expect 'type | net'")
        section = tokens[0].lower()
        i = 1
        while i < len(tokens) and tokens[i].lower() not in ("type", "net"):
            i += 1
        values, tokens = tokens[1:i], tokens[i:]
        if not values:
            raise line.error(f"no token specified in {_q(section)} section")
        if section == "type":
            has_type = True
            for value in values:
                if value == "*":
                    qtypes.add(ANY_TYPE)
                    break
                qtypes.add(_qtype(line, value))
        else:
            has_net = True
            for value in values:
                if value == "*":
                    networks = list(ALL_NETWORKS)
                    break
                networks.append(_network(line, value))
    return Policy(
        action,
        frozenset(qtypes) if has_type else frozenset({ANY_TYPE}),
        tuple(networks) if has_net else ALL_NETWORKS,
    )


def _qtype(line: Directive, text: str) -> int:
    """A type as miekg/dns's StringToType names it (upper case mnemonics only)."""
    try:
        if text != text.upper() or text.startswith("TYPE"):
            raise ValueError(text)
        return int(dns.rdatatype.from_text(text))
    except (ValueError, dns.rdatatype.UnknownRdatatype):
        raise line.error(f"unexpected token {_q(text)}; expect legal QTYPE") from None


def _network(line: Directive, text: str) -> Network:
    if "/" not in text:  # a single address: /32 or /128, as CoreDNS's normalize
        text += "/128" if ":" in text else "/32"
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise line.error(f"illegal CIDR notation {_q(text)}") from None


def _q(text: str) -> str:
    """Go's %q for the plain texts of a Corefile."""
    return json.dumps(text, ensure_ascii=False)


def _families(ctx: SetupContext) -> dict[str, Metric]:
    metrics = ctx.app.metrics
    zoned = ("server", "zone", "view")
    return {
        BLOCK: metrics.counter(
            "coredns_acl_blocked_requests_total", "Counter of DNS requests being blocked.", zoned
        ),
        FILTER: metrics.counter(
            "coredns_acl_filtered_requests_total", "Counter of DNS requests being filtered.", zoned
        ),
        DROP: metrics.counter(
            "coredns_acl_dropped_requests_total", "Counter of DNS requests being dropped.", zoned
        ),
        ALLOW: metrics.counter(
            "coredns_acl_allowed_requests_total",
            "Counter of DNS requests being allowed.",
            ("server", "view"),
        ),
    }
