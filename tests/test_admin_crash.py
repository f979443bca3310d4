"""An edit acknowledged by the admin API survives SIGKILL right after the reply."""

from __future__ import annotations

import signal
from pathlib import Path

import dns.rcode

from tests.kit.api import Api
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port

ADMIN_BLOCKING = """
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    firewall {
        list blocked file blocked.txt
        group g 1 {
            rule r 1 BLOCK blocked response nxdomain
        }
    }
    whoami
}
"""


def test_patch_survives_sigkill(dnsfw, tmp_path: Path) -> None:
    (tmp_path / "blocked.txt").write_text("old.example\n")
    admin = free_port()
    text = corefile(ADMIN_BLOCKING, ADMIN=admin)
    first = dnsfw(text)
    api = Api(admin, token=None)
    api.wait()
    for i in range(3):  # several edits, each killed right after its reply
        done = api.ok(
            "PATCH", "/v1/lists/blocked", {"operation": "ADD", "domains": [f"new{i}.example"]}
        )
        assert done["entries"] == i + 2
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
        first = dnsfw(text)  # a new process (a new DNS port) with the same Corefile and list
        api.wait()
        entries = api.ok("GET", "/v1/lists/blocked")["entries"]
        assert entries == sorted(["old.example", *(f"new{j}.example" for j in range(i + 1))])
        assert first.query(f"new{i}.example").rcode() == dns.rcode.NXDOMAIN
    # no temporary file was left beside the list
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dnsfw-")) == []
