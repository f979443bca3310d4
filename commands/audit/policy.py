"""``dnsfw audit --policy``: every logged query evaluated against a Corefile's firewall now.

Each query of the log is decided again, with its own type and client address, by the
firewall's verdict (``Firewall.verdict``: the one the query path acts on and ``dnsfw explain``
shows): the firewall's zones, rule groups (with their ``clients``), rules (with their
``qtype``) and loaded lists, then, unless the query is blocked or a ``redirection trust`` rule
decided it, the CNAME and DNAME targets in the logged answer (``answers`` of a NOERROR or
NXDOMAIN reply): a BLOCK on a target blocks the query, an ALERT on a target counts when the
query itself had no decision.

Per name it counts queries by (firewall, logged verdict, decision now); for the ones the
report lists it keeps their types and up to ``MAX_SOURCES`` client addresses too:

* **ALERT -> BLOCK**: queries that an ALERT rule decides now; they would fail if the ALERT
  rules became BLOCK, for the clients listed;
* **changed since the log**: queries whose action now (ALLOW or no rule = allowed, ALERT,
  BLOCK) differs from the logged one (Route 53 logs no action for allowed queries, dnsfw's
  ``log`` plugin logs ALLOW only with ``log_allow``): rules or lists changed since the trial.

Decisions are memoised per (name, type, client if any group has ``clients``, CNAME chain), at
most ``MEMO_SIZE`` at a time. Names counted only in an overflow entry (``commands.audit.scan``) are
not evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dns.rdatatype

from plugins.firewall.policy import ALERT, ALLOW, NotLoaded, Policy, Rule, Verdict
from proxy.names import text_to_wire

from .scan import CHAIN_RCODES, MAX_SOURCES, NameStats, chain_of, pairs

MEMO_SIZE = 16384
MAX_QTYPES = 1024
ALLOWED = "allowed"  # ALLOW, no rule matched, or outside the firewall's zones


class AuditFirewall(Protocol):
    """What audit needs of a firewall (``plugins.firewall.Firewall`` has it): the verdict the
    query path acts on."""

    policy: Policy

    def verdict(
        self, qname: bytes, qtype: int, client_ip: str, chain: Sequence[bytes] | None = None
    ) -> Verdict: ...


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


# (firewall index, verdict of the logged action, decision now); interned by PolicyCheck
TallyKey = tuple[int, str, Decided]


def verdict(action: str) -> str:
    """ALLOW and "no rule" are the same to a client: allowed."""
    return ALLOWED if action in ("", ALLOW) else action


def reported(logged: str, decided: Decided) -> bool:
    """Whether the report lists these queries: an ALERT now, or not what the log says."""
    return decided.action == ALERT or logged != verdict(decided.action)


class Tally:
    """Queries, types and clients of one reported :data:`TallyKey` of one name."""

    __slots__ = ("queries", "types", "sources", "other_sources")

    def __init__(self) -> None:
        self.queries = 0
        self.types: tuple[str, ...] = ()
        self.sources: tuple[str, ...] = ()
        self.other_sources = 0

    def add(self, qtype: str, source: str) -> None:
        self.queries += 1
        if qtype not in self.types:
            self.types = (*self.types, qtype)
        if source not in self.sources:
            if len(self.sources) < MAX_SOURCES:
                self.sources = (*self.sources, source)
            else:
                self.other_sources += 1


def _count(flat: list[Any], key: TallyKey, qtype: str, client: str) -> None:
    """Count one query in a name's flat ``[key, int | Tally, ...]`` list (as ``bump``):
    with its type and client when the report lists the key, as a bare count otherwise."""
    for i in range(1, len(flat), 2):
        if flat[i - 1] is key:
            value = flat[i]
            if type(value) is int:
                flat[i] = value + 1
            else:
                value.add(qtype, client)
            return
    if reported(key[1], key[2]):
        tally = Tally()
        tally.add(qtype, client)
        flat += (key, tally)
    else:
        flat += (key, 1)


def queries_of(value: int | Tally) -> int:
    return value if type(value) is int else value.queries  # type: ignore[union-attr]


class PolicyCheck:
    """Evaluates each logged query against firewalls; used as the inventory's observer."""

    def __init__(self, firewalls: Sequence[AuditFirewall]) -> None:
        self.firewalls = tuple(firewalls)
        self.by_client = any(fw.policy.has_clients for fw in self.firewalls)
        self.unevaluated = 0  # names that are not valid DNS names
        self._memo: dict[tuple, tuple[Decided, ...] | None] = {}
        self._qtypes: dict[str, int] = {}
        self._decided: dict[tuple[int, str], Decided] = {}  # (id(rule), target) -> interned
        self._keys: dict[TallyKey, TallyKey] = {}  # interned

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
        chain = chain_of(obj) if rcode in CHAIN_RCODES else ()
        memo_key = (name, qtype, client if self.by_client else "", chain)
        decisions = self._memo.get(memo_key, False)
        if decisions is False:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            decisions = self._decide(name, self._qtype(qtype), client, chain)
            self._memo[memo_key] = decisions
        if decisions is None:
            self.unevaluated += 1
            return
        flat = stats.policy
        if flat is None:
            flat = stats.policy = []
        keys = self._keys
        logged = verdict(logged)
        for index, decided in enumerate(decisions):
            key = (index, logged, decided)
            _count(flat, keys.get(key) or keys.setdefault(key, key), qtype, client)

    def _qtype(self, text: str) -> int:
        value = self._qtypes.get(text)
        if value is None:
            try:
                value = int(dns.rdatatype.from_text(text))
            except (dns.rdatatype.UnknownRdatatype, ValueError):
                value = -1  # matches only rules without a qtype
            if len(self._qtypes) < MAX_QTYPES:  # garbage in a bad log must not grow it
                self._qtypes[text] = value
        return value

    def _decide(
        self, name: str, qtype: int, client: str, chain: tuple[str, ...]
    ) -> tuple[Decided, ...] | None:
        try:
            qname = text_to_wire(name)
            targets = [text_to_wire(t) for t in chain]
        except ValueError:
            return None
        out = []
        for fw in self.firewalls:
            decided = _evaluate(fw, qname, targets, chain, qtype, client)
            # rules live as long as the firewall, so their id is stable while it is used
            out.append(self._decided.setdefault((id(decided.rule), decided.target), decided))
        return tuple(out)


def _evaluate(
    fw: AuditFirewall,
    qname: bytes,
    targets: list[bytes],
    chain: tuple[str, ...],
    qtype: int,
    client: str,
) -> Decided:
    """The firewall's verdict on a logged query whose answer held the CNAME/DNAME ``targets``
    (wire; ``chain`` as logged). Raises ``NotLoaded`` when a list the walk needs has no content.
    """
    verdict = fw.verdict(qname, qtype, client, targets)
    if verdict.not_loaded is not None:
        raise NotLoaded(verdict.not_loaded)
    if not verdict.target:
        return Decided(verdict.rule)
    return Decided(verdict.rule, chain[targets.index(verdict.target)].rstrip("."))


@dataclass(frozen=True, slots=True)
class Change:
    """Reported queries of one name: one firewall's decision now, one logged verdict."""

    name: str
    domain: str
    firewall: int
    logged: str  # verdict of the logged action
    now: Decided
    types: tuple[str, ...]
    queries: int
    clients: tuple[str, ...]
    more_clients: bool


def changes(names: Iterable[tuple[str, NameStats]]) -> Iterator[Change]:
    """The reported queries (see ``reported``) of each name, one Change per firewall,
    logged verdict and decision now."""
    for name, stats in names:
        for (index, logged, decided), tally in pairs(stats.policy or ()):
            if type(tally) is Tally:
                yield Change(
                    name=name,
                    domain=stats.domain,
                    firewall=index,
                    logged=logged,
                    now=decided,
                    types=tuple(sorted(tally.types)),
                    queries=tally.queries,
                    clients=tally.sources,
                    more_clients=tally.other_sources > 0,
                )
