"""Output of ``dnsfw audit``: a table for people, JSON and CSV for scripts.

**table**: one section per registrable domain (sorted; names without one last), its names
sorted by their labels from the right (a name before the names below it), with columns NAME,
TYPES, QUERIES, FIRST, LAST (UTC), SOURCES, RCODE, LOGGED (the firewall action the log
recorded; ``-`` is allowed or no rule), NOW (``--policy``: the decision now) and NOTE (flags).
A column with several values shows each with its count (``NOERROR 3, NXDOMAIN 1``). On a
terminal (or with ``COLUMNS`` set) the table fits the width, doing the least damage first:
NOTE, SOURCES, LOGGED, NOW, RCODE and TYPES are cut (lists at whole values, ``+N`` for the
rest; text with ``…``), then FIRST and LAST lose year and seconds, then the longest tenth of
the names is cut, then FIRST, RCODE, SOURCES and LAST are left out, at last every name may
be cut. Not on a terminal, nothing is cut. With ``--policy``, two more tables: the names
that ALERT rules decide now (they would break if ALERT became BLOCK) with their clients,
and the names decided differently now than logged. A summary follows (wrapped, not cut).

**json**: one object: ``summary``, ``names`` (one object per name), ``overflow`` and, with
``--policy``, ``policy`` (``firewalls``, ``alert_to_block``, ``changed``, ``unevaluated``).

**csv**: a header and one row per name: ``domain,name,queries,types,first,last,sources,
other_source_queries,rcodes,logged,flags`` (and ``now`` with ``--policy``); several values
in a cell are ``KEY=COUNT`` joined by ``;``.
"""

from __future__ import annotations

import csv
import json
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from plugins.firewall.policy import ALERT

from .names import Flag
from .policy import ALLOWED, Change, Decided, PolicyCheck, changes, queries_of, verdict
from .scan import CATCH_ALL, Inventory, NameStats, iso, pairs

NO_DOMAIN = "(no registrable domain)"
ELLIPSIS = "…"
# the order in which columns give up width, and how narrow they may get
SHRINK_ORDER = ("NOTE", "SOURCES", "LOGGED", "NOW", "RCODE", "TYPES", "CLIENTS", "NAME")
DROP_ORDER = ("FIRST", "RCODE", "SOURCES", "LAST")
MIN_WIDTH = {"NAME": 24, "SOURCES": 16, "CLIENTS": 16, "NOTE": 11, "NOW": 12}
DEFAULT_MIN_WIDTH = 8


@dataclass(frozen=True, slots=True)
class Audit:
    """Everything a report shows."""

    inventory: Inventory
    flags: dict[str, tuple[Flag, ...]]
    policy: PolicyCheck | None = None
    firewall_labels: tuple[str, ...] = ()

    def ordered(self) -> list[tuple[str, NameStats]]:
        """Names by registrable domain (none last), then labels from the right."""
        return sorted(
            self.inventory.names.items(),
            key=lambda kv: (kv[1].domain == "", kv[1].domain, label_key(kv[0])),
        )

    def changes(self) -> Iterator[Change]:
        return changes(self.ordered()) if self.policy is not None else iter(())


def label_key(name: str) -> str:
    """Sorts names by their labels from the right, a name just before the names below it
    (the separator sorts before every label character)."""
    return "\x01".join(reversed(name.split(".")))


# --- cell values ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Items:
    """A cell of several values, joined by ``, ``; cut to a width at whole values, with
    ``+N`` for the values left out (``more``: further values exist that were not kept)."""

    items: tuple[str, ...]
    more: bool = False

    def __str__(self) -> str:
        return ", ".join([*self.items, "more"] if self.more else self.items)

    def fit(self, width: int) -> str:
        text = str(self)
        if len(text) <= width:
            return text
        for keep in range(len(self.items) - 1, 0, -1):
            left = len(self.items) - keep
            text = ", ".join([*self.items[:keep], f"+{left}{'+' if self.more else ''}"])
            if len(text) <= width:
                return text
        return _cut(self.items[0] if self.items else "", width)


Cell = str | Items


def counts(values: dict[str, int], empty: str = "-") -> Items:
    """``A`` for one value; ``NOERROR 3, NXDOMAIN 1`` (most first) for several."""
    if len(values) == 1:
        return Items((next(iter(values)) or empty,))
    ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    return Items(tuple(f"{k or empty} {c}" for k, c in ordered))


def stamp(value: float) -> str:
    return iso(value).replace("T", " ").rstrip("Z")


def _short_stamp(text: str) -> str:
    """``2026-11-20 10:00:01`` -> ``11-20 10:00``: for narrow terminals."""
    return text[5:16]


def now_values(stats: NameStats, labels: Sequence[str]) -> dict[str, int]:
    """Queries per decision now, per firewall (``#N``) when there are several."""
    if not stats.policy:
        return {}
    per: dict[tuple[int, Decided], int] = {}
    for (index, _, decided), tally in pairs(stats.policy):
        per[(index, decided)] = per.get((index, decided), 0) + queries_of(tally)
    values: dict[str, int] = {}
    for (index, decided), n in per.items():
        text = _decided_short(decided)
        if len(labels) > 1:
            text = f"#{index + 1} {text}"
        values[text] = values.get(text, 0) + n
    return values


def _decided_short(decided: Decided) -> str:
    rule = decided.rule
    if rule is None:
        return "-"
    via = f" via {decided.target}" if decided.target else ""
    return f"{rule.action} {rule.group}/{rule.name}{via}"


# --- table -----------------------------------------------------------------------------


Row = list[Cell] | str  # a str is a section line across the table


class Table:
    """Aligned columns, fitted to a width (see ``_fit``); a table that cannot fit runs over.

    ``rows()`` is called twice, to measure and to print, so that a table of a hundred
    thousand names is never held whole.
    """

    def __init__(
        self,
        headers: Sequence[str],
        rows: Callable[[], Iterable[Row]],
        short: dict[str, Callable[[str], str]] | None = None,
    ) -> None:
        self.headers = list(headers)
        self.rows = rows
        self.short = {self.headers.index(h): f for h, f in (short or {}).items()}

    def render(self, width: int | None, indent: str = "  ") -> Iterator[str]:
        natural, short, names = self._measure()
        shown = list(range(len(self.headers)))
        shortened: set[int] = set()
        widths = natural
        if width is not None:
            shown, shortened, widths = self._fit(natural, short, names, width - len(indent))
        right = {i for i, h in enumerate(self.headers) if h == "QUERIES"}
        yield indent + self._line(self.headers, widths, shown, right, set())
        for row in self.rows():
            if isinstance(row, str):
                yield _cut(row, width) if width is not None else row
            else:
                yield indent + self._line(row, widths, shown, right, shortened)

    def _measure(self) -> tuple[list[int], list[int], dict[int, int]]:
        """Widths of every column in full and in short form; how many names of each length."""
        natural = [len(h) for h in self.headers]
        short = list(natural)
        names: dict[int, int] = {}
        for row in self.rows():
            if isinstance(row, str):
                continue
            for i, cell in enumerate(row):
                text = str(cell)
                natural[i] = max(natural[i], len(text))
                form = self.short.get(i)
                short[i] = max(short[i], len(form(text) if form else text))
            names[len(str(row[0]))] = names.get(len(str(row[0])), 0) + 1
        return natural, short, names

    def _fit(
        self, natural: list[int], short: list[int], names: dict[int, int], budget: int
    ) -> tuple[list[int], set[int], list[int]]:
        """(columns shown, columns in short form, widths): the least damage that fits.

        Tries, in order, each with the columns of ``SHRINK_ORDER`` cut to their minimum as
        needed: nothing more; times in short form; NAME cut to the length of 90% of the
        names (a few long names are cut, not every row's other columns); then each column
        of ``DROP_ORDER`` left out; at last NAME cut to its minimum.
        """
        index = {h: i for i, h in enumerate(self.headers)}
        drops = [index[h] for h in DROP_ORDER if h in index]
        typical = max(MIN_WIDTH["NAME"], _percentile(names, 0.9))
        all_short = set(self.short)
        plans: list[tuple[set[int], int, int | None]] = [(set(), 0, None), (all_short, 0, None)]
        plans += [(all_short, n, typical) for n in range(len(drops) + 1)]
        plans.append((all_short, len(drops), MIN_WIDTH["NAME"]))
        for shortened, dropped, name_floor in plans:
            shown = [i for i in range(len(self.headers)) if i not in drops[:dropped]]
            widths = [short[i] if i in shortened else w for i, w in enumerate(natural)]
            if self._shrink(widths, budget, shown, name_floor):
                break
        return shown, shortened, widths  # the last plan may still not fit: it runs over

    def _shrink(
        self, widths: list[int], budget: int, shown: list[int], name_floor: int | None
    ) -> bool:
        """Cut the columns of ``SHRINK_ORDER`` (NAME only down to ``name_floor``, if given)
        until the shown columns fit ``budget``; whether they do."""
        excess = sum(widths[i] for i in shown) + 2 * (len(shown) - 1) - budget
        for name in SHRINK_ORDER:
            if excess <= 0:
                break
            i = self.headers.index(name) if name in self.headers else -1
            if i not in shown:
                continue
            floor = max(MIN_WIDTH.get(name, DEFAULT_MIN_WIDTH), len(name))
            if name == "NAME":
                if name_floor is None:
                    continue
                floor = name_floor
            give = min(excess, max(0, widths[i] - floor))
            widths[i] -= give
            excess -= give
        return excess <= 0

    def _line(
        self,
        cells: Sequence[Cell],
        widths: list[int],
        shown: list[int],
        right: set[int],
        shortened: set[int],
    ) -> str:
        parts = []
        for i in shown:
            cell = cells[i]
            if isinstance(cell, Items):
                text = cell.fit(widths[i])
            else:
                text = _cut(self.short[i](cell) if i in shortened else cell, widths[i])
            parts.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        return "  ".join(parts).rstrip()


def _percentile(counts: dict[int, int], fraction: float) -> int:
    """The smallest value at or above ``fraction`` of the counted values."""
    total = sum(counts.values())
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= total * fraction:
            return value
    return 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + ELLIPSIS


def write_table(audit: Audit, out: IO[str], width: int | None) -> None:
    with_policy = audit.policy is not None
    headers = ["NAME", "TYPES", "QUERIES", "FIRST", "LAST", "SOURCES", "RCODE", "LOGGED"]
    headers += ["NOW", "NOTE"] if with_policy else ["NOTE"]
    ordered = audit.ordered()
    per_domain: dict[str, list[int]] = {}
    for _, stats in ordered:
        tally = per_domain.setdefault(stats.domain, [0, 0])
        tally[0] += 1
        tally[1] += stats.queries

    def rows() -> Iterator[Row]:
        domain = None
        for name, stats in ordered:
            if stats.domain != domain:
                domain = stats.domain
                n, q = per_domain[domain]
                yield f"{domain or NO_DOMAIN}: {_plural(n, 'name')}, {_plural(q, 'query')}"
            cells: list[Cell] = [
                name,
                ",".join(sorted(stats.types)),
                str(stats.queries),
                stamp(stats.first),
                stamp(stats.last),
                Items(stats.sources, stats.other_sources > 0),
                counts(stats.rcodes),
                counts(stats.actions),
            ]
            if with_policy:
                cells.append(counts(now_values(stats, audit.firewall_labels), empty=""))
            cells.append(Items(tuple(dict.fromkeys(f.kind for f in audit.flags.get(name, ())))))
            yield cells

    table = Table(headers, rows, short={"FIRST": _short_stamp, "LAST": _short_stamp})
    for line in table.render(width):
        print(line, file=out)
    if with_policy:
        _write_policy(audit, out, width)
    print("", file=out)
    for line in summary_lines(audit):
        if width is None:
            print(line, file=out)
        else:  # wrapped, not cut: file names and reasons matter here
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            print(textwrap.fill(line, width, subsequent_indent=indent), file=out)


def _is_alert(c: Change) -> bool:
    return c.now.action == ALERT


def _differs(c: Change) -> bool:
    return c.logged != verdict(c.now.action)


def _write_policy(audit: Audit, out: IO[str], width: int | None) -> None:
    labels = audit.firewall_labels
    where = ", ".join(f"#{i + 1} {label}" for i, label in enumerate(labels)) or "none"
    print(f"\nPolicy now (firewalls: {where})", file=out)
    alerted = {c.name for c in audit.changes() if _is_alert(c)}
    print(
        "\nIf ALERT rules became BLOCK, these queries would fail "
        f"({_plural(len(alerted), 'name')}):",
        file=out,
    )
    headers = ["NAME", "TYPES", "QUERIES", "CLIENTS", "NOW"]
    _change_table(audit, _is_alert, headers, out, width)
    differ = {c.name for c in audit.changes() if _differs(c)}
    print(
        "\nDecided differently now than the log recorded (rules or lists changed since; "
        f"{_plural(len(differ), 'name')}):",
        file=out,
    )
    headers = ["NAME", "TYPES", "QUERIES", "CLIENTS", "LOGGED", "NOW"]
    _change_table(audit, _differs, headers, out, width)


def _change_table(
    audit: Audit,
    keep: Callable[[Change], bool],
    headers: list[str],
    out: IO[str],
    width: int | None,
) -> None:
    if not any(keep(c) for c in audit.changes()):
        print("  (none)", file=out)
        return
    if len(audit.firewall_labels) > 1:
        headers = ["FIREWALL", *headers]

    def rows() -> Iterator[Row]:
        for c in audit.changes():
            if not keep(c):
                continue
            cells: dict[str, Cell] = {
                "FIREWALL": f"#{c.firewall + 1}",
                "NAME": c.name,
                "TYPES": ",".join(c.types),
                "QUERIES": str(c.queries),
                "CLIENTS": Items(c.clients, c.more_clients),
                "LOGGED": c.logged,
                "NOW": c.now.describe(),
            }
            yield [cells[h] for h in headers]

    for line in Table(headers, rows).render(width):
        print(line, file=out)


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def summary_lines(audit: Audit) -> list[str]:
    inv = audit.inventory
    span = inv.span()
    domains = {s.domain for s in inv.names.values()}
    lines = [
        f"{_plural(len(inv.names), 'name')} ({inv.pairs} name/type pairs) in "
        f"{_plural(len(domains), 'group')}; {_plural(inv.accepted, 'query')}"
        + (f", {iso(span[0])} .. {iso(span[1])}" if span else ""),
        f"read {_plural(inv.lines, 'line')} from {_plural(len(inv.files), 'file')}: "
        f"{inv.accepted} counted, {inv.outside} outside the time window, {inv.bad} bad",
    ]
    lines += [f"  bad: {example}" for example in inv.bad_examples]
    if audit.flags:
        lines.append(f"flagged: {_plural(len(audit.flags), 'name')} (NOTE column)")
    for domain, stats in sorted(inv.overflow.items()):
        what = (
            f"more than {inv.max_names} names in all (--max-names)"
            if domain == CATCH_ALL
            else f"more than {inv.max_per_domain} names under {domain} (--max-per-domain)"
        )
        lines.append(f"overflow: {_plural(stats.queries, 'query')} for {what}, counted only")
    if audit.policy is not None and audit.policy.unevaluated:
        lines.append(f"policy: {audit.policy.unevaluated} queries with invalid names not evaluated")
    return lines


# --- json and csv ------------------------------------------------------------------------


def _actions(stats: NameStats) -> list[dict[str, Any]]:
    per: dict[tuple[str, str, str], int] = {}
    for (_, _, action, group, lst), n in pairs(stats.outcomes):
        per[(action, group, lst)] = per.get((action, group, lst), 0) + n
    return [
        {"action": a or None, "group": g or None, "list": lst or None, "queries": n}
        for (a, g, lst), n in sorted(per.items())
    ]


def _decided_json(decided: Decided) -> dict[str, Any] | None:
    rule = decided.rule
    if rule is None:
        return None
    return {
        "action": rule.action,
        "group": rule.group,
        "rule": rule.name,
        "list": rule.list,
        "via": decided.target or None,
    }


def _change_json(c: Change) -> dict[str, Any]:
    return {
        "name": c.name,
        "domain": c.domain or None,
        "firewall": c.firewall + 1,
        "logged": c.logged,
        "now": _decided_json(c.now),
        "now_verdict": verdict(c.now.action),
        "types": list(c.types),
        "queries": c.queries,
        "clients": list(c.clients),
        "more_clients": c.more_clients,
    }


def _name_json(audit: Audit, name: str, stats: NameStats) -> dict[str, Any]:
    return {
        "name": name,
        "domain": stats.domain or None,
        "queries": stats.queries,
        "types": dict(sorted(stats.types.items())),
        "first": iso(stats.first),
        "last": iso(stats.last),
        "sources": list(stats.sources),
        "other_source_queries": stats.other_sources,
        "rcodes": dict(sorted(stats.rcodes.items())),
        "logged": _actions(stats),
        "flags": [{"kind": f.kind, "reason": f.reason} for f in audit.flags.get(name, ())],
    }


def write_json(audit: Audit, out: IO[str]) -> None:
    """One JSON document, written name by name (one per line) rather than built whole."""
    inv = audit.inventory
    span = inv.span()
    dumps = json.dumps
    summary = {
        "files": inv.files,
        "lines": inv.lines,
        "queries": inv.accepted,
        "outside_window": inv.outside,
        "bad_lines": inv.bad,
        "bad_examples": inv.bad_examples,
        "names": len(inv.names),
        "pairs": inv.pairs,
        "domains": len({s.domain for s in inv.names.values()}),
        "first": iso(span[0]) if span else None,
        "last": iso(span[1]) if span else None,
        "since": iso(inv.window.since) if inv.window.since is not None else None,
        "until": iso(inv.window.until) if inv.window.until is not None else None,
    }
    out.write(f'{{"summary": {dumps(summary, indent=2)},\n"names": ')
    _write_array(out, (_name_json(audit, n, s) for n, s in audit.ordered()))
    overflow = [
        {"domain": None if d == CATCH_ALL else d, "queries": s.queries}
        for d, s in sorted(inv.overflow.items())
    ]
    out.write(f',\n"overflow": {dumps(overflow)}')
    if audit.policy is not None:
        labels = dumps(list(audit.firewall_labels))
        out.write(
            f',\n"policy": {{"firewalls": {labels}, "unevaluated": {audit.policy.unevaluated},'
        )
        out.write('\n"alert_to_block": ')
        _write_array(out, (_change_json(c) for c in audit.changes() if _is_alert(c)))
        out.write(',\n"changed": ')
        _write_array(out, (_change_json(c) for c in audit.changes() if _differs(c)))
        out.write("}")
    out.write("\n}\n")


def _write_array(out: IO[str], items: Iterable[Any]) -> None:
    """A JSON array, one compact element per line (the C encoder; no list built whole)."""
    out.write("[")
    for i, item in enumerate(items):
        out.write(("," if i else "") + "\n" + json.dumps(item))
    out.write("\n]")


def _cell(values: dict[str, int]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(values.items()))


def write_csv(audit: Audit, out: IO[str]) -> None:
    header = ["domain", "name", "queries", "types", "first", "last", "sources"]
    header += ["other_source_queries", "rcodes", "logged", "flags"]
    if audit.policy is not None:
        header.append("now")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for name, stats in audit.ordered():
        logged = {k or ALLOWED: v for k, v in stats.actions.items()}
        row = [
            stats.domain,
            name,
            stats.queries,
            _cell(stats.types),
            iso(stats.first),
            iso(stats.last),
            ";".join(stats.sources),
            stats.other_sources,
            _cell(stats.rcodes),
            _cell(logged),
            ";".join(str(f) for f in audit.flags.get(name, ())),
        ]
        if audit.policy is not None:
            row.append(_cell(now_values(stats, audit.firewall_labels)))
        writer.writerow(row)
