"""A corpus of queries decided against a Corefile as ``dnsfw explain`` decides each one (the
same load, routing and ``Firewall.explain``), for comparing two Corefiles that should decide
alike: a Corefile and the one ``dnsfw aws import`` makes of its ``dnsfw aws export``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.rdatatype

from plugins.firewall import FIREWALLS
from proxy.config import load
from proxy.names import text_to_wire
from proxy.routing import routes

_EDE = re.compile(r'; EDE \d+ \([^)]*\) ".*" to EDNS clients$')


@dataclass(frozen=True)
class Outcome:
    """What a client gets for one query. ``action`` None: no rule decides (or the name is
    not filtered). ``answer``: explain's answer line without the EDE text, which names the
    rule (names may differ between two Corefiles that decide alike); ``rule``, ``group``
    name what decided."""

    action: str | None
    answer: str | None
    rule: str | None = None
    group: str | None = None


def decide(
    conf: Path, queries: Iterable[tuple[str, str]], client: str = "127.0.0.1"
) -> dict[tuple[str, str], Outcome]:
    """``{(name, type): Outcome}`` for each query, from the first listener that routes it (a
    name no block takes, or a block with no firewall: no decision)."""
    config = load(str(conf), checking=True)
    firewalls = config.app.services.get(FIREWALLS)
    decided = {}
    for name, rdtype in queries:
        qname, qtype = text_to_wire(name), int(dns.rdatatype.from_text(rdtype))
        decided[(name, rdtype)] = Outcome(None, None)
        for _, block in routes(config.listeners, qname, qtype):
            mine = [
                fw for fw in firewalls if block is not None and any(fw is p for p in block.plugins)
            ]
            if mine:
                explained = mine[0].explain(qname, qtype, client)
                if explained.decision is not None:
                    d = explained.decision
                    answer = _EDE.sub("", explained.answer or "")
                    decided[(name, rdtype)] = Outcome(d.action, answer, d.rule, d.group)
            break
    return decided
