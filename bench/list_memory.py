#!/usr/bin/env python3
"""Load time, memory and lookup cost of a firewall ``DomainList``.

  python bench/list_memory.py [LIST_FILE] [--format route53|hosts|adblock]
                              [--wildcards FRACTION] [--queries N]

LIST_FILE defaults to /tmp/dnsbench-data/blocklist.txt (make it with
``python3 /work/shared/bench/gen_data.py base /tmp/dnsbench-data``). That list holds plain
names only, so ``--wildcards`` (default 0.3; 0 for a file that has its own) turns every
entry whose position falls in that fraction into ``*.name`` while reading, for a mixed list.

Prints: load time (file read + parse + build; wall and CPU); RSS after the load minus RSS before (VmRSS of
/proc/self/status, garbage collected, input released); the build's peak (VmHWM minus the RSS
before); the structure's own size (``sys.getsizeof``); then, per query kind, the matches found,
the labels per name and the mean cost of ``wire_suffixes`` alone, of ``matches(qname)`` (fresh
suffixes: their hashes are computed) and of ``match_suffixes`` on shared suffixes (hashes
cached, as for the second and later lists of a rule walk), per name and per suffix probed,
in CPU µs (best of 3 passes; the machine is shared).
Every sampled answer is checked against a plain set-of-text reference; a mismatch exits 1.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugins.firewall.lists import DomainList  # noqa: E402
from proxy.names import text_to_wire, wire_suffixes  # noqa: E402

DEFAULT_LIST = "/tmp/dnsbench-data/blocklist.txt"


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def is_wildcard_line(index: int, fraction: float) -> bool:
    # spread evenly and deterministically: line i is a wildcard when floor moves
    return int((index + 1) * fraction) != int(index * fraction)


def list_lines(path: str, fraction: float) -> Iterator[str]:
    with open(path, encoding="utf-8-sig") as f:
        for index, line in enumerate(f):
            yield "*." + line if fraction and is_wildcard_line(index, fraction) else line


def reference_probes(exact: set[str], wild: set[str], name: str) -> tuple[bool, int]:
    """(matches, suffixes a walk probes): up to the first match, else all and the root."""
    if name in exact:
        return True, 1
    labels = name.split(".")
    for i in range(1, len(labels)):
        if ".".join(labels[i:]) in wild:
            return True, i + 1
    return False, len(labels) + 1


def sample_queries(
    dl: DomainList, count: int, rng: random.Random
) -> tuple[dict[str, list[str]], set[str], set[str]]:
    """Query names per kind, and the entries they were drawn from (for the reference)."""
    exact: list[str] = []
    wild: list[str] = []
    for entry in dl.entries():
        (wild if entry.startswith("*.") else exact).append(entry.removeprefix("*."))
    ex = rng.sample(exact, min(count, len(exact)))
    wi = rng.sample(wild, min(count, len(wild)))
    kinds = {
        "exact hit": ex,
        "wildcard hit (www.)": ["www." + n for n in wi],
        "deep wildcard hit (6 extra labels)": ["a.b.c.d.e.f." + n for n in wi],
        "miss (first label changed)": ["zq" + n for n in ex],
        "deep miss (6 extra labels)": ["a.b.c.d.e.f.zq" + n for n in ex],
        "miss (unrelated names)": [f"host{i}.example-{i % 97}.test" for i in range(len(ex))],
    }
    return kinds, set(exact), set(wild)


def per_call_us(fn: Callable[[bytes], object], args: list, repeat: int = 3) -> float:
    # CPU time, best of ``repeat``: the machine is shared, and preemption is not our cost
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for a in args:
            fn(a)
        best = min(best, time.process_time() - t0)
    return best / len(args) * 1e6


def fresh(wires: list[bytes]) -> list[bytes]:
    # new bytes objects, so that hash() is computed again as it is for a new query
    return [bytes(bytearray(w)) for w in wires]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("list_file", nargs="?", default=DEFAULT_LIST)
    ap.add_argument("--format", default="route53")
    ap.add_argument("--wildcards", type=float, default=0.3)
    ap.add_argument("--queries", type=int, default=50_000)
    args = ap.parse_args()

    gc.collect()
    rss0 = proc_status_mb("VmRSS")
    t0 = time.perf_counter()
    c0 = time.process_time()
    dl, report = DomainList.from_lines(
        list_lines(args.list_file, args.wildcards), fmt=args.format, file=args.list_file
    )
    load_cpu_s = time.process_time() - c0
    load_s = time.perf_counter() - t0
    gc.collect()
    rss1 = proc_status_mb("VmRSS")
    peak = proc_status_mb("VmHWM")
    print(f"python={sys.version.split()[0]} file={args.list_file} format={args.format}")
    print(
        f"entries={len(dl)} skipped={report.skipped} load_s={load_s:.2f} load_cpu_s={load_cpu_s:.2f} "
        f"rss_delta_mb={rss1 - rss0:.1f} build_peak_mb={peak - rss0:.1f} "
        f"structure_mb={sys.getsizeof(dl) / 2**20:.1f}"
    )

    c0 = time.process_time()
    for _ in dl.entries():
        pass
    print(f"entries_iteration_cpu_s={time.process_time() - c0:.2f}")

    rng = random.Random(20261122)
    kinds, exact, wild = sample_queries(dl, args.queries, rng)
    failed = False
    for kind, names in kinds.items():
        if not names:
            continue
        wires = [text_to_wire(n) for n in names]
        answers = [dl.matches(w) for w in wires]
        expected = [reference_probes(exact, wild, n) for n in names]
        bad = sum(a != e[0] for a, e in zip(answers, expected, strict=True))
        failed |= bad > 0
        suffixes = [wire_suffixes(w) for w in wires]
        labels = sum(len(s) - 1 for s in suffixes) / len(suffixes)
        probes = sum(e[1] for e in expected) / len(expected)
        ws_us = per_call_us(wire_suffixes, fresh(wires))
        cold_us = per_call_us(dl.matches, fresh(wires))
        warm_us = per_call_us(dl.match_suffixes, suffixes)
        print(
            f"{kind:36s} n={len(names)} matched={sum(answers)} wrong={bad} labels={labels:.1f} "
            f"probes={probes:.1f} wire_suffixes_us={ws_us:.2f} matches_us={cold_us:.2f} "
            f"shared_us={warm_us:.2f} shared_us_per_probe={warm_us / probes:.2f} "
            f"matches_us_per_probe={(cold_us - ws_us) / probes:.2f}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
