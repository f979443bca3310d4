"""Rule groups, rules and their evaluation: Route 53 DNS Firewall's walk, as plain data.

Groups are walked by ascending priority, the rules of a group by ascending priority; a group
with ``clients`` applies only to queries from those networks. The first rule whose list
matches the name (and whose ``qtype``, if set, equals the query type) decides, whatever its
action: ALLOW, ALERT and BLOCK all end the walk. No match: the query resolves normally.

The same :class:`Policy` serves the plugin's hot path, ``dnsfw explain`` and ``dnsfw audit``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from proxy.names import wire_suffixes

ALLOW = "ALLOW"
ALERT = "ALERT"
BLOCK = "BLOCK"
ACTIONS = (ALLOW, ALERT, BLOCK)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the firewall decided for a query, as the query log and stats read it.

    ``name`` is the name that matched: the query name, or a CNAME/DNAME target in the answer
    (then ``via_chain`` is True).
    """

    action: str
    group: str
    rule: str
    list: str
    name: str = ""
    via_chain: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Verdict:
    """What a firewall does with one query (:meth:`plugins.firewall.Firewall.verdict`): the one
    decision the query path acts on and ``dnsfw explain``, ``dnsfw audit --policy`` and the
    admin API show.

    ``rule`` decides (None: no rule matched, the query resolves). ``target`` is the CNAME/DNAME
    target (wire) that ``rule`` matched, ``b""`` when it matched the query name. ``inside`` is
    False when the name is outside the firewall's zones (not filtered at all). ``not_loaded``
    names a list the walk needed that has no content: the fail mode answers instead.
    ``inspects_chain``: the CNAME/DNAME targets of the answer are evaluated after this decision
    (it is not a BLOCK, not ``redirection trust``, and some rule could block or alert on them).
    """

    rule: Rule | None
    target: bytes = b""
    inside: bool = True
    not_loaded: str | None = None
    inspects_chain: bool = False


@dataclass(frozen=True, slots=True)
class BlockResponse:
    kind: str = "nodata"  # nodata | nxdomain | override
    target_name: str | None = None  # override with a domain: presentation form, trailing dot
    target_wire: bytes | None = None
    target_ip: str | None = None  # override with an address (sinkhole)
    ttl: int = 0  # of the override answer


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: rules key per-rule counters
class Rule:
    name: str
    priority: int
    action: str
    list: str
    group: str
    qtype: int | None = None
    trust: bool = False  # redirection trust: a match ends CNAME/DNAME inspection
    response: BlockResponse = field(default_factory=BlockResponse)
    file: str = ""  # where the Corefile defines it (`dnsfw check`'s warnings)
    line: int = 0
    decision: Decision = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # built once, shared by every query this rule decides (no allocation per query)
        object.__setattr__(
            self, "decision", Decision(self.action, self.group, self.name, self.list)
        )


@dataclass(frozen=True, slots=True, eq=False)
class Group:
    name: str
    priority: int
    rules: tuple[Rule, ...]
    clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


class NotLoaded(Exception):
    """A list a rule needs has no content yet (or failed to load): the fail mode decides."""

    def __init__(self, list_name: str) -> None:
        super().__init__(f"domain list '{list_name}' is not loaded")
        self.list_name = list_name


@dataclass(frozen=True, slots=True)
class Step:
    """One rule considered by a traced :meth:`Policy.evaluate` (``dnsfw explain``)."""

    group: str
    rule: str
    list: str
    action: str
    outcome: str  # "match", "no match", "skipped: ..."

    @classmethod
    def of(cls, rule: Rule, outcome: str) -> Step:
        return cls(rule.group, rule.name, rule.list, rule.action, outcome)


class ClientSet:
    """Networks of a group's ``clients``, matched without ipaddress objects per query."""

    __slots__ = ("v4", "v6")

    def __init__(self, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.v4 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 4]
        self.v6 = [(int(n.network_address), int(n.netmask)) for n in networks if n.version == 6]

    def contains(self, client_ip: str) -> bool:
        try:
            if ":" in client_ip:
                host = client_ip.split("%", 1)[0]
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
                if value >> 32 == 0xFFFF:  # IPv4-mapped: match the IPv4 networks
                    return self._in(self.v4, value & 0xFFFFFFFF)
                return self._in(self.v6, value)
            return self._in(self.v4, int.from_bytes(socket.inet_aton(client_ip), "big"))
        except OSError:
            return False

    @staticmethod
    def _in(networks: list[tuple[int, int]], value: int) -> bool:
        return any(value & mask == net for net, mask in networks)


_UNKNOWN = object()


class Policy:
    """The ordered rules of one firewall, evaluated against the lists of a registry.

    ``lookup(list_name)`` returns the list's current content (an object with
    ``match_suffixes(suffixes)``) or None when it is not loaded.

    :meth:`decide` remembers decisions by name (and type, and client, when rules depend on
    them), so a name asked again costs one dict look-up instead of a walk over the lists;
    :meth:`forget` must be called whenever a list's content is swapped, which keeps a list
    change visible at once. The memo is bounded (cleared when full).
    """

    MEMO_MAX = 65536

    def __init__(self, groups: Sequence[Group], lookup: Callable[[str], object | None]) -> None:
        self.groups = tuple(sorted(groups, key=lambda g: g.priority))
        self.lookup = lookup
        # flattened walk: (rule, client set or None), in evaluation order
        self.walk = tuple(
            (rule, ClientSet(group.clients) if group.clients else None)
            for group in self.groups
            for rule in sorted(group.rules, key=lambda r: r.priority)
        )
        self.has_clients = any(g.clients for g in self.groups)
        # CNAME/DNAME targets need inspecting only if some rule could block or alert on them
        self.inspects = any(r.action != ALLOW for r, _ in self.walk)
        self.by_type = any(r.qtype is not None for r, _ in self.walk)
        # the memo is keyed by the name alone unless rules depend on the type or the client:
        # then the query path may look a name up itself (see Firewall.serve)
        self.by_name_only = not (self.has_clients or self.by_type)
        self.memo: dict[object, Rule | None] = {}
        # counts list swaps (see forget): what was decided under one generation holds until
        # the next, which is how a replayed answer knows it still passes (proxy.replay)
        self.generation = 0

    def decide(self, qname: bytes, qtype: int, client_ip: str) -> Rule | None:
        """The deciding rule for a lower-case wire name, remembered. Raises NotLoaded."""
        if self.has_clients:
            key: object = (qname, qtype, client_ip)
        elif self.by_type:
            key = (qname, qtype)
        else:
            key = qname
        memo = self.memo
        rule = memo.get(key, _UNKNOWN)
        if rule is _UNKNOWN:
            rule = self.evaluate(
                wire_suffixes(qname), qtype, client_ip
            )  # NotLoaded: not remembered
            if len(memo) >= self.MEMO_MAX:
                memo.clear()
            memo[key] = rule
        return rule  # type: ignore[return-value]

    def inspect_chain(
        self, chain: Sequence[bytes], qtype: int, client_ip: str, decided: Rule | None
    ) -> tuple[Rule, bytes] | None:
        """Evaluate the CNAME/DNAME targets of an answer (wire names, in order), each from the
        top of the order. The first BLOCK wins; an ALERT counts when the query itself had no
        decision (``decided``); a match with ``redirection trust`` ends the walk. Returns the
        rule that changes the outcome and the target it matched, or None. Raises NotLoaded.
        """
        found: tuple[Rule, bytes] | None = None
        for target in chain:
            rule = self.decide(target, qtype, client_ip)
            if rule is None:
                continue
            if rule.action == BLOCK:
                return rule, target
            if rule.action == ALERT and decided is None and found is None:
                found = (rule, target)
            if rule.trust:
                break
        return found

    def forget(self) -> None:
        """Drop remembered decisions (a list changed)."""
        self.memo.clear()
        self.generation += 1

    def evaluate(
        self,
        suffixes: Sequence[bytes],
        qtype: int,
        client_ip: str,
        trace: list[Step] | None = None,
    ) -> Rule | None:
        """The deciding rule for a name (given as its wire suffixes), or None. Raises NotLoaded.

        ``trace`` (``dnsfw explain``): every rule considered is appended to it, in order, with
        why it did or did not match."""
        lookup = self.lookup
        in_group: dict[int, bool] | None = None
        for rule, clients in self.walk:
            if rule.qtype is not None and rule.qtype != qtype:
                if trace is not None:
                    trace.append(Step.of(rule, "skipped: qtype differs"))
                continue
            if clients is not None:
                if in_group is None:
                    in_group = {}
                key = id(clients)
                inside = in_group.get(key)
                if inside is None:
                    inside = in_group[key] = clients.contains(client_ip)
                if not inside:
                    if trace is not None:
                        trace.append(Step.of(rule, "skipped: client not in the group's networks"))
                    continue
            domains = lookup(rule.list)
            if domains is None:
                if trace is not None:
                    trace.append(Step.of(rule, "list not loaded"))
                raise NotLoaded(rule.list)
            if domains.match_suffixes(suffixes):  # type: ignore[attr-defined]
                if trace is not None:
                    trace.append(Step.of(rule, "match"))
                return rule
            if trace is not None:
                trace.append(Step.of(rule, "no match"))
        return None
