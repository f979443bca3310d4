"""dnsfw explain - show how the firewall decides one query, without sending anything upstream.

    dnsfw explain -conf FILE NAME [TYPE] [--client IP]

Prints the server block the query is routed to, then for each firewall every rule considered
in evaluation order (skipped for its qtype or client networks, no match, match), the rule that
decides, its action, and the exact answer a client would get. CNAME/DNAME targets of the
upstream answer would also be inspected (``redirection inspect``); explain cannot know them
without asking upstream, so it names the rules whose matches would stop that inspection.
Exit status: 0, or 1 for a bad Corefile or arguments.

The walk is data (:func:`explain_firewall` -> :class:`FirewallExplanation`, and
:func:`describe_rules` for the effective evaluation order): this command prints it as text,
the admin API (``GET /v1/explain``, ``GET /v1/rules``) returns it as JSON.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import dns.rdatatype

from proxy.config import load
from proxy.corefile import CorefileError
from proxy.names import in_zones, text_to_wire, wire_suffixes, wire_to_text
from proxy.server import Router

from .lists import ListError
from .policy import ALLOW, BLOCK, NotLoaded, Rule, Step

if TYPE_CHECKING:
    from .plugin import Firewall


@dataclass(frozen=True)
class GroupView:
    name: str
    priority: int
    clients: tuple[str, ...]


@dataclass(frozen=True)
class DecisionView:
    action: str
    rule: str
    group: str
    list: str


@dataclass(frozen=True)
class FirewallExplanation:
    """How one firewall decides one query (see the module docstring)."""

    file: str
    line: int
    fail_open: bool
    zones: tuple[str, ...]
    groups: tuple[GroupView, ...]
    filtered: bool  # the name is inside the firewall's zones
    not_loaded: str | None = None  # a list the walk needs is not loaded: the fail mode answers
    steps: tuple[Step, ...] = ()
    decision: DecisionView | None = None
    answer: str | None = None  # what a client gets, when a rule decides
    note: str | None = None  # about CNAME/DNAME inspection


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dnsfw explain", description=__doc__.split("\n")[0])
    parser.add_argument("-conf", "--conf", dest="conf", default="Corefile")
    parser.add_argument("-dns.port", "--dns.port", dest="dns_port", type=int, default=53)
    parser.add_argument("name")
    parser.add_argument("type", nargs="?", default="A")
    parser.add_argument("--client", default="127.0.0.1", help="client address (default 127.0.0.1)")
    args = parser.parse_args(argv)
    try:
        qtype = int(dns.rdatatype.from_text(args.type.upper()))
        qname = text_to_wire(args.name)  # international names as list entries map them
    except dns.rdatatype.UnknownRdatatype:
        print(f"dnsfw explain: unknown query type '{args.type}'", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"dnsfw explain: {err}", file=sys.stderr)
        return 1
    try:
        config = load(args.conf, dns_port=args.dns_port, checking=True)
    except (CorefileError, ListError) as err:
        print(err, file=sys.stderr)
        return 1
    out = sys.stdout
    name_text = wire_to_text(qname)
    print(f"query: {name_text} {dns.rdatatype.to_text(qtype)} from {args.client}", file=out)
    for key, zones in config.listeners.items():
        block = Router(zones).route(qname, qtype)
        if block is None:
            print(f"{key}: REFUSED (no server block for this name)", file=out)
            continue
        print(f"{key}: server block {block.file}:{block.line} ({', '.join(block.names)})", file=out)
        firewalls = [p for p in block.plugins if p.name == "firewall"]
        if not firewalls:
            print("  no firewall in this block: the query resolves normally", file=out)
        for firewall in firewalls:
            render(explain_firewall(firewall, qname, qtype, args.client), out)
    return 0


def explain_firewall(
    firewall: Firewall, qname: bytes, qtype: int, client: str
) -> FirewallExplanation:
    """The walk of ``firewall`` for a query (wire name), as the query path would walk it."""
    spec = firewall.spec
    groups = tuple(
        GroupView(g.name, g.priority, tuple(str(c) for c in g.clients))
        for g in firewall.policy.groups
    )
    base: dict[str, Any] = {
        "file": spec.file,
        "line": spec.line,
        "fail_open": spec.fail_open,
        "zones": tuple(spec.zones),
        "groups": groups,
    }
    if not firewall.all_zones and not in_zones(qname, firewall.zones):
        return FirewallExplanation(**base, filtered=False)
    try:
        steps, rule = firewall.policy.explain(wire_suffixes(qname), qtype, client)
    except NotLoaded as err:
        return FirewallExplanation(**base, filtered=True, not_loaded=str(err))
    if rule is None:
        decision = answer = None
    else:
        decision = DecisionView(rule.action, rule.name, rule.group, rule.list)
        answer = describe_answer(firewall, rule, qtype)
    note = None if rule is not None and rule.action == BLOCK else _inspection_note(firewall, rule)
    return FirewallExplanation(
        **base,
        filtered=True,
        steps=tuple(steps),
        decision=decision,
        answer=answer,
        note=note,
    )


def render(explained: FirewallExplanation, out: IO[str]) -> None:
    """The text ``dnsfw explain`` prints for one firewall."""
    print(
        f"  firewall ({explained.file}:{explained.line}), "
        f"fail {'open' if explained.fail_open else 'closed'}",
        file=out,
    )
    if not explained.filtered:
        zones = ", ".join(explained.zones)
        print(f"    outside the firewall's zones {zones}: not filtered", file=out)
        return
    if explained.not_loaded is not None:
        print(
            f"    {explained.not_loaded}: answer SERVFAIL (fail closed)"
            if not explained.fail_open
            else f"    {explained.not_loaded}: resolved unfiltered (fail open)",
            file=out,
        )
        return
    groups = {g.name: g for g in explained.groups}
    group = None
    for step in explained.steps:
        if step.group != group:
            group = step.group
            g = groups[group]
            clients = f", clients {' '.join(g.clients)}" if g.clients else ""
            print(f"    group {g.name} (priority {g.priority}{clients})", file=out)
        print(
            f"      rule {step.rule:<20} {step.action:<5} list {step.list:<16} {step.outcome}",
            file=out,
        )
    decision = explained.decision
    if decision is None:
        print("    decision: no rule matches: the query resolves normally", file=out)
    else:
        print(
            f"    decision: {decision.action} by rule {decision.rule} "
            f"(group {decision.group}, list {decision.list})",
            file=out,
        )
        print(f"    answer: {explained.answer}", file=out)
    if explained.note is not None:
        print(f"    {explained.note}", file=out)


def describe_answer(firewall: Firewall, rule: Rule, qtype: int) -> str:
    spec = firewall.spec
    ede = (
        f"; EDE 15 (Blocked) \"blocked by dnsfw rule '{rule.name}' (group '{rule.group}', "
        f"list '{rule.list}')\" to EDNS clients"
        if spec.ede
        else ""
    )
    soa = f"SOA dnsfw.invalid. in authority, TTL {spec.block_ttl}"
    if rule.action != BLOCK:
        note = " (logged as ALERT)" if rule.action == "ALERT" else ""
        return f"the upstream's answer, unchanged{note}"
    response = rule.response
    if response.kind == "nxdomain":
        return f"NXDOMAIN, no answer; {soa}{ede}"
    if response.kind == "override" and response.target_ip is not None:
        family = "A" if ":" not in response.target_ip else "AAAA"
        if dns.rdatatype.to_text(qtype) == family:
            return f"NOERROR, {family} {response.target_ip} (TTL {response.ttl}){ede}"
        return f"NOERROR, no answer (NODATA: the sinkhole is {family}); {soa}{ede}"
    if response.kind == "override":
        return (
            f"NOERROR, CNAME {response.target_name} (TTL {response.ttl}) followed by the records "
            f"of {response.target_name} resolved upstream{ede}"
        )
    return f"NOERROR, no answer (NODATA); {soa}{ede}"


def _inspection_note(firewall: Firewall, rule: Rule | None) -> str | None:
    if rule is not None and rule.trust:
        return "redirection trust: CNAME/DNAME targets in the answer are not inspected"
    if firewall.policy.inspects:
        return (
            "redirection inspect: CNAME/DNAME targets in the upstream answer are evaluated too "
            "(explain does not query upstream; run explain on a target name to see its walk)"
        )
    if rule is None or rule.action == ALLOW:
        return "no BLOCK or ALERT rule: CNAME/DNAME targets need no inspection"
    return None


def describe_rules(firewall: Firewall) -> dict[str, Any]:
    """The effective evaluation order of a firewall: groups and rules in the order they are
    walked, with each rule's list, action, qtype, redirection and block answer."""
    spec = firewall.spec
    return {
        "file": spec.file,
        "line": spec.line,
        "zones": list(spec.zones),
        "fail": "open" if spec.fail_open else "closed",
        "ede": spec.ede,
        "block_ttl": spec.block_ttl,
        "inspects_redirections": firewall.policy.inspects,
        "groups": [
            {
                "name": group.name,
                "priority": group.priority,
                "clients": [str(c) for c in group.clients],
                "rules": [
                    _describe_rule(rule) for rule in sorted(group.rules, key=lambda r: r.priority)
                ],
            }
            for group in firewall.policy.groups
        ],
    }


def _describe_rule(rule: Rule) -> dict[str, Any]:
    response = rule.response
    block = None
    if rule.action == BLOCK:
        block = {
            "kind": response.kind,
            "target": response.target_ip or response.target_name,
            "ttl": response.ttl if response.kind == "override" else None,
        }
    return {
        "name": rule.name,
        "priority": rule.priority,
        "action": rule.action,
        "list": rule.list,
        "qtype": dns.rdatatype.to_text(rule.qtype) if rule.qtype is not None else None,
        "redirection": "trust" if rule.trust else "inspect",
        "response": block,
    }
