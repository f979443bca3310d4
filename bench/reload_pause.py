"""Query latency across reloads of a changed 1M-entry list: dnsperf at a fixed rate while the
list file changes and dnsfw gets SIGHUP, a few times.

    python bench/reload_pause.py [--dnsfw .venv/bin/dnsfw] [--rate 2000] [--seconds 30]
                                 [--reloads 5] [--corefile bench/corefiles/full.Corefile]

``--reloads 0`` measures the same run without reloads (the machine's own noise). To compare
before and after, run it once per dnsfw binary (``--dnsfw /path/to/other/venv/bin/dnsfw``).

Uses bench/run.sh's data in ``$TMPDIR/dnsbench-data`` (``blocklist.txt``: 1M entries;
``hit.txt``: the cache-hit workload; made by ``../shared/bench/run_bench.sh --prepare -d DIR``)
and its Knot upstream on 127.0.0.1:5301 (started here, and stopped at the end, when none is
running). dnsfw runs the Corefile (default: the full chain, query log, firewall with a copy
of the 1M list, cache, forward); each reload appends one name to the copy, so the list is
parsed and built again. dnsperf's flags are bench_run.py's latency run (``-c 10 -q 100 -t 5
-Q RATE -v``), after one warming pass over ``hit.txt``.

Prints one line: queries, lost, latency percentiles and max in ms over the whole run, the
answers slower than 50 ms (at most ``-q`` = 100 per pause: dnsperf sends no more meanwhile),
the reloads done and how long each took (SIGHUP to the ``reloaded`` log line), and dnsperf's
warnings about answers to ids it no longer waited for. Loopback only;
every run is bounded by ``--seconds``; everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("SHARED_BENCH", ROOT.parent / "shared" / "bench"))
DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "dnsbench-data"
UPSTREAM = "127.0.0.1:5301"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def knot_running() -> bool:
    pid_file = DATA / "knot" / "knotd.pid"
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def wait_for(predicate, what: str, timeout: float) -> float:
    """Seconds until ``predicate()``; exits when it does not come within ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            sys.exit(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.01)
    return time.monotonic() - started


def percentile(values: list[float], p: float) -> float:
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


def dnsperf(port: int, out: Path, *args: str) -> subprocess.Popen:
    """dnsperf writing to ``out``: a pipe nobody reads while reloads are sent would fill up
    and stall dnsperf itself."""
    base = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(DATA / "hit.txt")]
    flags = ["-c", "10", "-q", "100", "-t", "5", *args]
    with open(out, "w") as f:
        return subprocess.Popen([*base, *flags], stdout=f, stderr=subprocess.STDOUT)


def measure(args: argparse.Namespace, work: Path) -> str:
    port = free_port()
    listfile = work / "blocklist.txt"
    shutil.copyfile(DATA / "blocklist.txt", listfile)
    conf = work / "Corefile"
    conf.write_text(
        Path(args.corefile)
        .read_text()
        .replace("{PORT}", str(port))
        .replace("{UPSTREAM}", UPSTREAM)
        .replace("{BLOCKLIST}", str(listfile))
        .replace("{LOGDIR}", str(work))
    )
    log = work / "dnsfw.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([args.dnsfw, "run", "-conf", str(conf)], stderr=out)
    try:
        wait_for(lambda: "event='ready'" in log.read_text(errors="replace"), "dnsfw ready", 180)
        dnsperf(port, work / "warm.txt", "-n", "1").wait()  # warm the cache: all hits
        run = dnsperf(
            port, work / "dnsperf.txt", "-Q", str(args.rate), "-l", str(args.seconds), "-v"
        )
        started = time.monotonic()
        took: list[float] = []
        for i in range(1, args.reloads + 1):
            time.sleep(max(0.0, started + i * args.seconds / (args.reloads + 1) - time.monotonic()))
            with open(listfile, "a") as f:
                f.write(f"reload{i}.example\n")
            server.send_signal(signal.SIGHUP)
            took.append(
                wait_for(
                    lambda n=i: log.read_text(errors="replace").count("event='reloaded'") >= n,
                    f"reload {i}",
                    args.seconds,
                )
            )
        run.wait()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    output = (work / "dnsperf.txt").read_text(errors="replace")
    answered = [line.split() for line in output.splitlines() if line.startswith("> ")]
    # "> RCODE NAME TYPE SECONDS"; a lost query's line has no SECONDS
    latencies = sorted(float(f[-1]) * 1000 for f in answered if f[-1][0].isdigit())
    odd = [" ".join(f) for f in answered if not f[-1][0].isdigit()][:3]
    lost = next((line.split()[2] for line in output.splitlines() if "Queries lost:" in line), "?")
    if not latencies:
        sys.exit(f"dnsperf gave no latencies:\n{output[-2000:]}")
    figures = " ".join(f"p{p}={percentile(latencies, p):.2f}ms" for p in (50, 99, 99.9))
    figures += f" over50ms={sum(x > 50 for x in latencies)}"
    reloads = ",".join(f"{t:.2f}s" for t in took) or "-"
    return (
        f"dnsfw={args.dnsfw} rate={args.rate}/s queries={len(latencies)} lost={lost} "
        f"{figures} max={latencies[-1]:.2f}ms reloads={len(took)} reload_seconds={reloads}"
        + (f" without_latency={odd}" if odd else "")
        + f" unexpected_ids={output.count('unexpected')}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dnsfw", default=str(ROOT / ".venv" / "bin" / "dnsfw"))
    ap.add_argument("--corefile", default=str(HERE / "corefiles" / "full.Corefile"))
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--reloads", type=int, default=5)
    args = ap.parse_args()
    if args.seconds > 120 or args.rate > 50000:
        sys.exit("refusing: keep runs bounded (seconds <= 120, rate <= 50000)")
    if not (DATA / "blocklist.txt").exists() or not (DATA / "hit.txt").exists():
        sys.exit(f"no benchmark data in {DATA}: run {SHARED}/run_bench.sh --prepare -d {DATA}")
    own_upstream = not knot_running()
    if own_upstream:
        subprocess.run(
            [SHARED / "upstream.sh", "start", DATA, "5301"], check=True, stdout=subprocess.DEVNULL
        )
    try:
        with tempfile.TemporaryDirectory(prefix="dnsfw-reload-pause-") as work:
            print(measure(args, Path(work)))
    finally:
        if own_upstream:
            subprocess.run([SHARED / "upstream.sh", "stop", DATA], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
