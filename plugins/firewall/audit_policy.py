"""``dnsfw audit --policy``: every logged query evaluated against a Corefile's firewall now.

Each query of the log is decided again, with its own type and client address, by the same
engine as the plugin and ``dnsfw explain`` (:meth:`Policy.evaluate`): the firewall's zones,
rule groups (with their ``clients``), rules (with their ``qtype``) and loaded lists. As in the
plugin, unless the query is blocked or a ``redirection trust`` rule decided it, the CNAME and
DNAME targets in the logged answer (``answers`` of a NOERROR or NXDOMAIN reply) are evaluated
too: a BLOCK on a target blocks the query, an ALERT on a target counts when the query itself
had no decision.

Per name it counts queries by (firewall, type, logged action, rule deciding now, target that
decided), with up to ``MAX_SOURCES`` client addresses each. The report reads two things off it:

* **ALERT -> BLOCK**: queries that an ALERT rule decides now; they would fail if the ALERT
  rules became BLOCK, for the clients listed;
* **changed since the log**: queries whose action now (ALLOW or no rule = allowed, ALERT,
  BLOCK) differs from the logged one (Route 53 logs no action for allowed queries, dnsfw's
  ``log`` plugin logs ALLOW only with ``log_allow``): rules or lists changed since the trial.

Decisions are memoised per (name, type, client if any group has ``clients``, CNAME chain), at
most ``MEMO_SIZE`` at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.rdatatype

from .audit_scan import MAX_SOURCES, NameStats
from .lists import to_wire, wire_suffixes
from .policy import ALERT, ALLOW, BLOCK, Policy, Rule

MEMO_SIZE = 65536
ALLOWED = "allowed"  # ALLOW, no rule matched, or outside the firewall's zones
CHAIN_TYPES = ("CNAME", "DNAME")
CHAIN_RCODES = ("NOERROR", "NXDOMAIN")  # an NXDOMAIN answer can hold a chain too


class AuditFirewall(Protocol):
    """What audit needs of a firewall (``plugins.firewall.Firewall`` has it)."""

    policy: Policy
    all_zones: bool
    zones: frozenset[bytes]


@dataclass(frozen=True, slots=True, eq=False)
class Decided:
    """A firewall's decision for one query: the rule (None: no rule) and the CNAME/DNAME
    target that it matched (``""``: the query name itself).

    Interned by :class:`PolicyCheck` (one object per rule and target), so it hashes and
    compares by identity: cheap as part of a per-query tally key.
    """

    rule: Rule | None
    target: str = ""

    @property
    def action(self) -> str:
        return self.rule.action if self.rule is not None else ""

    def describe(self) -> str:
        if self.rule is None:
            return "no rule (resolves)"
        via = f" via CNAME target {self.target}" if self.target else ""
        return f"{self.rule.action} {self.rule.group}/{self.rule.name} (list {self.rule.list}){via}"


# (firewall index, query type, logged action, decision now)
TallyKey = tuple[int, str, str, Decided]


class Tally:
    """Queries and clients of one :data:`TallyKey` of one name."""

    __slots__ = ("queries", "sources", "other_sources")

    def __init__(self) -> None:
        self.queries = 0
        self.sources: tuple[str, ...] = ()
        self.other_sources = 0

    def add(self, source: str) -> None:
        self.queries += 1
        if source not in self.sources:
            if len(self.sources) < MAX_SOURCES:
                self.sources = (*self.sources, source)
            else:
                self.other_sources += 1


def verdict(action: str) -> str:
    """ALLOW and "no rule" are the same to a client: allowed."""
    return ALLOWED if action in ("", ALLOW) else action


class PolicyCheck:
    """Evaluates each logged query against firewalls; used as the inventory's observer."""

    def __init__(self, firewalls: Sequence[AuditFirewall]) -> None:
        self.firewalls = tuple(firewalls)
        self.by_client = any(fw.policy.has_clients for fw in self.firewalls)
        self.unevaluated = 0  # names that are not valid DNS names
        self._memo: dict[tuple, tuple[Decided, ...] | None] = {}
        self._qtypes: dict[str, int] = {}
        self._decided: dict[tuple[int, str], Decided] = {}  # (id(rule), target) -> interned

    def __call__(
        self,
        stats: NameStats,
        name: str,
        qtype: str,
        client: str,
        logged: str,
        rcode: str,
        obj: dict[str, Any],
    ) -> None:
        chain = _chain(obj) if rcode in CHAIN_RCODES else ()
        key = (name, qtype, client if self.by_client else "", chain)
        decisions = self._memo.get(key, False)
        if decisions is False:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            decisions = self._memo[key] = self._decide(name, self._qtype(qtype), client, chain)
        if decisions is None:
            self.unevaluated += 1
            return
        tallies = stats.policy
        if tallies is None:
            tallies = stats.policy = {}
        for index, decided in enumerate(decisions):
            tkey = (index, qtype, logged, decided)
            tally = tallies.get(tkey)
            if tally is None:
                tally = tallies[tkey] = Tally()
            tally.add(client)

    def _qtype(self, text: str) -> int:
        value = self._qtypes.get(text)
        if value is None:
            try:
                value = int(dns.rdatatype.from_text(text))
            except (dns.rdatatype.UnknownRdatatype, ValueError):
                value = -1  # matches only rules without a qtype
            self._qtypes[text] = value
        return value

    def _decide(
        self, name: str, qtype: int, client: str, chain: tuple[str, ...]
    ) -> tuple[Decided, ...] | None:
        try:
            suffixes = wire_suffixes(to_wire(name))
            targets = [wire_suffixes(to_wire(t)) for t in chain]
        except ValueError:
            return None
        out = []
        for fw in self.firewalls:
            decided = _evaluate(fw, suffixes, targets, chain, qtype, client)
            # rules live as long as the firewall, so their id is stable while it is used
            out.append(self._decided.setdefault((id(decided.rule), decided.target), decided))
        return tuple(out)


def _chain(obj: dict[str, Any]) -> tuple[str, ...]:
    answers = obj.get("answers")
    if not answers or type(answers) is not list:
        return ()
    return tuple(
        a["Rdata"].lower()
        for a in answers
        if type(a) is dict and a.get("Type") in CHAIN_TYPES and type(a.get("Rdata")) is str
    )


def _evaluate(
    fw: AuditFirewall,
    suffixes: list[bytes],
    targets: list[list[bytes]],
    chain: tuple[str, ...],
    qtype: int,
    client: str,
) -> Decided:
    """The plugin's decision (``Firewall.serve`` and ``_inspect_chain``) without the I/O.

    Raises ``NotLoaded`` when a list the walk needs has no content.
    """
    if not fw.all_zones and not any(s in fw.zones for s in suffixes):
        return Decided(None)
    policy = fw.policy
    rule = policy.evaluate(suffixes, qtype, client)
    decided = Decided(rule)
    if (rule is not None and (rule.action == BLOCK or rule.trust)) or not policy.inspects:
        return decided
    for target, text in zip(targets, chain, strict=True):
        hit = policy.evaluate(target, qtype, client)
        if hit is None:
            continue
        if hit.action == BLOCK:
            return Decided(hit, text.rstrip("."))
        if hit.action == ALERT and decided.rule is None:
            decided = Decided(hit, text.rstrip("."))
        if hit.trust:
            break
    return decided


@dataclass(frozen=True, slots=True)
class Change:
    """Queries of one name that one firewall decides, grouped for the report."""

    name: str
    domain: str
    firewall: int
    logged: str  # verdict of the logged action
    now: Decided
    types: tuple[str, ...]
    queries: int
    clients: tuple[str, ...]
    more_clients: bool

    @property
    def label(self) -> str:
        now = verdict(self.now.action)
        if self.logged == now:
            return "unchanged"
        return f"{self.logged} in the log, {now} now"


def changes(names: Sequence[tuple[str, NameStats]]) -> list[Change]:
    """Every (name, firewall, logged verdict, decision now) with its types and clients."""
    out = []
    for name, stats in names:
        if not stats.policy:
            continue
        groups: dict[tuple[int, str, Decided], list[tuple[str, Tally]]] = {}
        for (index, qtype, logged, decided), tally in stats.policy.items():
            groups.setdefault((index, verdict(logged), decided), []).append((qtype, tally))
        for (index, logged, decided), items in groups.items():
            clients: list[str] = []
            for _, tally in items:
                clients.extend(c for c in tally.sources if c not in clients)
            out.append(
                Change(
                    name=name,
                    domain=stats.domain,
                    firewall=index,
                    logged=logged,
                    now=decided,
                    types=tuple(sorted({q for q, _ in items})),
                    queries=sum(t.queries for _, t in items),
                    clients=tuple(clients),
                    more_clients=any(t.other_sources for _, t in items),
                )
            )
    return out
