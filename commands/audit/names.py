"""Registrable domains, noise flags and the suggested allowlist of ``dnsfw audit``.

**Registrable domain** is the Public Suffix List's (the ``publicsuffixlist`` package, both its
ICANN and private sections): ``alt1.gmail-smtp-in.l.google.com`` -> ``google.com``,
``mx1.mail.yahoo.co.jp`` -> ``yahoo.co.jp``; a name under a private suffix is its own owner's
(``bucket.s3.dualstack.ap-northeast-1.amazonaws.com`` is not ``amazonaws.com``'s). Names
without one (single labels, public suffixes themselves) have ``""``.

**Flags**: names that look like probes or noise are flagged, never silently allowed:

* ``probe``: cloud-init's ``__cloud_init_expected_not_found__`` label;
* ``reserved``: special-use names (``.invalid``, ``.test``, ``.example``, ``.localhost``,
  ``.onion``, mDNS ``.local``, ``.localdomain``, and ``example.com``/``.net``/``.org``);
* ``single-label``: a bare host name, which no public resolver answers;
* ``search-path``: a resolver search-path expansion: a name whose last labels repeat
  (``x.compute.internal.compute.internal``), or NAME.SUFFIX where NAME was itself queried and
  SUFFIX has two or more labels (``2.amazon.pool.ntp.org.ap-northeast-1.compute.internal``);
* ``nxdomain``: every query was answered NXDOMAIN: the name does not exist;
* ``blocked``: every query was blocked in the log (a deliberate block, e.g. a threat list);
* ``high-cardinality``: the registrable domain had more names than ``--max-per-domain``
  (random subdomains: tunnelling, DGA or telemetry; review before allowing ``*.DOMAIN``);
* ``invalid``: not a valid domain list entry.

**Suggested list** (``--suggest``): every name seen and not flagged, as Route 53 entries.
Below each registrable domain, top down: a name under which at least ``wildcard_min``
distinct labels had names seen becomes ``*.NAME`` (plus ``NAME`` itself if it was queried,
as ``*.NAME`` does not match it), otherwise its seen names are listed exactly. A wildcard is
never suggested for a public suffix nor for a name with a public suffix below it
(``*.ap-northeast-1.amazonaws.com`` would allow anyone's S3 bucket): the names stay exact,
with a note saying why. Each entry's comment says what was seen; flagged names follow,
commented out with their reason.

**CNAME/DNAME targets.** With ``redirection inspect`` (the default, as in Route 53) the
firewall evaluates every CNAME/DNAME target of an answer too, so an allowlist that ends in a
catch-all BLOCK blocks ``mirrors.fedoraproject.org`` (NODATA) unless its target
``wildcard.fedoraproject.org`` is allowed as well. The suggestion therefore lists, right after
each entry, the targets seen in the answers of the names it allows that no other entry allows,
each commented with the names that led to it: the list used as the seed's policy blocks
nothing the trial saw allowed, and inspection stays on (a target that later moves elsewhere is
blocked, and the log and EDE name it). It does not switch the rule to ``redirection trust``
(which would let an allowed name point anywhere); only for a name whose answers held more than
``MAX_TARGETS`` distinct targets (a CDN rotating its edge names, which no exact list keeps up
with) a note proposes ``redirection trust`` for the rule that allows it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from plugins.firewall.lists import normalize_entry

from .scan import CATCH_ALL, MAX_TARGETS, Inventory, NameStats, iso, pairs

CLOUD_INIT_PROBE = "__cloud_init_expected_not_found__"
RESERVED_TLDS = {
    "invalid": "reserved TLD .invalid (RFC 6761)",
    "test": "reserved TLD .test (RFC 6761)",
    "example": "reserved TLD .example (RFC 6761)",
    "localhost": "reserved TLD .localhost (RFC 6761)",
    "onion": "Tor .onion name (RFC 7686), never resolvable in DNS",
    "local": "mDNS name .local (RFC 6762), not meant for unicast DNS",
    "localdomain": "local-only domain .localdomain (a host's default search domain)",
}
DOCUMENTATION_DOMAINS = ("example.com", "example.net", "example.org")
EXAMPLES_IN_COMMENT = 5


@dataclass(frozen=True, slots=True)
class Flag:
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


class Domains:
    """Public Suffix List look-ups: registrable domains and wildcard hazards."""

    def __init__(self) -> None:
        self.psl = PublicSuffixList()
        # every suffix rule and each of its ancestors -> one rule at or below it
        self._rule_below: dict[str, str] = {}
        for rule in _psl_rules():
            labels = rule.split(".")
            for i in range(len(labels)):
                self._rule_below.setdefault(".".join(labels[i:]), rule)

    def registrable(self, name: str) -> str:
        """The registrable domain of a case-folded name without trailing dot, or ``""``."""
        if "." not in name:
            return ""
        return self.psl.privatesuffix(name) or ""

    def wildcard_hazard(self, parent: str) -> str | None:
        """Why ``*.parent`` would allow names that other people register, or None."""
        if self.psl.is_public(parent):
            return f"{parent} is a public suffix"
        rule = self._rule_below.get(parent)
        if rule is not None:
            return f"*.{parent} would cover the public suffix {rule}"
        return None


def _psl_rules() -> Iterable[str]:
    """The rules of the list the package ships, as ASCII names (``*.`` and ``!`` removed)."""
    data = importlib.resources.files("publicsuffixlist").joinpath("public_suffix_list.dat")
    with data.open("r", encoding="utf-8") as fh:
        for raw in fh:
            line = raw.split("//", 1)[0].strip()
            if not line or line.startswith("!"):  # exceptions only make names private
                continue
            line = line.removeprefix("*.")
            try:
                yield normalize_entry(line)
            except ValueError:
                continue  # an IDN rule that the IDNA 2008 mapping refuses: no ASCII name


# --- flags ---------------------------------------------------------------------------


def flag_names(inv: Inventory) -> dict[str, tuple[Flag, ...]]:
    """The flags of every flagged name of an inventory (unflagged names are absent)."""
    seen = inv.names
    crowded = {d for d in inv.overflow if d != CATCH_ALL}
    out: dict[str, tuple[Flag, ...]] = {}
    for name, stats in seen.items():
        flags = [*_name_flags(name, seen), *_traffic_flags(stats)]
        if stats.domain in crowded:
            flags.append(
                Flag(
                    "high-cardinality",
                    f"{stats.domain} had more than {inv.max_per_domain} names "
                    "(random subdomains: tunnelling, DGA or telemetry?)",
                )
            )
        if flags:
            out[name] = tuple(flags)
    return out


def _name_flags(name: str, seen: dict[str, NameStats]) -> list[Flag]:
    labels = name.split(".")
    flags: list[Flag] = []
    if CLOUD_INIT_PROBE in labels:
        flags.append(Flag("probe", "cloud-init probe of a name that must not exist"))
    tld = labels[-1]
    if tld in RESERVED_TLDS:
        flags.append(Flag("reserved", RESERVED_TLDS[tld]))
    for doc in DOCUMENTATION_DOMAINS:
        if name == doc or name.endswith("." + doc):
            flags.append(Flag("reserved", f"documentation domain {doc} (RFC 2606)"))
    if len(labels) == 1:
        flags.append(Flag("single-label", "a bare host name: no public resolver answers it"))
    expansion = _search_path(labels, seen)
    if expansion is not None:
        flags.append(Flag("search-path", expansion))
    try:
        normalize_entry(name)
    except ValueError as err:
        flags.append(Flag("invalid", f"not a valid domain list entry: {err}"))
    return flags


def _search_path(labels: list[str], seen: dict[str, NameStats]) -> str | None:
    n = len(labels)
    for k in range(2, n // 2 + 1):
        if labels[n - 2 * k : n - k] == labels[n - k :]:
            return f"the search domain {'.'.join(labels[n - k :])} appended twice"
    for i in range(1, n - 1):  # the suffix keeps at least two labels
        prefix = ".".join(labels[:i])
        if prefix in seen:
            suffix = ".".join(labels[i:])
            return f"{prefix} (queried too) with the search domain {suffix} appended"
    return None


def _traffic_flags(stats: NameStats) -> list[Flag]:
    flags = []
    rcodes = stats.rcodes
    if set(rcodes) == {"NXDOMAIN"}:
        flags.append(Flag("nxdomain", "every answer was NXDOMAIN: the name does not exist"))
    actions = stats.actions
    if actions and all(a.startswith("BLOCK") for a in actions):
        flags.append(Flag("blocked", f"blocked in every logged query ({', '.join(actions)})"))
    return flags


# --- suggestion ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the suggested list: ``kind`` is exact, wildcard, target (a CNAME/DNAME
    target of the entry before it), note or flagged."""

    kind: str
    text: str
    domain: str
    comment: str
    covers: tuple[str, ...] = ()  # seen names the entry allows (or, flagged, would)


@dataclass(frozen=True, slots=True)
class Suggestion:
    entries: tuple[Entry, ...]
    flagged: tuple[Entry, ...]
    wildcard_min: int

    @property
    def allowed(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.kind in ("exact", "wildcard", "target"))


class _Node:
    __slots__ = ("name", "seen", "children")

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = False
        self.children: dict[str, _Node] = {}


def suggest(
    inv: Inventory, domains: Domains, flags: dict[str, tuple[Flag, ...]], wildcard_min: int
) -> Suggestion:
    """The allowlist for everything seen and not flagged (see the module docstring)."""
    groups: dict[str, list[str]] = {}
    for name, stats in inv.names.items():
        if name not in flags:
            groups.setdefault(stats.domain, []).append(name)
    entries: list[Entry] = []
    for domain in sorted(groups, key=lambda d: (d == "", d)):
        names = groups[domain]
        if not domain:
            entries.extend(_exact(inv, n, "") for n in sorted(names, key=_label_order))
            continue
        root = _tree(domain, names)
        _emit(root, inv, domains, domain, wildcard_min, entries)
    flagged = [_flagged(inv, name, f) for name, f in flags.items()]
    flagged.sort(key=lambda e: (e.domain == "", e.domain, _label_order(e.text)))
    flagged.extend(_overflow_entries(inv))
    return Suggestion(_with_targets(entries, inv), tuple(flagged), wildcard_min)


def _with_targets(entries: list[Entry], inv: Inventory) -> tuple[Entry, ...]:
    """``entries`` with, after each, the CNAME/DNAME targets of the names it allows that no
    entry allows (each once, after the first entry that led to it; see the module docstring)."""
    exact = {e.text for e in entries if e.kind == "exact"}
    wildcards = {e.text[2:] for e in entries if e.kind == "wildcard"}
    leaders: dict[str, list[str]] = {}  # target -> the names whose answers held it
    after: list[list[Entry | str]] = [[] for _ in entries]  # notes, and targets to list
    for follows, entry in zip(after, entries, strict=True):
        for name in entry.covers:
            stats = inv.names[name]
            if stats.more_targets:
                follows.append(Entry("note", "", entry.domain, _crowded(name)))
            for target in stats.targets:
                try:
                    text = normalize_entry(target)
                except ValueError as err:
                    reason = f"CNAME/DNAME target {target} of {name} is not a valid entry: {err}"
                    follows.append(Entry("note", "", entry.domain, reason))
                    continue
                if text in leaders:
                    if name not in leaders[text]:
                        leaders[text].append(name)
                elif text not in exact and not _below(text, wildcards):
                    leaders[text] = [name]
                    follows.append(text)
    out: list[Entry] = []
    for follows, entry in zip(after, entries, strict=True):
        out.append(entry)
        for item in follows:
            if isinstance(item, str):
                comment = f"CNAME/DNAME target in the answers for {_some(leaders[item])}"
                item = Entry("target", item, entry.domain, comment, (item,))
            out.append(item)
    return tuple(out)


def _below(name: str, wildcards: set[str]) -> bool:
    """Whether ``*.PARENT`` covers ``name`` for some PARENT in ``wildcards``."""
    labels = name.split(".")
    return any(".".join(labels[i:]) in wildcards for i in range(1, len(labels)))


def _crowded(name: str) -> str:
    return (
        f"{name} had more than {MAX_TARGETS} distinct CNAME/DNAME targets (a CDN?): only "
        f"those seen are listed; consider `redirection trust` on a rule of its own for it"
    )


def _some(names: list[str]) -> str:
    more = ", ..." if len(names) > EXAMPLES_IN_COMMENT else ""
    return ", ".join(names[:EXAMPLES_IN_COMMENT]) + more


def _label_order(name: str) -> tuple[str, ...]:
    return tuple(reversed(name.split(".")))


def _tree(domain: str, names: list[str]) -> _Node:
    root = _Node(domain)
    for name in names:
        node = root
        rest = name[: -len(domain)].rstrip(".")
        for label in reversed(rest.split(".")) if rest else ():
            child = node.children.get(label)
            if child is None:
                child = node.children[label] = _Node(f"{label}.{node.name}")
            node = child
        node.seen = True
    return root


def _subtree(node: _Node) -> list[str]:
    out = []
    stack = list(node.children.values())
    while stack:
        n = stack.pop()
        if n.seen:
            out.append(n.name)
        stack.extend(n.children.values())
    return sorted(out, key=_label_order)


def _emit(
    node: _Node,
    inv: Inventory,
    domains: Domains,
    domain: str,
    wildcard_min: int,
    out: list[Entry],
) -> None:
    if wildcard_min and len(node.children) >= wildcard_min:
        hazard = domains.wildcard_hazard(node.name)
        if hazard is None:
            out.append(_wildcard(inv, node, domain))
            if node.seen:
                out.append(_exact(inv, node.name, domain))
            return
        out.append(Entry("note", "", domain, f"not *.{node.name}: {hazard}"))
    if node.seen:
        out.append(_exact(inv, node.name, domain))
    for label in sorted(node.children):
        _emit(node.children[label], inv, domains, domain, wildcard_min, out)


def _exact(inv: Inventory, name: str, domain: str) -> Entry:
    stats = inv.names[name]
    return Entry("exact", normalize_entry(name), domain, describe([stats]), (name,))


def _wildcard(inv: Inventory, node: _Node, domain: str) -> Entry:
    covered = _subtree(node)
    shown = ", ".join(n[: -len(node.name) - 1] for n in covered[:EXAMPLES_IN_COMMENT])
    more = ", ..." if len(covered) > EXAMPLES_IN_COMMENT else ""
    comment = (
        f"{len(covered)} names seen below ({shown}{more}); "
        f"{describe([inv.names[n] for n in covered])}"
    )
    return Entry("wildcard", "*." + normalize_entry(node.name), domain, comment, tuple(covered))


def _flagged(inv: Inventory, name: str, flags: tuple[Flag, ...]) -> Entry:
    stats = inv.names[name]
    reasons = "; ".join(str(f) for f in flags)
    return Entry("flagged", name, stats.domain, f"{reasons}; {describe([stats])}", (name,))


def _overflow_entries(inv: Inventory) -> list[Entry]:
    out = []
    for domain, stats in sorted(inv.overflow.items()):
        if domain == CATCH_ALL:
            comment = (
                f"{stats.queries} queries for names not kept: more than {inv.max_names} "
                "names in all (--max-names)"
            )
            out.append(Entry("flagged", "", "", comment))
            continue
        comment = (
            f"high-cardinality: {stats.queries} queries for names beyond the "
            f"{inv.max_per_domain} kept for {domain} (--max-per-domain); review before "
            "allowing the whole domain"
        )
        out.append(Entry("flagged", f"*.{domain}", domain, comment))
    return out


def describe(stats: list[NameStats]) -> str:
    """``A,AAAA: 6 queries from 2 clients, FIRST .. LAST; logged ALERT 6``."""
    types: dict[str, int] = {}
    actions: dict[str, int] = {}
    clients: set[str] = set()
    more_clients = False
    for s in stats:
        for t, c in s.types.items():
            types[t] = types.get(t, 0) + c
        for (_, _, action, _, _), c in pairs(s.outcomes):
            if action:
                actions[action] = actions.get(action, 0) + c
        clients.update(s.sources)
        more_clients = more_clients or s.other_sources > 0
    queries = sum(types.values())
    first = min(s.first for s in stats)
    last = max(s.last for s in stats)
    n = f"{len(clients)}+" if more_clients else str(len(clients))
    text = (
        f"{','.join(sorted(types))}: {queries} {'query' if queries == 1 else 'queries'} "
        f"from {n} {'client' if n == '1' else 'clients'}, {iso(first)} .. {iso(last)}"
    )
    if actions:
        text += "; logged " + ", ".join(f"{a} {c}" for a, c in sorted(actions.items()))
    return text


def render_list(s: Suggestion, inv: Inventory) -> str:
    """The list file: header, entries by registrable domain, flagged names commented out."""
    span = inv.span()
    period = f"{iso(span[0])} .. {iso(span[1])}" if span else "no queries"
    wildcards = (
        f"# *.NAME stands for at least {s.wildcard_min} distinct labels seen below NAME"
        " (--wildcard-min),"
        if s.wildcard_min
        else "# No wildcards (--wildcard-min 0);"
    )
    lines = [
        "# Domain list suggested by `dnsfw audit` (Route 53 syntax: NAME is that name only,",
        "# *.NAME every name below NAME). Review it before use.",
        f"# From {inv.accepted} queries of {len(inv.names)} names, {period}.",
        wildcards,
        "# never for a public suffix or above one (Public Suffix List).",
        "# A CNAME/DNAME target seen in the answers follows the entry whose names led to it:",
        "# with `redirection inspect` (the default) the firewall evaluates targets too, and",
        "# a catch-all BLOCK would block the whole answer without them.",
        "# Flagged names (probes, noise, blocked) are at the end, commented out:",
        "# uncomment a line to allow that name.",
    ]
    width = min(60, max((len(e.text) for e in s.entries + s.flagged), default=0))
    domain = None
    for e in s.entries:
        if e.domain != domain:
            domain = e.domain
            lines += ["", f"# --- {domain or '(no registrable domain)'}"]
        if e.kind == "note":
            lines.append(f"# {e.comment}")
        else:
            lines.append(f"{e.text:<{width}}  # {e.comment}")
    if s.flagged:
        lines += ["", "# --- flagged: not included"]
        for e in s.flagged:
            lines.append(f"# {e.text:<{width}}  # {e.comment}" if e.text else f"# {e.comment}")
    return "\n".join(lines) + "\n"
