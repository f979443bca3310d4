"""Where a cache hit's time goes, in process: the full chain of a Corefile, no sockets.

    python bench/profile_hit.py [--corefile bench/corefiles/full.Corefile] [--blocklist FILE]
                                [-n 200000] [--profile] [--gc default|tuned|off]
                                [--queries /tmp/dnsbench-data/hit.txt --upstream 127.0.0.1:5301]

Starts the test upstream fixture (tests/kit/upstream.py) in a thread, sets the Corefile up (its
lists loaded synchronously), warms the cache with one pass over a set of names, then times
``Listener.query`` -- parse, routing, the chain driven by hand, reply post-processing -- on
cache hits. Prints process CPU µs per query (threads included); with --profile, a cProfile summary of the same loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time

import dns.message

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxy.config import load  # noqa: E402
from proxy.routing import Router  # noqa: E402
from proxy.server import Listener, Server  # noqa: E402
from tests.kit.upstream import Upstream  # noqa: E402

NAMES = [
    "example.com.",
    "www.example.com.",
    "mail.example.com.",
    "gmail.com.",
    "www.google.com.",
    "a.example.",
    "yahoo.co.jp.",
    "ssm.ap-northeast-1.amazonaws.com.",
]


class Sink:
    def finish(self, req, resp, exc):
        pass


def load_queries(path: str | None) -> list[bytes]:
    """Query wires: NAMES (A, EDNS) by default, else a dnsperf query file (``name TYPE``,
    no EDNS, as dnsperf sends them)."""
    if path is None:
        return [dns.message.make_query(n, "A", use_edns=0).to_wire() for n in NAMES]
    queries = []
    with open(path) as f:
        for line in dict.fromkeys(f):  # each distinct query once
            name, _, qtype = line.strip().partition(" ")
            queries.append(dns.message.make_query(name, qtype or "A").to_wire())
    return queries


async def run(args: argparse.Namespace) -> None:
    fixture = Upstream() if args.upstream is None else contextlib.nullcontext()
    with fixture as upstream:
        with open(args.corefile) as f:
            text = f.read()
        text = (
            text.replace("{PORT}", "0")
            .replace("{UPSTREAM}", args.upstream or upstream.address)
            .replace("{BLOCKLIST}", args.blocklist)
            .replace("{LOGDIR}", tempfile.mkdtemp())
        )
        fd, path = tempfile.mkstemp(suffix=".Corefile")
        os.write(fd, text.encode())
        os.close(fd)
        t0 = time.monotonic()
        config = load(path, checking=True)
        print(f"setup with lists loaded: {time.monotonic() - t0:.2f}s", file=sys.stderr)
        server = Server(config)
        from proxy.server import _run_hooks

        await _run_hooks(config.blocks, "start")
        key, zones = next(iter(config.listeners.items()))
        listener = Listener(key, Router(zones), server)
        queries = load_queries(args.queries)
        sink = Sink()
        client = ("127.0.0.1", 40000)
        # warm the cache: real upstream round trips
        block = listener.router.route(b"\x00", 1)
        from proxy.request import parse

        for q in queries:
            await block.chain(parse(q, client, "udp", listener.label))
        n = args.n
        count = len(queries)
        query = listener.query
        if args.gc == "tuned":
            from proxy.runtime import tune_gc

            tune_gc()
        elif args.gc == "off":
            import gc

            gc.disable()

        async def loop() -> None:
            # in slices, as the event loop would run them, so the log writer gets its turns
            for start in range(0, n, 100):
                for i in range(start, min(start + 100, n)):
                    query(queries[i % count], client, "udp", sink)
                await asyncio.sleep(0)

        # CPU time of the whole process (the log writer thread included): steadier than wall
        # time on a shared machine
        t0 = time.process_time()
        await loop()
        await asyncio.sleep(0.5)  # let a background writer finish what the loop queued
        elapsed = time.process_time() - t0
        print(f"{args.corefile}: {elapsed / n * 1e6:.2f} µs CPU per cache hit (n={n})")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await loop()
            await asyncio.sleep(0.5)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        await _run_hooks(config.blocks, "stop")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corefile", default="bench/corefiles/full.Corefile")
    ap.add_argument("--blocklist", default="/tmp/dnsbench-data/blocklist.txt")
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--queries", help="a dnsperf query file (default: 8 names, A, EDNS)")
    ap.add_argument("--upstream", help="ADDR:PORT to forward to (default: the test fixture)")
    ap.add_argument("--gc", choices=("default", "tuned", "off"), default="tuned")
    args = ap.parse_args()
    import uvloop

    uvloop.install()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
