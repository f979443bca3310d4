"""Admin edits of ``file`` lists as a production host sees them: a list dnsfw cannot write (a
read-only directory, as ``/etc/dnsfw`` under the systemd unit) is reported not editable and
an edit of it is refused with 409; an edit keeps the reviewed file's comments, keeps earlier
versions beside it and is logged with the client and the token's identity."""

from __future__ import annotations

import re
from pathlib import Path

from tests.kit.api import TOKEN, Api
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


REVIEWED = """\
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN {
        token_file token
    }
    firewall {
        list seen file seen.txt versions 2
        group g 1 {
            rule r 1 BLOCK seen
        }
    }
    forward . $UPSTREAM
}
"""

HEADER = "# reviewed 2024-05-01 by ops\n# source: dnsfw audit --suggest\n\n"
BODY = "a.example\n# b.example  (commented out in review)\nc.example  # kept: ci\n"


def test_edits_keep_comments_versions_and_are_logged(dnsfw, upstream, tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = tmp_path / "seen.txt"
    path.write_text(HEADER + BODY)
    port = free_port()
    d = dnsfw(corefile(REVIEWED, ADMIN=port, UPSTREAM=upstream.address))
    api = Api(port)

    api.ok("PATCH", "/v1/lists/seen", {"operation": "ADD", "domains": ["d.example", "a.example"]})
    added = path.read_text()
    assert added.startswith(HEADER + BODY)
    mark, entry = added[len(HEADER + BODY) :].splitlines()
    assert re.fullmatch(
        r"# added by dnsfw admin API \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
        r"\(127\.0\.0\.1, token:[0-9a-f]{12}\)",
        mark,
    )
    assert entry == "d.example"
    assert (tmp_path / "seen.txt.1").read_text() == HEADER + BODY

    api.ok("PATCH", "/v1/lists/seen", {"operation": "REMOVE", "domains": ["c.example"]})
    assert path.read_text() == HEADER + "a.example\n# b.example  (commented out in review)\n" + (
        mark + "\nd.example\n"
    )
    assert (tmp_path / "seen.txt.1").read_text() == added
    assert (tmp_path / "seen.txt.2").read_text() == HEADER + BODY

    api.ok("PATCH", "/v1/lists/seen", {"operation": "REPLACE", "domains": ["z.example"]})
    replaced = path.read_text()
    assert replaced.startswith(HEADER + "# replaced by dnsfw admin API ")
    assert replaced[len(HEADER) :].splitlines()[1:] == ["z.example"]
    # versions 2: the oldest is dropped
    assert (tmp_path / "seen.txt.2").read_text() == added
    assert not (tmp_path / "seen.txt.3").exists()
    assert api.ok("GET", "/v1/lists/seen")["entries"] == ["z.example"]

    # PUT keeps the header too (and the body's own comments), not a second mark
    api.ok("PUT", "/v1/lists/seen", "# from the review tool\ny.example\n")
    again = path.read_text()
    assert again.startswith(HEADER + "# replaced by dnsfw admin API ")
    assert again.endswith("\n# from the review tool\ny.example\n")
    assert again.count("# replaced by") == 1

    # the edits are logged with the client and the token's fingerprint, never the token
    edits = [line for line in d.stderr.splitlines() if "list_edited" in line]
    assert len(edits) == 4
    assert all("client='127.0.0.1'" in e and "identity='token:" in e for e in edits)
    assert TOKEN not in d.stderr
    fingerprint = re.search(r"identity='token:([0-9a-f]{12})'", edits[0])
    assert fingerprint is not None and f"token:{fingerprint[1]}" in mark


def test_edits_without_a_token_are_anonymous(dnsfw, upstream, tmp_path: Path):
    path = tmp_path / "rw" / "open.txt"
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "locked.txt").write_text("locked.example\n")
    path.parent.mkdir()
    path.write_text("# hand-made\nopen.example\n")
    port = free_port()
    d = dnsfw(corefile(EDITS, ADMIN=port, UPSTREAM=upstream.address))
    Api(port, token=None).ok(
        "PATCH", "/v1/lists/open", {"operation": "ADD", "domains": ["x.example"]}
    )
    assert "(127.0.0.1, anonymous)\nx.example\n" in path.read_text()
    assert path.read_text().startswith("# hand-made\nopen.example\n# added by")
    (edit,) = [line for line in d.stderr.splitlines() if "list_edited" in line]
    assert "client='127.0.0.1'" in edit and "identity='anonymous'" in edit
