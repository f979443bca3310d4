"""An offline bundle installed and used as on a host with no network (tests/test_packaging.py).

``python -m tests.kit.bundle BUNDLE_DIR DESTDIR`` runs inside ``unshare -n`` (a network
namespace holding only a loopback): it starts the upstream (:class:`Upstream`, on
``UPSTREAM_PORT``), runs the bundle's ``install.sh`` into ``DESTDIR`` (with ``SYSTEMCTL`` from
the environment, a fake that records its calls), then ``dnsfw run`` from the installed prefix
(whatever version is current after the install, which may have failed), asks it ``QUERIES``
over UDP and ``/v1/stats`` on ``ADMIN_PORT``, and prints one JSON object: the install's exit
status and output, ``dnsfw --version``, the answers (rcode and addresses) and the stats'
version and build. The namespace is new each time, so the ports are fixed: the Corefile
(:data:`COREFILE`) stays the same across installs, as an operator's does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query

from tests.kit.api import Api
from tests.kit.upstream import Upstream

UPSTREAM_PORT = 5301
DNS_PORT = 5353
ADMIN_PORT = 8053
# `local` is the list an operator edits (in the state directory); STATE is DESTDIR's
COREFILE = """\
.:{dns} {{
    bind 127.0.0.1
    admin 127.0.0.1:{admin}
    firewall {{
        list local file {state}/lists/local.txt
        group local 10 {{
            rule block-local 10 BLOCK local response nxdomain
        }}
    }}
    forward . 127.0.0.1:{upstream}
}}
"""
QUERIES = ("example.com", "www.example.com")


def corefile(destdir: Path) -> str:
    state = destdir / "var/lib/dnsfw"
    return COREFILE.format(dns=DNS_PORT, admin=ADMIN_PORT, state=state, upstream=UPSTREAM_PORT)


def ask(name: str, deadline: float) -> dict:
    query = dns.message.make_query(name, "A")
    while True:
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=DNS_PORT, timeout=1.0)
        except (dns.exception.Timeout, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        addresses = sorted(
            rd.address for rrset in reply.answer for rd in rrset if rrset.rdtype == 1
        )
        return {"rcode": dns.rcode.to_text(reply.rcode()), "addresses": addresses}


def main(bundle: Path, destdir: Path) -> dict:
    upstream = Upstream(port=UPSTREAM_PORT).start()
    env = {**os.environ, "DESTDIR": str(destdir)}
    installed = subprocess.run(
        [str(bundle / "install.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    result: dict = {"install_rc": installed.returncode, "install_output": installed.stderr}
    dnsfw = destdir / "opt/dnsfw/bin/dnsfw"
    if not dnsfw.exists():
        return result
    version = subprocess.run([str(dnsfw), "--version"], capture_output=True, text=True)
    result["version"] = version.stdout.splitlines()
    conf = destdir / "etc/dnsfw/Corefile"
    proc = subprocess.Popen(
        [str(dnsfw), "run", "-conf", str(conf)],
        cwd=destdir,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        result["answers"] = {name: ask(name, deadline) for name in QUERIES}
        stats = Api(ADMIN_PORT, token=None).ok("GET", "/v1/stats")
        result["stats"] = {"version": stats["version"], "build": stats["build"]}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        upstream.stop()
    result["dnsfw_exit"] = proc.returncode
    result["dnsfw_stderr"] = err[-2000:]
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
