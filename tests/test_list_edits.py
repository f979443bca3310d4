"""Admin edits of ``file`` lists as a production host sees them: a list dnsfw cannot write (a
read-only directory, as ``/etc/dnsfw`` under the systemd unit) is reported not editable and
an edit of it is refused with 409; an edit keeps the reviewed file's comments, keeps earlier
versions beside it and is logged with the client and the token's identity."""

from __future__ import annotations

from pathlib import Path

from tests.kit.api import Api
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port
from tests.kit.tools import need_tool

EDITS = """\
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    firewall {
        list locked file ro/locked.txt
        list open   file rw/open.txt
        group g 1 {
            rule r1 1 BLOCK locked
            rule r2 2 BLOCK open
        }
    }
    forward . $UPSTREAM
}
"""


def by_name(api: Api) -> dict[str, dict]:
    return {s["name"]: s for s in api.ok("GET", "/v1/lists")["lists"]}


def test_a_list_in_a_read_only_directory_is_not_editable(dnsfw, upstream, tmp_path: Path):
    """``ro/`` is bound read-only in dnsfw's own mount namespace (root writes through a
    mode-0555 directory; a read-only mount stops it, as ProtectSystem=strict does)."""
    unshare = need_tool("unshare", "util-linux")
    for sub, name in (("ro", "locked"), ("rw", "open")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / f"{name}.txt").write_text(f"{name}.example\n")
    ro = tmp_path / "ro"
    mount_ro = f'mount --bind "{ro}" "{ro}" && mount -o remount,ro,bind "{ro}" && exec "$@"'
    port = free_port()
    d = dnsfw(
        corefile(EDITS, ADMIN=port, UPSTREAM=upstream.address),
        wrap=(unshare, "-m", "sh", "-euc", mount_ro, "sh"),
    )
    api = Api(port, token=None)
    lists = by_name(api)
    assert lists["locked"]["editable"] is False
    reason = lists["locked"]["editable_reason"]
    assert reason.startswith(f"list 'locked' cannot be edited: dnsfw cannot write in {ro} ")
    assert "/var/lib/dnsfw/lists" in reason
    assert lists["open"]["editable"] is True and lists["open"]["editable_reason"] is None

    for method, body in (
        ("PATCH", {"operation": "ADD", "domains": ["new.example"]}),
        ("PUT", "new.example\n"),
    ):
        reply = api.call(method, "/v1/lists/locked", body)
        assert reply.status == 409, reply.body
        assert reply.headers["Content-Type"].startswith("application/json")
        assert reply.json["error"] == reason
    assert (ro / "locked.txt").read_text() == "locked.example\n"
    assert api.ok("GET", "/v1/lists/locked")["entries"] == ["locked.example"]
    # the writable list next to it is edited as ever
    api.ok("PATCH", "/v1/lists/open", {"operation": "ADD", "domains": ["new.example"]})
    assert "new.example" in (tmp_path / "rw" / "open.txt").read_text()
    assert "internal error" not in d.stderr
