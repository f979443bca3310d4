"""Where the firewall's lists come from and how they are replaced: ``url`` lists from an HTTP
server in this process (refresh, failed refreshes, ETag/304, the on-disk last good copy), file
lists across reloads, admin edits, and the atomic swap of a list under concurrent readers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.server
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from plugins.firewall.config import ListSpec
from plugins.firewall.lists import DomainList, ListError
from plugins.firewall.sources import ListEditError, ListSlot
from proxy.names import text_to_wire
from tests.kit.corefiles import corefile

# --- an HTTP list server in this process ---------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One GET as the server saw it."""

    if_none_match: str | None
    status: int


class ListServer:
    """Serves one list at /list.txt; tests switch what it answers while dnsfw polls it."""

    def __init__(self) -> None:
        self.body = ""
        self.etag: str | None = None
        self.status = 200
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with server.lock:
                    body, etag, status = server.body, server.etag, server.status
                    inm = self.headers.get("If-None-Match")
                    if status == 200 and etag is not None and inm == etag:
                        status = 304
                    server.hits.append(Hit(inm, status))
                if status == 200:
                    data = body.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    if etag is not None:
                        self.send_header("ETag", etag)
                    self.end_headers()
                    self.wfile.write(data)
                elif status == 304:
                    self.send_response(304)
                    self.end_headers()
                else:
                    self.send_error(status)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/list.txt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, body: str | None = None, *, etag: str | None = None, status: int = 200) -> int:
        """Switch what the server answers; returns the number of hits so far."""
        with self.lock:
            if body is not None:
                self.body = body
            self.etag = etag
            self.status = status
            return len(self.hits)

    def hits_since(self, mark: int) -> list[Hit]:
        with self.lock:
            return self.hits[mark:]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def lists_server() -> Iterator[ListServer]:
    server = ListServer()
    yield server
    server.close()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DNSFW_STATE_DIR for this process and the dnsfw it starts (systemd's variable unset)."""
    path = tmp_path / "state"
    monkeypatch.setenv("DNSFW_STATE_DIR", str(path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    return path


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- url lists, end to end -------------------------------------------------------------------

URL_COREFILE = """\
.:$PORT {
    bind 127.0.0.1
    firewall {
        list remote url $URL refresh 1s
        group g 1 {
            rule r 1 BLOCK remote response nxdomain
        }
    }
    forward . $UPSTREAM
}
"""


def verdict(port: int, name: str) -> str:
    """'blocked' (by rule r), 'servfail' (fail closed) or 'resolved'."""
    msg = dns.query.udp(
        dns.message.make_query(name, "A", use_edns=0), "127.0.0.1", port=port, timeout=3
    )
    if msg.rcode() == dns.rcode.SERVFAIL:
        return "servfail"
    if any(o.otype == dns.edns.EDE and "rule 'r'" in (o.text or "") for o in msg.options):
        assert msg.rcode() == dns.rcode.NXDOMAIN
        return "blocked"
    return "resolved"


def test_url_list_refresh_failures_etag_and_disk_copy(
    dnsfw, upstream, lists_server: ListServer, state_dir: Path
):
    env = {"DNSFW_STATE_DIR": str(state_dir), "STATE_DIRECTORY": ""}
    text = corefile(URL_COREFILE, URL=lists_server.url, UPSTREAM=upstream.address)
    lists_server.serve("ads.example\n*.tracker.example\n", etag='"v1"')
    d = dnsfw(text, env=env)
    wait_for(lambda: verdict(d.port, "ads.example") == "blocked", "the first download")
    assert verdict(d.port, "b.tracker.example") == "blocked"
    assert verdict(d.port, "gmail.com") == "resolved"

    # unchanged list: conditional GETs answered 304, the list keeps serving
    wait_for(lambda: lists_server.hits_since(1), "a refresh")
    assert lists_server.hits_since(1)[0] == Hit('"v1"', 304)
    assert verdict(d.port, "ads.example") == "blocked"

    # failed refreshes (server error, then bodies that are not lists) keep the old list whole
    failures = [
        (None, 500),
        ("<html><body>captive portal: new.example</body></html>\n", 200),
        ("new.example\nnot a list line\n", 200),
    ]
    for body, status in failures:
        logged = d.stderr.count("list_load_failed")
        mark = lists_server.serve(body, etag='"bad"' if status == 200 else None, status=status)
        # logged once the refresh was handled, before the next one starts
        wait_for(lambda n=logged: d.stderr.count("list_load_failed") > n, f"refresh ({status})")
        assert lists_server.hits_since(mark)[0].status == status
        assert verdict(d.port, "ads.example") == "blocked"
        assert verdict(d.port, "b.tracker.example") == "blocked"
        assert verdict(d.port, "new.example") == "resolved"
    assert d.stderr.count("keeps_old=True") >= 3

    # a good new list replaces the old one at the next refresh
    lists_server.serve("new.example\n", etag='"v2"')
    wait_for(lambda: verdict(d.port, "new.example") == "blocked", "the new list")
    assert verdict(d.port, "ads.example") == "resolved"
    d.stop()
    copies = sorted(p.name for p in (state_dir / "lists").iterdir())
    assert len(copies) == 2 and copies[0].startswith("remote-") and copies[0].endswith(".json")
    assert (state_dir / "lists" / copies[1]).read_text() == "new.example\n"

    # restart: the disk copy's ETag makes the first GET conditional
    mark = lists_server.serve(etag='"v2"')
    d = dnsfw(text, env=env)
    wait_for(lambda: len(lists_server.hits_since(mark)) >= 1, "the first GET after restart")
    assert lists_server.hits_since(mark)[0] == Hit('"v2"', 304)
    assert verdict(d.port, "new.example") == "blocked"
    d.stop()

    # restart with the list server down: the last good copy still blocks
    lists_server.close()
    d = dnsfw(text, env=env)
    wait_for(lambda: verdict(d.port, "new.example") != "servfail", "the disk copy")
    assert verdict(d.port, "new.example") == "blocked"
    assert verdict(d.port, "ads.example") == "resolved"
    wait_for(lambda: "download of" in d.stderr, "the failed download to be logged")
    assert "keeps_old=True" in d.stderr


def test_url_list_never_downloaded_fails_closed(dnsfw, upstream, state_dir: Path):
    text = corefile(URL_COREFILE, URL="http://127.0.0.1:9/list.txt", UPSTREAM=upstream.address)
    d = dnsfw(
        text, env={"DNSFW_STATE_DIR": str(state_dir), "STATE_DIRECTORY": ""}, wait="listening"
    )
    wait_for(lambda: "list_load_failed" in d.stderr, "the failed download")
    assert verdict(d.port, "gmail.com") == "servfail"


# --- url slots, in process ------------------------------------------------------------------


def url_slot(url: str) -> ListSlot:
    return ListSlot(ListSpec("u", "url", url=url, refresh=60.0))


async def test_url_slot_keeps_its_list_on_failures(lists_server: ListServer, state_dir: Path):
    lists_server.serve("a.example\n", etag='"1"')
    slot = url_slot(lists_server.url)
    await slot.load()
    good = slot.current
    assert good is not None and list(good.entries()) == ["a.example"]

    await slot.load()  # 304: nothing parsed, nothing swapped
    assert slot.current is good and lists_server.hits[-1] == Hit('"1"', 304)

    lists_server.serve(status=503)
    with pytest.raises(OSError, match="HTTP 503"):
        await slot.load()
    lists_server.serve("b.example\nb..example\n", etag='"2"')
    with pytest.raises(ListError, match=r"list\.txt:2 - invalid domain list entry 'b\.\.example'"):
        await slot.load()
    assert slot.current is good
    status = slot.describe()
    assert (status.status, status.failures, status.entries, status.editable) == (
        "loaded",
        2,
        1,
        False,
    )
    assert status.error is not None and "b..example" in status.error


async def test_url_slot_starts_from_the_disk_copy(lists_server: ListServer, state_dir: Path):
    lists_server.serve("a.example\n*.b.example\n", etag='"1"')
    await url_slot(lists_server.url).load()
    lists_server.close()
    # `dnsfw check` / explain read the disk copy without network
    offline = url_slot(lists_server.url)
    offline.load_now()
    assert offline.current is not None and offline.current.matches(text_to_wire("x.b.example"))
    # a restart: the copy serves, the failed download is reported
    restarted = url_slot(lists_server.url)
    with pytest.raises(OSError, match="Connection refused"):
        await restarted.load()
    assert restarted.current is not None and len(restarted.current) == 2
    assert restarted.describe().status == "loaded"
    # another URL has its own copy
    other = url_slot(lists_server.url + "?v=2")
    other.load_now()
    assert other.current is None


# --- file lists across reloads ----------------------------------------------------------------

FILE_COREFILE = """\
.:$PORT {
    bind 127.0.0.1
    firewall {
        list l file $FILE
        group g 1 {
            rule r 1 BLOCK l response nxdomain
        }
    }
    forward . $UPSTREAM
}
"""


def test_file_list_reload_with_a_broken_file_keeps_the_old_list(dnsfw, upstream, tmp_path: Path):
    listfile = tmp_path / "blocked.txt"
    listfile.write_text("ads.example\n")
    d = dnsfw(corefile(FILE_COREFILE, FILE=listfile, UPSTREAM=upstream.address))
    wait_for(lambda: verdict(d.port, "ads.example") == "blocked", "the list")

    listfile.write_text("new.example\nnew..example\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reload_failed" in d.stderr, "the failed reload")
    assert "blocked.txt:2" in d.stderr
    assert verdict(d.port, "ads.example") == "blocked"
    assert verdict(d.port, "new.example") == "resolved"

    listfile.write_text("new.example\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "event='reloaded'" in d.stderr, "the reload")
    assert verdict(d.port, "new.example") == "blocked"
    assert verdict(d.port, "ads.example") == "resolved"


# --- admin edits --------------------------------------------------------------------------------


def file_slot(path: Path, fmt: str = "route53") -> ListSlot:
    return ListSlot(ListSpec("f", "file", fmt=fmt, path=str(path)))


async def test_edits_are_written_and_serialised(tmp_path: Path):
    path = tmp_path / "f.txt"
    path.write_text("# managed by hand\nkeep.example\n")
    slot = file_slot(path)
    await slot.load()
    # concurrent ADDs: each one sees the result of the previous (no lost update)
    names = [f"n{i}.example" for i in range(20)]
    sizes = await asyncio.gather(*(slot.edit("ADD", [n]) for n in names))
    assert sorted(sizes) == list(range(2, 22))
    assert set(slot.current.entries()) == {"keep.example", *names}
    assert await slot.edit("REMOVE", ["N0.Example.", "absent.example"]) == 20
    assert await slot.edit("REPLACE", ["*.only.example", "only.example"]) == 2
    # the file holds what serves, and a fresh load reads it back
    reread = file_slot(path)
    await reread.load()
    assert list(reread.current.entries()) == ["*.only.example", "only.example"]
    with pytest.raises(ListEditError) as bad:
        await slot.edit("ADD", ["good.example", "bad..example"])
    assert bad.value.status == 400 and bad.value.errors == ["'bad..example': empty label"]
    with pytest.raises(ListEditError, match="unknown operation 'MERGE'"):
        await slot.edit("MERGE", ["x.example"])
    assert list(slot.current.entries()) == ["*.only.example", "only.example"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ListSpec("d", "domains", entries=("a.example",)), "inline in the Corefile"),
        (ListSpec("u", "url", url="http://127.0.0.1:9/u.txt"), "change it at the source"),
        (ListSpec("h", "file", fmt="hosts", path="/dev/null"), "hosts-format file"),
        (ListSpec("f", "file", path="/dev/null"), "not loaded yet"),
    ],
)
async def test_edits_refused(spec: ListSpec, message: str):
    with pytest.raises(ListEditError, match=message) as refused:
        await ListSlot(spec).edit("ADD", ["x.example"])
    assert refused.value.status == 409


async def test_hosts_file_is_left_in_its_format(tmp_path: Path):
    path = tmp_path / "hosts"
    path.write_text("0.0.0.0 ads.example\n")
    slot = file_slot(path, "hosts")
    await slot.load()
    with pytest.raises(ListEditError):
        await slot.edit("ADD", ["more.example"])
    assert path.read_text() == "0.0.0.0 ads.example\n"
    assert not slot.describe().editable


# --- the atomic swap ------------------------------------------------------------------------------

A_NAMES = [f"a{i}.example" for i in range(300)]
B_NAMES = [f"b{i}.example.net" for i in range(200)]


def which(snapshot: DomainList, a_wires: list[bytes], b_wires: list[bytes]) -> str:
    """'A' or 'B' when the snapshot is exactly one of the two lists, else what it holds."""
    a = sum(map(snapshot.matches, a_wires))
    b = sum(map(snapshot.matches, b_wires))
    if (a, b, len(snapshot)) == (len(a_wires), 0, len(a_wires)):
        return "A"
    if (a, b, len(snapshot)) == (0, len(b_wires), len(b_wires)):
        return "B"
    return f"mixed: {a} of A, {b} of B, {len(snapshot)} entries"


async def test_a_list_is_swapped_whole_under_concurrent_readers(tmp_path: Path):
    """Edits (REPLACE) and re-reads of the file alternate two disjoint lists while reader
    threads classify every snapshot they take; each swap waits until a reader saw it."""
    path = tmp_path / "l.txt"
    path.write_text("\n".join(A_NAMES) + "\n")
    slot = file_slot(path)
    await slot.load()
    first = slot.current
    a_wires = [text_to_wire(n) for n in A_NAMES]
    b_wires = [text_to_wire(n) for n in B_NAMES]
    seen: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen[which(slot.current, a_wires, b_wires)] += 1
            time.sleep(0)  # let the loading threads have the GIL too

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(24):
            want = "B" if i % 2 == 0 else "A"
            names = B_NAMES if want == "B" else A_NAMES
            if i % 4 < 2:
                await slot.edit("REPLACE", names)
            else:  # an external rewrite, re-read as a refresh or reload does
                await asyncio.to_thread(path.write_text, "\n".join(names) + "\n")
                await slot.load()
            base = seen[want]
            deadline = time.monotonic() + 10
            while seen[want] <= base:  # a reader took a snapshot of this version
                assert time.monotonic() < deadline, "readers stalled"
                await asyncio.sleep(0.001)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert {k for k in seen if k not in ("A", "B")} == set()
    assert seen["A"] >= 12 and seen["B"] >= 12
    # a list that was replaced is never changed: queries holding it finish on the whole old list
    assert which(first, a_wires, b_wires) == "A"


async def test_failed_reread_keeps_the_same_list_object(tmp_path: Path):
    path = tmp_path / "l.txt"
    path.write_text("a.example\n")
    slot = file_slot(path)
    await slot.load()
    before = slot.current
    path.write_text("a.example\nb.example\nb..example\n")
    with pytest.raises(ListError):
        await slot.load()
    assert slot.current is before and not before.matches(text_to_wire("b.example"))
    path.unlink()
    with contextlib.suppress(OSError):
        await slot.load()
    assert slot.current is before
    assert slot.describe().failures == 2


def test_reload_with_the_list_server_down_uses_the_disk_copy(
    dnsfw, upstream, lists_server: ListServer, state_dir: Path
):
    env = {"DNSFW_STATE_DIR": str(state_dir), "STATE_DIRECTORY": ""}
    text = corefile(URL_COREFILE, URL=lists_server.url, UPSTREAM=upstream.address)
    lists_server.serve("ads.example\n", etag='"v1"')
    d = dnsfw(text, env=env)
    wait_for(lambda: verdict(d.port, "ads.example") == "blocked", "the download")
    lists_server.close()
    # a configuration change while the list server is unreachable
    d.conf.write_text(d.conf.read_text().replace("refresh 1s", "refresh 1h"))
    d.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in d.stderr or "reload_failed" in d.stderr, "the reload")
    assert "reload_failed" not in d.stderr
    assert verdict(d.port, "ads.example") == "blocked"
