"""How a firewall decides one query, as data: the rule walk and the effective rule order.

:func:`explain_walk` -> :class:`FirewallExplanation` is every rule considered in evaluation
order (skipped for its qtype or client networks, no match, match), the rule that decides, its
action and the exact answer a client would get; :func:`describe_rules` is the effective
evaluation order. ``Firewall.explain()`` and ``Firewall.rules()`` return them: the admin API
(``GET /v1/explain``, ``GET /v1/rules``) as JSON, ``dnsfw explain`` (:mod:`commands.explain`)
as text. Nothing here reads a list's source or sends a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.rdatatype

from proxy.names import wire_suffixes

from .config import FirewallSpec
from .policy import ALLOW, BLOCK, NotLoaded, Policy, Rule, Step


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


def explain_walk(
    spec: FirewallSpec, policy: Policy, qname: bytes, qtype: int, client: str, *, filtered: bool
) -> FirewallExplanation:
    """The walk of a firewall (``spec``, ``policy``) for a query (wire name), as the query path
    would walk it; ``filtered``: the name is inside the firewall's zones."""
    groups = tuple(
        GroupView(g.name, g.priority, tuple(str(c) for c in g.clients)) for g in policy.groups
    )
    base: dict[str, Any] = {
        "file": spec.file,
        "line": spec.line,
        "fail_open": spec.fail_open,
        "zones": tuple(spec.zones),
        "groups": groups,
    }
    if not filtered:
        return FirewallExplanation(**base, filtered=False)
    try:
        steps, rule = policy.explain(wire_suffixes(qname), qtype, client)
    except NotLoaded as err:
        return FirewallExplanation(**base, filtered=True, not_loaded=str(err))
    if rule is None:
        decision = answer = None
    else:
        decision = DecisionView(rule.action, rule.name, rule.group, rule.list)
        answer = describe_answer(spec, rule, qtype)
    note = None if rule is not None and rule.action == BLOCK else _inspection_note(policy, rule)
    return FirewallExplanation(
        **base,
        filtered=True,
        steps=tuple(steps),
        decision=decision,
        answer=answer,
        note=note,
    )


def describe_answer(spec: FirewallSpec, rule: Rule, qtype: int) -> str:
    """What a client gets when ``rule`` decides a query of type ``qtype``, in words."""
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


def _inspection_note(policy: Policy, rule: Rule | None) -> str | None:
    if rule is not None and rule.trust:
        return "redirection trust: CNAME/DNAME targets in the answer are not inspected"
    if policy.inspects:
        return (
            "redirection inspect: CNAME/DNAME targets in the upstream answer are evaluated too "
            "(explain does not query upstream; run explain on a target name to see its walk)"
        )
    if rule is None or rule.action == ALLOW:
        return "no BLOCK or ALERT rule: CNAME/DNAME targets need no inspection"
    return None


def describe_rules(spec: FirewallSpec, policy: Policy) -> dict[str, Any]:
    """The effective evaluation order of a firewall: groups and rules in the order they are
    walked, with each rule's list, action, qtype, redirection and block answer."""
    return {
        "file": spec.file,
        "line": spec.line,
        "zones": list(spec.zones),
        "fail": "open" if spec.fail_open else "closed",
        "ede": spec.ede,
        "block_ttl": spec.block_ttl,
        "inspects_redirections": policy.inspects,
        "groups": [
            {
                "name": group.name,
                "priority": group.priority,
                "clients": [str(c) for c in group.clients],
                "rules": [
                    _describe_rule(rule) for rule in sorted(group.rules, key=lambda r: r.priority)
                ],
            }
            for group in policy.groups
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
