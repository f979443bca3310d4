"""dnsfw audit - turn a trial period of query logs into a reviewed allowlist.

    dnsfw audit [--since T] [--until T] [--policy COREFILE] [--suggest FILE]
                [--wildcard-min N] [--format table|json|csv]
                [--max-names N] [--max-per-domain N] LOG...

Reads Route 53 Resolver query logs (JSON lines, plain or gzip; files, directories or ``-``
for standard input; see ``commands.audit.scan``), streamed in bounded memory, and prints the inventory
of every name queried: its query types, query count, first and last time, source addresses,
rcodes and the firewall action the log recorded, grouped by registrable domain (Public Suffix
List). Names that look like probes or noise are flagged (``commands.audit.names``).

Options:

* ``--since T`` / ``--until T``: only queries at or after / before T. T is ISO 8601 (a date
  ``2026-11-20`` is its midnight UTC; ``2026-11-20T10:00:00Z``; no offset means UTC) or an
  age before now (``30m``, ``24h``, ``7d``, ``2w``).
* ``--policy COREFILE``: evaluate every query against that Corefile's firewalls as they stand
  (lists loaded now; see ``commands.audit.policy``), and show which names would break, for which
  clients, if ALERT rules became BLOCK, and which are decided differently now than logged.
* ``--suggest FILE``: write a domain list (Route 53 syntax) that allows everything seen and
  not flagged, collapsed to ``*.NAME`` where ``--wildcard-min`` (default 3; 0: never)
  distinct labels were seen below NAME, each entry commented with why it is there; the
  CNAME/DNAME targets of the answers follow the entry that led to them (a rule with
  ``redirection inspect``, the default, evaluates them too: without them a catch-all BLOCK
  would block the name; see ``commands.audit.names``); flagged names follow commented out.
  Use it in a rule: ``list seen file FILE`` + ``rule allow-seen 100 ALLOW seen``, before
  ``rule block-all 1000 BLOCK all`` over ``list all domains *``.
* ``--format``: ``table`` (default; fitted to the terminal's width), ``json`` or ``csv``
  (see ``commands.audit.report``).
* ``--max-names`` (default 200000) and ``--max-per-domain`` (default 1000) bound memory;
  names beyond them are counted per registrable domain, not kept one by one.

Bad lines are counted and the first few reported with file and line; they are not fatal.
Exit status: 0, or 1 for bad arguments, a missing log path, a bad Corefile or a list that
``--policy`` cannot load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import IO

from plugins.firewall import load_offline
from plugins.firewall.lists import ListError
from plugins.firewall.policy import NotLoaded
from proxy.corefile import CorefileError

from .names import Domains, flag_names, render_list, suggest
from .policy import PolicyCheck
from .report import Audit, write_csv, write_json, write_table
from .scan import (
    DEFAULT_MAX_NAMES,
    DEFAULT_MAX_PER_DOMAIN,
    Inventory,
    TimeWindow,
    parse_time_arg,
)

DEFAULT_WILDCARD_MIN = 3


def _time(text: str) -> float:
    try:
        return parse_time_arg(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a whole number > 0")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnsfw audit", description="Inventory of query logs; suggest an allowlist."
    )
    p.add_argument("logs", nargs="+", metavar="LOG", help="log file or directory; - for stdin")
    p.add_argument("--since", type=_time, metavar="T", help="ISO 8601 time or age (24h, 7d)")
    p.add_argument("--until", type=_time, metavar="T", help="ISO 8601 time or age (exclusive)")
    p.add_argument("--policy", metavar="COREFILE", help="evaluate against this Corefile's firewall")
    p.add_argument("--suggest", metavar="FILE", help="write a suggested domain list to FILE")
    p.add_argument(
        "--wildcard-min",
        type=_count,
        default=DEFAULT_WILDCARD_MIN,
        metavar="N",
        help=f"labels seen below a name that make it *.name (default {DEFAULT_WILDCARD_MIN}; 0 never)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table for people (default), json or csv for scripts",
    )
    p.add_argument(
        "--max-names",
        type=_positive,
        default=DEFAULT_MAX_NAMES,
        metavar="N",
        help=f"names kept one by one, in all (default {DEFAULT_MAX_NAMES}); bounds memory",
    )
    p.add_argument(
        "--max-per-domain",
        type=_positive,
        default=DEFAULT_MAX_PER_DOMAIN,
        metavar="N",
        help=f"names kept per registrable domain (default {DEFAULT_MAX_PER_DOMAIN})",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.since is not None and args.until is not None and args.since >= args.until:
        print("dnsfw audit: --since must be before --until", file=sys.stderr)
        return 1
    check = None
    labels: tuple[str, ...] = ()
    if args.policy:
        try:
            check, labels = _load_policy(args.policy)
        except (CorefileError, ListError, OSError, ValueError) as err:
            print(f"dnsfw audit: --policy: {err}", file=sys.stderr)
            return 1
    domains = Domains()
    inventory = Inventory(
        domains.registrable,
        window=TimeWindow(args.since, args.until),
        max_names=args.max_names,
        max_per_domain=args.max_per_domain,
        observer=check,
    )
    try:
        inventory.read(args.logs)
    except FileNotFoundError as err:
        print(f"dnsfw audit: {err}", file=sys.stderr)
        return 1
    except NotLoaded as err:
        print(
            f"dnsfw audit: --policy: {err} (a url list with no downloaded copy?)", file=sys.stderr
        )
        return 1
    audit = Audit(inventory, flag_names(inventory), check, labels)
    if args.suggest and not _write_suggestion(audit, domains, args.suggest, args.wildcard_min):
        return 1
    if inventory.bad and args.format != "table":
        print(f"dnsfw audit: {inventory.bad} bad lines, first:", file=sys.stderr)
        for example in inventory.bad_examples:
            print(f"  {example}", file=sys.stderr)
    return _write(audit, args.format, sys.stdout)


def _write_suggestion(audit: Audit, domains: Domains, path: str, wildcard_min: int) -> bool:
    suggestion = suggest(audit.inventory, domains, audit.flags, wildcard_min)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_list(suggestion, audit.inventory))
    except OSError as err:
        print(f"dnsfw audit: cannot write {path}: {err.strerror}", file=sys.stderr)
        return False
    wildcards = sum(e.kind == "wildcard" for e in suggestion.allowed)
    targets = sum(e.kind == "target" for e in suggestion.allowed)
    print(
        f"dnsfw audit: wrote {path}: {len(suggestion.allowed)} entries "
        f"({wildcards} wildcards, {targets} CNAME/DNAME targets), "
        f"{len(suggestion.flagged)} flagged",
        file=sys.stderr,
    )
    return True


def _load_policy(path: str) -> tuple[PolicyCheck, tuple[str, ...]]:
    firewalls = load_offline(path)
    if not firewalls:
        raise ValueError(f"{path} has no firewall")
    labels = tuple(f"{fw.spec.file}:{fw.spec.line}" for fw in firewalls)
    return PolicyCheck(firewalls), labels


def _width(out: IO[str]) -> int | None:
    """The terminal's width (``COLUMNS`` first); None, no limit, when not on a terminal."""
    if "COLUMNS" in os.environ or out.isatty():
        return shutil.get_terminal_size().columns
    return None


def _write(audit: Audit, fmt: str, out: IO[str]) -> int:
    try:
        if fmt == "json":
            write_json(audit, out)
        elif fmt == "csv":
            write_csv(audit, out)
        else:
            write_table(audit, out, _width(out))
        out.flush()
    except BrokenPipeError:  # `dnsfw audit ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0
