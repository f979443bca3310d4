"""``dnsfw check``'s warnings about one firewall: legal, but surely not what was meant.

* a rule that can never match: an earlier rule in the walk (groups, then rules, by priority)
  applies to the same or more clients and query types, and its list matches every name of
  this rule's list (the same list, a list with ``*``, or entries and wildcards covering each
  of its entries). The walk stops at the first match, so the later rule is dead;
* a list that no rule uses;
* an ALLOW rule whose list contains ``*``: it lets every name through, and no rule after it
  can match (for its clients and query type).

Lists of more than :data:`MAX_COMPARED` entries are compared by name and ``*`` only, and a
list with no content (a ``url`` list never downloaded) is compared by name only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dns.rdatatype

from .config import FirewallSpec
from .lists import DomainList
from .policy import ALLOW, Group, Rule

MAX_COMPARED = 100_000

Warning = tuple[str, int, str]  # file, line, message


def warnings(spec: FirewallSpec, content: Callable[[str], DomainList | None]) -> list[Warning]:
    """Every warning about ``spec``; ``content(list name)`` is the list as loaded, or None."""
    used = {rule.list for group in spec.groups for rule in group.rules}
    found: list[Warning] = [
        (ls.file, ls.line, f"domain list '{ls.name}' is used by no rule")
        for ls in spec.lists
        if ls.name not in used
    ]
    walk = list(_walk(spec.groups))
    for index, (rule, group) in enumerate(walk):
        listed = content(rule.list)
        if rule.action == ALLOW and listed is not None and "*" in listed:
            found.append(
                (
                    rule.file,
                    rule.line,
                    f"rule '{rule.name}' ALLOWs every name{_scope(rule, group)}: its list "
                    f"'{rule.list}' contains '*', so no later rule can match "
                    + ("those queries" if _scope(rule, group) else "any query"),
                )
            )
        for earlier, earlier_group in walk[:index]:
            if _shadows(earlier, earlier_group, rule, group, content):
                found.append(
                    (
                        rule.file,
                        rule.line,
                        f"rule '{rule.name}' can never match: rule '{earlier.name}' (group "
                        f"'{earlier_group.name}', line {earlier.line}) comes first and matches "
                        f"every name of list '{rule.list}'{_scope(earlier, earlier_group)}",
                    )
                )
                break
    return found


def _walk(groups: tuple[Group, ...]) -> Iterator[tuple[Rule, Group]]:
    for group in sorted(groups, key=lambda g: g.priority):
        for rule in sorted(group.rules, key=lambda r: r.priority):
            yield rule, group


def _scope(rule: Rule, group: Group) -> str:
    parts = []
    if rule.qtype is not None:
        parts.append(f"type {dns.rdatatype.to_text(rule.qtype)}")
    if group.clients:
        parts.append("clients " + " ".join(str(n) for n in group.clients))
    return f" ({', '.join(parts)})" if parts else ""


def _shadows(
    earlier: Rule,
    earlier_group: Group,
    rule: Rule,
    group: Group,
    content: Callable[[str], DomainList | None],
) -> bool:
    """Whether ``earlier`` matches every query that ``rule`` could match."""
    if earlier.qtype is not None and earlier.qtype != rule.qtype:
        return False
    if earlier_group.clients and not (
        group.clients
        and all(
            any(n.version == e.version and n.subnet_of(e) for e in earlier_group.clients)  # type: ignore[arg-type]
            for n in group.clients
        )
    ):
        return False
    if earlier.list == rule.list:
        return True
    covering = content(earlier.list)
    if covering is None:
        return False
    if "*" in covering:
        return True
    covered = content(rule.list)
    if covered is None or not 0 < len(covered) <= MAX_COMPARED:
        return False
    return all(covering.covers(entry) for entry in covered.entries())
