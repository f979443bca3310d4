"""Lists are parsed and built in a forked child (plugins/firewall/child.py): queries keep being
answered while a reload or an admin PUT builds a large list, the serving process spends no CPU
on the parse, and a build that fails or dies keeps the old list serving."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dns.rcode
import pytest

from plugins.firewall.child import BuildFailed, in_child
from plugins.firewall.lists import DomainList, EntryError, ListError
from plugins.firewall.sources import ListEditError
from proxy.names import text_to_wire
from tests.kit.api import Api, Reply
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import Dnsfw, free_port
from tests.kit.reloads import cpu_seconds, write_big_list

ENTRIES = 300_000  # about a second of parse and build on the test machines

CONF = """
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$ADMIN
    firewall {
        list big file $LIST
        group g 10 {
            rule block-big 10 BLOCK big response nxdomain
        }
    }
    whoami
}
"""


def start(dnsfw, tmp_path: Path) -> tuple[Dnsfw, Api]:
    admin = free_port()
    d = dnsfw(corefile(CONF, ADMIN=admin, LIST=tmp_path / "big.txt"))
    return d, Api(admin, token=None)


def answered_while(busy, d: Dnsfw, name: str, rcode: int, timeout: float = 60.0) -> int:
    """Queries for ``name`` answered ``rcode`` one after another while ``busy()``; how many
    came back while it still was (each one is checked whenever it comes back)."""
    answered = 0
    deadline = time.monotonic() + timeout
    while busy():
        assert time.monotonic() < deadline, "the build did not finish"
        assert d.query(name, timeout=10.0).rcode() == rcode
        answered += bool(busy())
        time.sleep(0.01)  # a trickle: the serving process's CPU stays the reload's own
    return answered


def test_queries_are_answered_while_a_reload_builds_a_big_list(dnsfw, tmp_path: Path) -> None:
    write_big_list(tmp_path / "big.txt", ENTRIES)
    d, _ = start(dnsfw, tmp_path)
    assert d.proc is not None
    own, children = cpu_seconds(d.proc.pid)
    write_big_list(tmp_path / "big.txt", ENTRIES, 1)
    d.signal(signal.SIGHUP)

    def reloading() -> bool:
        return "event='reloaded'" not in d.stderr

    # host7 is in both lists: blocked by the old one until the new one is swapped in
    assert answered_while(reloading, d, "host7.zone7.example", dns.rcode.NXDOMAIN) > 0
    assert d.query("gen1.example").rcode() == dns.rcode.NXDOMAIN
    own_after, children_after = cpu_seconds(d.proc.pid)
    # the parse and the build ran in a child process, not in the one answering queries
    assert children_after - children > own_after - own, (own, own_after, children_after)


def test_a_put_of_a_big_list_is_built_off_the_serving_process(dnsfw, tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("host7.zone7.example\n")
    d, api = start(dnsfw, tmp_path)
    assert d.proc is not None
    write_big_list(tmp_path / "put.txt", ENTRIES)
    body = (tmp_path / "put.txt").read_text()
    own, children = cpu_seconds(d.proc.pid)
    replies: list[Reply] = []
    put = threading.Thread(
        target=lambda: replies.append(
            api.call("PUT", "/v1/lists/big", body, headers={"Content-Type": "text/plain"})
        )
    )
    put.start()
    try:
        assert answered_while(put.is_alive, d, "host7.zone7.example", dns.rcode.NXDOMAIN) > 0
    finally:
        put.join(60)
    (reply,) = replies
    assert reply.status == 200, reply.body
    assert reply.json["entries"] == ENTRIES + 1
    assert d.query("gen0.example").rcode() == dns.rcode.NXDOMAIN
    assert (tmp_path / "big.txt").read_text().count("\n") == ENTRIES + 3  # header, dated mark
    own_after, children_after = cpu_seconds(d.proc.pid)
    assert children_after - children > own_after - own, (own, own_after, children_after)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def test_a_build_that_dies_fails_the_reload_and_keeps_the_old_list(dnsfw, tmp_path: Path) -> None:
    write_big_list(tmp_path / "big.txt", ENTRIES)
    d, _ = start(dnsfw, tmp_path)
    assert d.proc is not None
    write_big_list(tmp_path / "big.txt", ENTRIES, 1)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while not (builders := children_of(d.proc.pid)):  # the child building the new list
        assert time.monotonic() < deadline and "event='reloaded'" not in d.stderr
        time.sleep(0.005)
    for pid in builders:
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    while "reload_failed" not in d.stderr:
        assert time.monotonic() < deadline, d.stderr
        time.sleep(0.05)
    assert "killed by signal 9" in d.stderr
    assert d.query("host7.zone7.example").rcode() == dns.rcode.NXDOMAIN  # the old list serves
    assert d.query("gen1.example").rcode() == dns.rcode.NOERROR
    d.signal(signal.SIGHUP)  # nothing was lost: the next reload builds the new list
    while "event='reloaded'" not in d.stderr:
        assert time.monotonic() < deadline + 30, d.stderr
        time.sleep(0.05)
    assert d.query("gen1.example").rcode() == dns.rcode.NXDOMAIN


# --- in_child itself ------------------------------------------------------------------------


def build(lines: list[str]) -> tuple[DomainList, int]:
    return DomainList.from_lines(lines)[0], os.getpid()


def refuse(status: int) -> None:
    raise ListEditError("invalid domain list entries", status, ["'a..b': empty label"])


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def test_a_list_built_in_a_child_matches_here() -> None:
    content, pid = await in_child(build, ["*.ads.example", "tracker.example"])
    assert pid != os.getpid()
    assert content.matches(text_to_wire("x.ads.example"))
    assert content.matches(text_to_wire("tracker.example"))
    assert not content.matches(text_to_wire("ads.example"))
    assert list(content.entries()) == ["*.ads.example", "tracker.example"]


async def test_a_child_raises_here_what_it_raised_there() -> None:
    with pytest.raises(ListError) as listed:
        await in_child(build, ["ok.example", "bad..example"])
    assert listed.value.errors == [EntryError("<inline>", 2, "bad..example", "empty label")]
    assert str(listed.value) == "<inline>:2 - invalid domain list entry 'bad..example': empty label"
    with pytest.raises(ListEditError) as refused:
        await in_child(refuse, 400)
    assert (refused.value.status, refused.value.errors) == (400, ["'a..b': empty label"])
    with pytest.raises(BuildFailed, match="killed by signal 9"):
        await in_child(die)


def test_a_table_is_adopted_only_under_the_seed_it_was_built_with() -> None:
    seed_mark, *rest = DomainList.from_entries(["a.example"]).state()
    assert DomainList.adopt(seed_mark, *rest).matches(text_to_wire("a.example"))
    with pytest.raises(ValueError, match="another hash"):
        DomainList.adopt(seed_mark + 1, *rest)
