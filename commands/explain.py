"""dnsfw explain - show how the firewall decides one query, without sending anything upstream.

    dnsfw explain -conf FILE NAME [TYPE] [--client IP]

Prints the server block the query is routed to, then for each firewall every rule considered
in evaluation order (skipped for its qtype or client networks, no match, match), the rule that
decides, its action, and the exact answer a client would get. CNAME/DNAME targets of the
upstream answer would also be inspected (``redirection inspect``); explain cannot know them
without asking upstream, so it names the rules whose matches would stop that inspection.
Exit status: 0, or 1 for a bad Corefile or arguments.

The walk is data (``Firewall.explain()``, :mod:`plugins.firewall.explain`): this command
prints it as text, the admin API (``GET /v1/explain``) returns it as JSON. Routing is
:mod:`proxy.routing`'s, as the server routes.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO

import dns.rdatatype

from plugins.firewall import FIREWALLS
from plugins.firewall.explain import FirewallExplanation
from plugins.firewall.lists import ListError
from proxy.config import load
from proxy.corefile import CorefileError
from proxy.names import text_to_wire, wire_to_text
from proxy.routing import routes


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
    every = config.app.services.get(FIREWALLS)
    for key, block in routes(config.listeners, qname, qtype):
        if block is None:
            print(f"{key}: REFUSED (no server block for this name)", file=out)
            continue
        print(f"{key}: server block {block.file}:{block.line} ({', '.join(block.names)})", file=out)
        firewalls = [fw for fw in every if any(fw is p for p in block.plugins)]
        if not firewalls:
            print("  no firewall in this block: the query resolves normally", file=out)
        for firewall in firewalls:
            render(firewall.explain(qname, qtype, args.client), out)
    return 0


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
