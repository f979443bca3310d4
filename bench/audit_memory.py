"""Time and peak memory of ``dnsfw audit`` on a large generated query log (not a test).

    .venv/bin/python bench/audit_memory.py [--lines 1000000] [--names 100000] [--gzip]
                                           [--dir DIR] [--keep]

Writes a Route 53 query log of ``--lines`` JSON lines over about ``--names`` distinct names
(in about names/50 registrable domains, skewed popularity, 64 clients, A/AAAA/HTTPS/MX, some
ALERT and NXDOMAIN lines, CNAME chains), then runs ``dnsfw audit`` as a child process four
ways: the table, ``--format json``, the same with ``--suggest`` and with ``--policy`` (a
Corefile with an allowlist and an ALERT rule for the rest). For each it prints the wall
time and the child's peak RSS (``ru_maxrss``), beside the peak RSS of the same command on an
empty log (the interpreter, dnspython, the Public Suffix List) so the state's share shows.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TLDS = ("com", "net", "org", "io", "co.jp", "de", "co.uk", "amazonaws.com")
WORDS = [
    "api",
    "cdn",
    "www",
    "mail",
    "app",
    "img",
    "static",
    "auth",
    "login",
    "edge",
    "data",
    "mx1",
    "mx2",
    "ns1",
    "s3",
    "web",
]
COREFILE = """\
.:53 {{
    firewall {{
        list allowed file {allowed}
        list all domains *
        group trial 100 {{
            rule allow-known 10 ALLOW allowed
            rule alert-rest 900 ALERT all
        }}
    }}
    whoami
}}
"""
LINE = (
    '{{"version":"1.100000","account_id":"123456789012","region":"ap-northeast-1",'
    '"vpc_id":"vpc-0123456789abcdef0","query_timestamp":"2026-11-{day:02d}T{h:02d}:{m:02d}:{s:02d}Z",'
    '"query_name":"{name}.","query_type":"{qtype}","query_class":"IN","rcode":"{rcode}",'
    '"answers":{answers},"srcaddr":"10.0.{c1}.{c2}","srcport":"{port}","transport":"UDP",'
    '"srcids":{{"instance":"i-0123456789abcdef0"}}{firewall}}}\n'
)
ALERT = (
    ',"firewall_rule_action":"ALERT","firewall_rule_group_id":"rslvr-frg-0123456789abcdef",'
    '"firewall_domain_list_id":"rslvr-fdl-0123456789abcdef"'
)


def make_names(count: int, rng: random.Random) -> list[str]:
    domains = [f"site{i}.{rng.choice(TLDS)}" for i in range(max(1, count // 50))]
    names = set(domains)
    while len(names) < count:
        base = rng.choice(domains)
        depth = rng.choice((1, 1, 2, 3))
        labels = [f"{rng.choice(WORDS)}{rng.randrange(100)}" for _ in range(depth)]
        names.add(".".join([*labels, base]))
    return sorted(names)


def write_log(path: Path, lines: int, names: list[str], use_gzip: bool, seed: int = 1) -> None:
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(names))]  # skewed, long tail
    opener = gzip.open if use_gzip else open
    batch = 10_000
    with opener(path, "wt") as fh:  # type: ignore[operator]
        for start in range(0, lines, batch):
            chosen = rng.choices(names, weights, k=min(batch, lines - start))
            out = []
            for i, name in enumerate(chosen):
                n = start + i
                qtype = rng.choice(("A", "A", "AAAA", "HTTPS", "MX"))
                nx = n % 23 == 0
                answers = "[]"
                if not nx and qtype == "A":
                    answers = (
                        f'[{{"Rdata":"edge.{name}.cdn.example.net.","Type":"CNAME","Class":"IN"}},'
                        f'{{"Rdata":"192.0.2.{n % 250}","Type":"A","Class":"IN"}}]'
                    )
                second = n * 86400 * 7 // lines  # a week of queries, in time order
                out.append(
                    LINE.format(
                        day=20 + second // 86400,
                        h=second // 3600 % 24,
                        m=second // 60 % 60,
                        s=second % 60,
                        name=name,
                        qtype=qtype,
                        rcode="NXDOMAIN" if nx else "NOERROR",
                        answers=answers,
                        c1=n % 4,
                        c2=rng.randrange(16),
                        port=1024 + n % 60000,
                        firewall=ALERT if zlib.crc32(name.encode()) % 5 == 0 else "",
                    )
                )
            fh.write("".join(out))


def measure(args: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit status) of ``dnsfw audit ARGS`` in a child process."""
    cmd = [sys.executable, "-m", "proxy.cli", "audit", *args]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: its own ru_maxrss, not the generator's
        os.chdir(ROOT)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execv(sys.executable, cmd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--names", type=int, default=100_000)
    p.add_argument("--gzip", action="store_true", help="write the log gzip-compressed")
    p.add_argument("--dir", help="where to write the log (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    args = p.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="dnsfw-audit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    names = make_names(args.names, rng)
    log = workdir / ("queries.log.gz" if args.gzip else "queries.log")
    started = time.perf_counter()
    write_log(log, args.lines, names, args.gzip)
    print(
        f"log: {args.lines} lines, {len(names)} names, {log.stat().st_size / 1e6:.0f} MB "
        f"({'gzip' if args.gzip else 'plain'}), written in {time.perf_counter() - started:.1f} s"
    )
    allowed = workdir / "allowed.txt"
    allowed.write_text("\n".join(f"*.{n}" for n in names[::7] if n.count(".") == 1) + "\n")
    corefile = workdir / "Corefile"
    corefile.write_text(COREFILE.format(allowed=allowed))
    empty = workdir / "empty.log"
    empty.write_text("")
    runs = {
        "baseline (empty log, --policy)": [
            "--format", "json", "--policy", str(corefile), str(empty)
        ],
        "inventory (table, the default)": [str(log)],
        "inventory (--format json)": ["--format", "json", str(log)],
        "inventory + --suggest": ["--format", "json", "--suggest", str(workdir / "seen.txt"), str(log)],
        "inventory + --policy": ["--format", "json", "--policy", str(corefile), str(log)],
    }  # fmt: skip
    for label, run in runs.items():
        seconds, rss, code = measure(run)
        rate = args.lines / seconds / 1000 if "baseline" not in label else 0
        tail = f", {rate:.0f}k lines/s" if rate else ""
        print(f"{label:32} exit {code}  {seconds:6.1f} s  peak RSS {rss:6.1f} MB{tail}")
    if not args.keep and not args.dir:
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
