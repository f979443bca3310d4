"""dnsfw explain - show how the firewall decides one query.

    dnsfw explain -conf FILE NAME [TYPE] [--client IP] [--resolve [--server ADDR]]

Prints the server block the query is routed to, then for each firewall every rule considered
in evaluation order (skipped for its qtype or client networks, no match, match), the rule that
decides, its action, and the exact answer a client would get.

With ``redirection inspect`` (the default) the CNAME/DNAME targets of the upstream's answer
are evaluated too, so the verdict of an allowed or alerted name depends on the answer: without
``--resolve`` explain sends nothing and says so. ``--resolve`` sends the query (with
dnspython, RD set, over UDP with a TCP retry on truncation) to the block's ``forward`` upstream
for the name (the first ``dns://`` target of the first ``forward`` that handles it), or to
``--server ADDR``
(``IP``, ``IP:PORT``, ``[IPv6]:PORT``; port 53), prints the CNAME/DNAME chain of the answer
and shows the whole verdict on it (``Firewall.verdict(..., chain)``): the target that decided,
its walk, and the answer a client gets (a block caused by a target names it in the EDE).
Exit status: 0, or 1 for a bad Corefile or arguments, or an upstream that does not answer.

The walk is data (``Firewall.explain()``, :mod:`plugins.firewall.explain`): this command
prints it as text, the admin API (``GET /v1/explain``) returns it as JSON. Routing is
:mod:`proxy.routing`'s, as the server routes.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from plugins.firewall import FIREWALLS
from plugins.firewall.explain import FirewallExplanation, GroupView
from plugins.firewall.lists import ListError
from plugins.firewall.policy import Step
from plugins.forward import Forward
from plugins.forward.options import Target, parse_to
from proxy import wire
from proxy.config import Block, load
from proxy.corefile import CorefileError, Token
from proxy.names import text_to_wire, wire_to_text
from proxy.routing import routes

RESOLVE_TIMEOUT = 5.0  # seconds for the upstream's answer (forward's limit per query)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dnsfw explain", description=__doc__.split("\n")[0])
    parser.add_argument("-conf", "--conf", dest="conf", default="Corefile")
    parser.add_argument("-dns.port", "--dns.port", dest="dns_port", type=int, default=53)
    parser.add_argument("name")
    parser.add_argument("type", nargs="?", default="A")
    parser.add_argument("--client", default="127.0.0.1", help="client address (default 127.0.0.1)")
    parser.add_argument(
        "--resolve",
        action="store_true",
        help="ask the upstream and decide on the CNAME/DNAME targets of its answer",
    )
    parser.add_argument(
        "--server",
        metavar="ADDR",
        help="with --resolve: ask this server (IP, IP:PORT) instead of the block's forward",
    )
    args = parser.parse_args(argv)
    server = None
    if args.server is not None:
        try:
            (server,) = parse_to(Token(args.server, "--server", 0))
        except (CorefileError, ValueError):
            print(f"dnsfw explain: --server: not an address: {args.server!r}", file=sys.stderr)
            return 1
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
            continue
        chain = None
        if args.resolve:
            try:
                target = server or _upstream(block, qname)
                chain = resolve(qname, qtype, target)
            except ResolveError as err:
                print(f"dnsfw explain: --resolve: {err}", file=sys.stderr)
                return 1
            shown = " -> ".join(wire_to_text(t) for t in chain) or "(none)"
            print(f"  answer from {target.address}, CNAME/DNAME targets: {shown}", file=out)
        for firewall in firewalls:
            render(firewall.explain(qname, qtype, args.client, chain), out)
    return 0


class ResolveError(Exception):
    """No answer to take the CNAME/DNAME chain from."""


def _upstream(block: Block, qname: bytes) -> Target:
    """The first plain DNS target of the block's first ``forward`` that handles ``qname``."""
    for plugin in block.plugins:
        if isinstance(plugin, Forward) and plugin.forwards(qname):
            for target in plugin.cfg.targets:
                if target.transport == "dns":
                    return target
            raise ResolveError(
                f"the forward for {wire_to_text(qname)} has no dns:// upstream: give --server ADDR"
            )
    raise ResolveError(
        f"no forward in the server block {block.file}:{block.line} handles "
        f"{wire_to_text(qname)}: give --server ADDR"
    )


def resolve(qname: bytes, qtype: int, target: Target) -> tuple[bytes, ...]:
    """The CNAME/DNAME targets (lower-case wire, in order) of ``target``'s answer, read as
    the firewall reads an answer (:func:`proxy.wire.answer_chain`)."""
    query = dns.message.make_query(wire_to_text(qname), qtype)
    try:
        answer, _ = dns.query.udp_with_fallback(
            query, target.host, timeout=RESOLVE_TIMEOUT, port=target.port
        )
    except (dns.exception.DNSException, OSError) as err:
        raise ResolveError(f"{target.address}: {err or type(err).__name__}") from None
    return wire.answer_chain(answer.to_wire())


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
    _steps(explained.steps, groups, out)
    decision = explained.decision
    if decision is None:
        print("    decision: no rule matches: the query resolves normally", file=out)
    else:
        if decision.target:
            print(f"    CNAME/DNAME target {decision.target}", file=out)
            _steps(explained.target_steps, groups, out)
        via = f" on the CNAME/DNAME target {decision.target}" if decision.target else ""
        print(
            f"    decision: {decision.action} by rule {decision.rule} "
            f"(group {decision.group}, list {decision.list}){via}",
            file=out,
        )
        print(f"    answer: {explained.answer}", file=out)
    if explained.note is not None:
        print(f"    {explained.note}", file=out)


def _steps(steps: tuple[Step, ...], groups: dict[str, GroupView], out: IO[str]) -> None:
    group = None
    for step in steps:
        if step.group != group:
            group = step.group
            g = groups[group]
            clients = f", clients {' '.join(g.clients)}" if g.clients else ""
            print(f"    group {g.name} (priority {g.priority}{clients})", file=out)
        print(
            f"      rule {step.rule:<20} {step.action:<5} list {step.list:<16} {step.outcome}",
            file=out,
        )
