"""How a firewall decides one query, as data: the verdict, the rule walk and the rule order.

:func:`explanation` -> :class:`FirewallExplanation` shows the :class:`~.policy.Verdict` the
query path acts on (``Firewall.verdict``), every rule its walk considered in evaluation order
(skipped for its qtype or client networks, no match, match) and, for a BLOCK, the reply a
client gets, rendered from the bytes the firewall's own reply builder makes
(:func:`describe_reply`); :func:`describe_rules` is the effective evaluation order.
Given the CNAME/DNAME targets of the answer (``dnsfw explain --resolve`` asks the upstream for
them), the verdict is the whole one, chain included, with the walk of the target that decided;
without them, the note says when the verdict still depends on the answer.
``Firewall.explain()`` and ``Firewall.rules()`` return them: the admin API
(``GET /v1/explain``, ``GET /v1/rules``) as JSON, ``dnsfw explain`` (:mod:`commands.explain`)
as text. Nothing here reads a list's source or sends a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype

from proxy.names import wire_to_text

from .config import FirewallSpec
from .policy import ALERT, ALLOW, BLOCK, Policy, Rule, Step, Verdict


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
    target: str = ""  # the CNAME/DNAME target of the answer the rule matched ("": the name)


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
    chain: tuple[str, ...] | None = None  # the answer's CNAME/DNAME targets (None: not known)
    target_steps: tuple[Step, ...] = ()  # the walk of the target that decided, if one did


def explanation(
    spec: FirewallSpec,
    policy: Policy,
    verdict: Verdict,
    steps: list[Step],
    blocked_reply: str | None = None,
    *,
    chain: Sequence[bytes] | None = None,
    target_steps: Sequence[Step] = (),
) -> FirewallExplanation:
    """The explanation of ``verdict``: ``steps`` is the walk that made it on the query name,
    ``target_steps`` the walk on the CNAME/DNAME target that decided (of ``chain``, the
    answer's targets when known), ``blocked_reply`` the reply a BLOCK sends
    (:func:`describe_reply`)."""
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
    if not verdict.inside:
        return FirewallExplanation(**base, filtered=False)
    if verdict.not_loaded is not None:
        error = f"domain list '{verdict.not_loaded}' is not loaded"
        return FirewallExplanation(**base, filtered=True, not_loaded=error)
    rule = verdict.rule
    if rule is None:
        decision = answer = None
    else:
        target = wire_to_text(verdict.target) if verdict.target else ""
        decision = DecisionView(rule.action, rule.name, rule.group, rule.list, target)
        answer = blocked_reply if rule.action == BLOCK else _passed(rule)
    return FirewallExplanation(
        **base,
        filtered=True,
        steps=tuple(steps),
        decision=decision,
        answer=answer,
        note=_inspection_note(verdict, chain),
        chain=None if chain is None else tuple(wire_to_text(t) for t in chain),
        target_steps=tuple(target_steps),
    )


def _passed(rule: Rule) -> str:
    note = " (logged as ALERT)" if rule.action == ALERT else ""
    return f"the upstream's answer, unchanged{note}"


def describe_reply(data: bytes, resolved_target: str | None = None) -> str:
    """A reply the firewall built (wire), in words: rcode, answers, the SOA in authority and
    the Extended DNS Error; ``resolved_target``: the answer goes on with that name's records,
    resolved upstream (an override with a CNAME)."""
    msg = dns.message.from_wire(data)
    rcode = msg.rcode()
    records = [
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()} (TTL {rrset.ttl})"
        for rrset in msg.answer
        for rdata in rrset
    ]
    if records:
        text = f"{dns.rcode.to_text(rcode)}, {', '.join(records)}"
        if resolved_target is not None:
            text += f" followed by the records of {resolved_target} resolved upstream"
    else:
        nodata = " (NODATA)" if rcode == dns.rcode.NOERROR else ""
        text = f"{dns.rcode.to_text(rcode)}, no answer{nodata}"
    for rrset in msg.authority:
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.SOA:
                text += f"; SOA {rdata.mname} in authority, TTL {rrset.ttl}"
    for option in msg.options:
        if isinstance(option, dns.edns.EDEOption):
            name = option.code.name.replace("_", " ").title()
            text += f'; EDE {int(option.code)} ({name}) "{option.text}" to EDNS clients'
    return text


def _inspection_note(verdict: Verdict, chain: Sequence[bytes] | None) -> str | None:
    rule = verdict.rule
    if verdict.target or (rule is not None and rule.action == BLOCK):
        return None
    if rule is not None and rule.trust:
        return "redirection trust: CNAME/DNAME targets in the answer are not inspected"
    if verdict.inspects_chain and chain is None:
        return (
            "redirection inspect: the decision depends on the answer, whose CNAME/DNAME "
            "targets are evaluated too (explain --resolve asks the upstream and decides on them)"
        )
    if verdict.inspects_chain:
        if not chain:
            return "redirection inspect: the answer has no CNAME/DNAME target"
        return "redirection inspect: no CNAME/DNAME target of the answer changes the decision"
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
