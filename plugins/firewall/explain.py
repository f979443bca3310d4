"""dnsfw explain - show how the firewall decides one query, without sending anything upstream.

    dnsfw explain -conf FILE NAME [TYPE] [--client IP]

Prints the server block the query is routed to, then for each firewall every rule considered
in evaluation order (skipped for its qtype or client networks, no match, match), the rule that
decides, its action, and the exact answer a client would get. CNAME/DNAME targets of the
upstream answer would also be inspected (``redirection inspect``); explain cannot know them
without asking upstream, so it names the rules whose matches would stop that inspection.
Exit status: 0, or 1 for a bad Corefile or arguments.
"""

from __future__ import annotations

import argparse
import sys

import dns.rdatatype

from proxy.config import load
from proxy.corefile import CorefileError
from proxy.server import Router

from .lists import ListError, to_wire, wire_suffixes
from .plugin import Firewall
from .policy import ALLOW, BLOCK, NotLoaded, Rule


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
        qname = to_wire(args.name.rstrip(".")) if args.name.strip(".") else b"\x00"
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
    name_text = args.name if args.name.endswith(".") else args.name + "."
    print(f"query: {name_text.lower()} {dns.rdatatype.to_text(qtype)} from {args.client}", file=out)
    for key, zones in config.listeners.items():
        block = Router(zones).route(qname, qtype)
        if block is None:
            print(f"{key}: REFUSED (no server block for this name)", file=out)
            continue
        print(f"{key}: server block {block.file}:{block.line} ({', '.join(block.names)})", file=out)
        firewalls = [p for p in block.plugins if isinstance(p, Firewall)]
        if not firewalls:
            print("  no firewall in this block: the query resolves normally", file=out)
        for firewall in firewalls:
            explain_one(firewall, qname, qtype, args.client, out)
    return 0


def explain_one(firewall: Firewall, qname: bytes, qtype: int, client: str, out) -> None:
    spec = firewall.spec
    print(
        f"  firewall ({spec.file}:{spec.line}), fail {'open' if spec.fail_open else 'closed'}",
        file=out,
    )
    suffixes = wire_suffixes(qname)
    if not firewall.all_zones and not any(s in firewall.zones for s in suffixes):
        print(f"    outside the firewall's zones {', '.join(spec.zones)}: not filtered", file=out)
        return
    try:
        steps, rule = firewall.policy.explain(suffixes, qtype, client)
    except NotLoaded as err:
        print(
            f"    {err}: answer SERVFAIL (fail closed)"
            if not spec.fail_open
            else f"    {err}: resolved unfiltered (fail open)",
            file=out,
        )
        return
    group = None
    for step in steps:
        if step.group != group:
            group = step.group
            g = next(g for g in firewall.policy.groups if g.name == group)
            clients = f", clients {' '.join(str(c) for c in g.clients)}" if g.clients else ""
            print(f"    group {g.name} (priority {g.priority}{clients})", file=out)
        print(
            f"      rule {step.rule:<20} {step.action:<5} list {step.list:<16} {step.outcome}",
            file=out,
        )
    if rule is None:
        print("    decision: no rule matches: the query resolves normally", file=out)
        _inspection_note(firewall, None, out)
        return
    print(
        f"    decision: {rule.action} by rule {rule.name} (group {rule.group}, list {rule.list})",
        file=out,
    )
    print(f"    answer: {describe_answer(firewall, rule, qtype)}", file=out)
    if rule.action != BLOCK:
        _inspection_note(firewall, rule, out)


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


def _inspection_note(firewall: Firewall, rule: Rule | None, out) -> None:
    if rule is not None and rule.trust:
        print(
            "    redirection trust: CNAME/DNAME targets in the answer are not inspected", file=out
        )
    elif firewall.policy.inspects:
        print(
            "    redirection inspect: CNAME/DNAME targets in the upstream answer are evaluated too "
            "(explain does not query upstream; run explain on a target name to see its walk)",
            file=out,
        )
    elif rule is None or rule.action == ALLOW:
        print("    no BLOCK or ALERT rule: CNAME/DNAME targets need no inspection", file=out)
