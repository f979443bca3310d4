"""The ``log`` plugin at work: its writer in-process (drops, flush, reopen, a stuck output),
the EC2 identity against a fake metadata service, and end to end through ``dnsfw run``
forwarding to the upstream fixture (Route 53 lines, CoreDNS formats, SIGTERM, logrotate)."""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
import structlog
from aiohttp import web

from plugins import log as logplugin
from plugins.log import identity, output
from tests.kit.corefiles import ROUTE53_LOG, SCENARIO_FIREWALL, corefile
from tests.kit.directives import log_settings
from tests.kit.messages import Decision, make_reply, make_request

ROUTE53_KEYS = [
    "version", "account_id", "region", "vpc_id", "query_timestamp", "query_name", "query_type",
    "query_class", "rcode", "answers", "srcaddr", "srcport", "transport", "srcids",
]  # fmt: skip
FIREWALL_KEYS = ["firewall_rule_action", "firewall_rule_group_id", "firewall_domain_list_id"]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# --- helpers ----------------------------------------------------------------------------


def wait_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The lines of ``path`` once it has at least ``count`` (the writer flushes every 50 ms)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"{path}: {len(lines)} lines after {timeout}s, wanted {count}")


def query_from(port: int, name: str, rdtype: str = "A", *, tcp: bool = False):
    """A query from a known source port: (reply, that port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        source_port = s.getsockname()[1]
    q = dns.message.make_query(name, rdtype)
    if tcp:
        reply = dns.query.tcp(q, "127.0.0.1", port=port, timeout=3, source_port=source_port)
    else:
        reply = dns.query.udp(q, "127.0.0.1", port=port, timeout=3, source_port=source_port)
    return reply, source_port


def blast(port: int, names: list[str], *, window: int = 64, timeout: float = 10.0) -> int:
    """Send one A query per name over one UDP socket, ``window`` outstanding at most;
    return how many were answered."""
    pending: dict[int, bytes] = {}
    answered = 0
    todo = list(enumerate(names))
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        while (todo or pending) and time.monotonic() < deadline:
            while todo and len(pending) < window:
                i, name = todo.pop()
                q = dns.message.make_query(name, "A")
                q.id = i
                pending[i] = q.to_wire()
                s.sendto(pending[i], ("127.0.0.1", port))
            ready, _, _ = select.select([s], [], [], 0.5)
            if not ready:
                continue
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                qid = (data[0] << 8) | data[1]
                if pending.pop(qid, None) is not None:
                    answered += 1
    return answered


def stop_and_wait(d) -> None:
    d.signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0, d.stderr


def route53_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def by_name(records: list[dict], name: str, rdtype: str = "A") -> dict:
    found = [r for r in records if r["query_name"] == name and r["query_type"] == rdtype]
    assert len(found) == 1, (name, rdtype, records)
    return found[0]


def answers(*items: tuple[str, str]) -> list[dict]:
    return [{"Rdata": rdata, "Type": rtype, "Class": "IN"} for rdata, rtype in items]


# --- the writer, in-process -------------------------------------------------------------


FILE_LOG = """\
log $FORMAT {
 output $DIR/q.log
$EXTRA
}"""


def file_log(tmp_path: Path, extra: str = "", fmt: str = "") -> logplugin.Log:
    body = corefile(FILE_LOG, FORMAT=fmt, DIR=tmp_path, EXTRA=extra)
    return logplugin.Log(log_settings(body))


async def serve(plugin: logplugin.Log, count: int, prefix: str = "q") -> None:
    for i in range(count):
        req = make_request(f"{prefix}{i}.example.", client=("192.0.2.1", 1000 + i))

        async def answer(r, _req=req):
            return make_reply(_req)

        resp = await plugin.serve(req, answer)
        assert resp.rcode == 0


async def test_full_queue_drops_and_counts(tmp_path):
    plugin = file_log(tmp_path, " buffer 3")
    await plugin.start()
    await serve(plugin, 10)  # one loop step: the writer cannot run in between
    assert len(plugin.sink.lines) == 3
    assert plugin.sink.dropped == 7
    assert ((str(tmp_path / "q.log"),), 7) in output.dropped_samples()
    with structlog.testing.capture_logs() as logs:
        await plugin.stop()
    lines = (tmp_path / "q.log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        "192.0.2.1:1000",
        "192.0.2.1:1001",
        "192.0.2.1:1002",
    ]
    warning = [e for e in logs if e["event"] == "query_log_dropped"]
    assert warning and warning[0]["total"] == 7 and warning[0]["log_level"] == "warning"
    dropped = dict(output.dropped_samples())[(str(tmp_path / "q.log"),)]
    assert dropped >= 7  # kept after stop: a counter never goes down


async def test_nothing_dropped_below_the_bound_and_stop_flushes(tmp_path):
    plugin = file_log(tmp_path, " buffer 5000")
    await plugin.start()
    await serve(plugin, 5000)
    await plugin.stop()
    lines = (tmp_path / "q.log").read_text().splitlines()
    assert len(lines) == 5000
    assert plugin.sink.dropped == 0 and plugin.sink.written == 5000
    assert all(re.match(r'^192\.0\.2\.1:\d+ - 29008 "A IN q\d+\.example\. udp', x) for x in lines)


async def test_a_stuck_output_never_delays_queries(tmp_path, monkeypatch):
    release = threading.Event()
    real_write = output.Sink._write

    def stuck(self, data):
        release.wait(10)
        real_write(self, data)

    monkeypatch.setattr(output.Sink, "_write", stuck)
    plugin = file_log(tmp_path, " buffer 100")
    await plugin.start()
    await serve(plugin, 50)
    await asyncio.sleep(0.3)  # the writer took those 50 and is now stuck in the write
    assert not plugin.sink.lines
    await serve(plugin, 500, prefix="late")  # answered at once, whatever the output does
    assert len(plugin.sink.lines) == 100
    assert plugin.sink.dropped == 400
    release.set()
    await plugin.stop()
    assert len((tmp_path / "q.log").read_text().splitlines()) == 150
    assert plugin.sink.written == 150


async def test_console_output_is_written_in_whole_lines_within_pipe_buf(capfd, monkeypatch):
    chunks: list[bytes] = []
    real = output._write_all

    def recording(fd, view):
        chunks.append(bytes(view))
        real(fd, view)

    monkeypatch.setattr(output, "_write_all", recording)
    plugin = logplugin.Log(log_settings("log"))
    await plugin.start()
    await serve(plugin, 1000)
    await plugin.stop()
    # (structlog's default configuration, in tests, prints its own lines there too)
    lines = [x for x in capfd.readouterr().out.splitlines() if x.startswith("[INFO]")]
    assert len(lines) == 1000
    assert all(
        re.fullmatch(r'\[INFO\] 192\.0\.2\.1:\d+ - 29008 "A IN q\d+\.example\. .*s', x)
        for x in lines
    )
    assert len(chunks) > 1
    assert all(len(c) <= select.PIPE_BUF and c.endswith(b"\n") for c in chunks)


async def test_reopen_after_rename_writes_to_the_new_file(tmp_path):
    plugin = file_log(tmp_path)
    await plugin.start()
    await serve(plugin, 5, prefix="before")
    await asyncio.sleep(0.2)
    os.rename(tmp_path / "q.log", tmp_path / "q.log.1")
    await plugin.reopen()
    await serve(plugin, 3, prefix="after")
    await plugin.stop()
    old = (tmp_path / "q.log.1").read_text().splitlines()
    new = (tmp_path / "q.log").read_text().splitlines()
    assert len(old) == 5 and all("before" in x for x in old)
    assert len(new) == 3 and all("after" in x for x in new)
    assert (tmp_path / "q.log").stat().st_mode & 0o777 == 0o640


async def test_old_and_new_instances_share_a_file_without_mixing_lines(tmp_path):
    old = file_log(tmp_path, fmt="")
    new = file_log(tmp_path, fmt="")
    await old.start()
    await new.start()
    for _ in range(20):
        await serve(old, 30, prefix="old")
        await serve(new, 30, prefix="new")
        await asyncio.sleep(0.01)
    await old.stop()
    await new.stop()
    lines = (tmp_path / "q.log").read_text().splitlines()
    assert len(lines) == 1200
    assert all(
        re.fullmatch(r'192\.0\.2\.1:\d+ - 29008 "A IN (old|new)\d+\.example\. .*s', x)
        for x in lines
    )


async def test_first_rule_takes_the_query_and_class_filters(tmp_path):
    outer = logplugin.Log(
        log_settings(corefile('log a.example "{name}" {\n output $DIR/a.log\n}', DIR=tmp_path))
    )
    inner = logplugin.Log(
        log_settings(
            corefile('log . "{name}" {\n class denial\n output $DIR/all.log\n}', DIR=tmp_path)
        )
    )
    await outer.start()
    await inner.start()

    async def chain(req):
        async def last(r):
            if r.qname.startswith("nx"):
                return make_reply(r, dns.rcode.NXDOMAIN)
            return make_reply(r, answers=(f"{r.qname} 60 IN A 192.0.2.1",))

        return await outer.serve(req, lambda r: inner.serve(r, last))

    for name in ("x.a.example.", "nx.a.example.", "b.example.", "nx.b.example."):
        await chain(make_request(name))
    await outer.stop()
    await inner.stop()
    assert (tmp_path / "a.log").read_text().splitlines() == ["x.a.example.", "nx.a.example."]
    assert (tmp_path / "all.log").read_text().splitlines() == ["nx.b.example."]


async def test_firewall_annotation_in_route53_lines(tmp_path):
    plugin = file_log(tmp_path, " format route53\n account_id 1\n region r\n vpc_id v")
    await plugin.start()
    req = make_request("yahoo.co.jp.", "MX", client=("10.0.0.150", 40000))
    req.meta["firewall"] = Decision("BLOCK", "Scenario", "block-all", "All-Domains")

    async def blocked(r):
        return make_reply(r)

    await plugin.serve(req, blocked)
    await plugin.stop()
    (record,) = [json.loads(x) for x in (tmp_path / "q.log").read_text().splitlines()]
    assert list(record) == ROUTE53_KEYS + FIREWALL_KEYS
    assert record["firewall_rule_action"] == "BLOCK"
    assert record["answers"] == []


# --- EC2 identity against a fake metadata service -----------------------------------------


class FakeImds:
    """IMDSv2 on 127.0.0.1 in a thread: token required, optional delay, request log."""

    TOKEN = "fake-token-123"

    def __init__(self, *, delay: float = 0.0, account: str = "123456789012") -> None:
        self.delay = delay
        self.account = account
        self.requests: list[tuple[str, str, str | None]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-aws-ec2-metadata-token")
        self.requests.append((request.method, request.path, token))
        await asyncio.sleep(self.delay)
        if request.path == "/latest/api/token":
            if (
                request.method != "PUT"
                or "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers
            ):
                return web.Response(status=400)
            return web.Response(text=self.TOKEN)
        if token != self.TOKEN:
            return web.Response(status=401)
        documents = {
            "/latest/dynamic/instance-identity/document": json.dumps(
                {"accountId": self.account, "region": "ap-northeast-1", "instanceId": "i-0abc"}
            ),
            "/latest/meta-data/mac": "0e:11:22:33:44:55",
            "/latest/meta-data/network/interfaces/macs/0e:11:22:33:44:55/vpc-id": "vpc-0fake",
        }
        text = documents.get(request.path)
        return web.Response(text=text) if text is not None else web.Response(status=404)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> FakeImds:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    with FakeImds() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_cached_identity(monkeypatch):
    monkeypatch.setattr(identity, "_known", {})


async def test_ec2_identity_from_imdsv2(imds):
    found = await identity.ec2_identity(imds.url)
    assert found == identity.Ec2Identity("123456789012", "ap-northeast-1", "vpc-0fake")
    assert imds.requests[0] == ("PUT", "/latest/api/token", None)
    assert all(token == FakeImds.TOKEN for _, _, token in imds.requests[1:])
    assert await identity.ec2_identity(imds.url) == found
    assert len(imds.requests) == 4  # asked once, then kept


async def test_ec2_identity_failures():
    with FakeImds(delay=2.0) as slow:
        started = time.monotonic()
        with pytest.raises(identity.ImdsError, match="no answer .* within 0.3s"):
            await identity.ec2_identity(slow.url, timeout=0.3)
        assert time.monotonic() - started < 1.5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(identity.ImdsError, match="127.0.0.1"):
        await identity.ec2_identity(closed)


async def test_log_start_reads_identity_and_options_win(tmp_path, monkeypatch, imds):
    monkeypatch.setenv(identity.ENDPOINT_ENV, imds.url)
    plugin = file_log(tmp_path, " format route53\n identity ec2\n region us-east-1")
    await plugin.start()
    assert plugin.route53 is not None
    assert plugin.route53.identity == ("123456789012", "us-east-1", "vpc-0fake")
    await plugin.stop()


async def test_log_start_survives_a_missing_imds(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv(identity.ENDPOINT_ENV, f"http://127.0.0.1:{s.getsockname()[1]}")
    plugin = file_log(tmp_path, " format route53\n identity ec2\n vpc_id vpc-set")
    with structlog.testing.capture_logs() as logs:
        await plugin.start()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["ec2_identity_failed"]
    assert plugin.route53 is not None and plugin.route53.identity == ("", "", "vpc-set")
    await serve(plugin, 1)
    await plugin.stop()
    assert json.loads((tmp_path / "q.log").read_text())["vpc_id"] == "vpc-set"


# --- end to end: dnsfw run --------------------------------------------------------------


def test_route53_lines_end_to_end(dnsfw, upstream, tmp_path):
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="account_id 123456789012\nregion ap-northeast-1\nvpc_id vpc-0abc",
            PLUGINS="",
            UPSTREAM=upstream.address,
        )
    )
    before = time.time()
    sent = {
        ("www.google.com.", "A"): query_from(d.port, "www.google.com."),
        ("a.example.", "A"): query_from(d.port, "A.Example."),
        ("nope.example.com.", "A"): query_from(d.port, "nope.example.com."),
        ("gmail.com.", "MX"): query_from(d.port, "gmail.com.", "MX", tcp=True),
        ("example.com.", "AAAA"): query_from(d.port, "example.com.", "AAAA"),
    }
    assert sent[("nope.example.com.", "A")][0].rcode() == dns.rcode.NXDOMAIN
    stop_and_wait(d)
    after = time.time()
    records = [
        r
        for r in route53_lines((tmp_path / "r53.log").read_text())
        if "probe" not in r["query_name"]
    ]
    assert len(records) == len(sent)
    for (name, rdtype), (_, port) in sent.items():
        r = by_name(records, name, rdtype)
        assert list(r) == ROUTE53_KEYS  # no firewall here: no firewall fields
        assert r["version"] == "1.100000"
        assert (r["account_id"], r["region"], r["vpc_id"]) == (
            "123456789012",
            "ap-northeast-1",
            "vpc-0abc",
        )
        assert TIMESTAMP.match(r["query_timestamp"])
        stamp = calendar.timegm(time.strptime(r["query_timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        assert int(before) <= stamp <= after
        assert r["query_class"] == "IN"
        assert r["srcaddr"] == "127.0.0.1"
        assert r["srcport"] == str(port)
        assert r["srcids"] == {}
        assert r["transport"] == ("TCP" if rdtype == "MX" else "UDP")
    google = by_name(records, "www.google.com.")
    assert google["rcode"] == "NOERROR"
    assert google["answers"] == answers(("www3.l.google.com.", "CNAME"), ("142.250.207.4", "A"))
    chain = by_name(records, "a.example.")  # asked as A.Example.: logged in lower case
    assert chain["answers"] == answers(
        ("b.tracker.example.", "CNAME"), ("c.cdn.example.", "CNAME"), ("198.51.100.7", "A")
    )
    nx = by_name(records, "nope.example.com.")
    assert (nx["rcode"], nx["answers"]) == ("NXDOMAIN", [])
    mx = by_name(records, "gmail.com.", "MX")
    assert [a["Type"] for a in mx["answers"]] == ["MX"] * 5
    assert {a["Rdata"] for a in mx["answers"]} >= {"5 gmail-smtp-in.l.google.com."}
    aaaa = by_name(records, "example.com.", "AAAA")
    assert aaaa["answers"] == answers(("2606:2800:220:1:248:1893:25c8:1946", "AAAA"))


def test_route53_firewall_lines_end_to_end(dnsfw, upstream, tmp_path):
    """Needs the firewall plugin (scenario §1 policy, plus an ALERT trial group)."""
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="",
            PLUGINS=SCENARIO_FIREWALL,
            UPSTREAM=upstream.address,
        )
    )
    mx = d.query("yahoo.co.jp.", "MX")
    assert mx.rcode() == dns.rcode.NOERROR and not mx.answer  # NODATA block
    allowed = d.query("gmail.com.", "MX")
    assert allowed.answer
    stop_and_wait(d)
    records = route53_lines((tmp_path / "r53.log").read_text())
    block = by_name(records, "yahoo.co.jp.", "MX")
    assert list(block) == ROUTE53_KEYS + FIREWALL_KEYS
    assert (block["rcode"], block["answers"]) == ("NOERROR", [])
    assert [block[k] for k in FIREWALL_KEYS] == ["BLOCK", "Scenario", "All-Domains"]
    gmail = by_name(records, "gmail.com.", "MX")
    assert list(gmail) == ROUTE53_KEYS  # ALLOW: no firewall fields, as in Route 53


# the allowlist of issue 13: mirrors.fedoraproject.org allowed, its CNAME target not
CHAIN_BLOCK_FIREWALL = """\
firewall {
    list Seen domains mirrors.fedoraproject.org
    list All-Domains domains *
    group Seed 100 {
        rule allow-seen 1 ALLOW Seen
        rule block-all 100 BLOCK All-Domains
    }
}"""


def test_a_block_on_a_cname_target_logs_the_target(dnsfw, upstream, tmp_path):
    """Route 53's fields name the target's rule, group and list under the query's name;
    dnsfw's ``firewall_redirection_domain`` names the target itself."""
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="",
            PLUGINS=CHAIN_BLOCK_FIREWALL,
            UPSTREAM=upstream.address,
        )
    )
    blocked = d.query("mirrors.fedoraproject.org.", "AAAA")
    assert blocked.rcode() == dns.rcode.NOERROR and not blocked.answer
    assert d.query("gmail.com.").answer == []  # blocked by its own name
    stop_and_wait(d)
    records = route53_lines((tmp_path / "r53.log").read_text())
    line = by_name(records, "mirrors.fedoraproject.org.", "AAAA")
    assert list(line) == [*ROUTE53_KEYS, *FIREWALL_KEYS, "firewall_redirection_domain"]
    assert [line[k] for k in FIREWALL_KEYS] == ["BLOCK", "Seed", "All-Domains"]
    assert line["firewall_redirection_domain"] == "wildcard.fedoraproject.org."
    own = by_name(records, "gmail.com.")
    assert list(own) == [*ROUTE53_KEYS, *FIREWALL_KEYS]  # the query name matched: no extension


# an ALERT trial (scenario lesson 3)
TRIAL_FIREWALL = """\
firewall {
    list Google domains gmail.com *.google.com
    list All-Domains domains *
    group Trial 100 {
        rule allow-google 1 ALLOW Google
        rule alert-rest 100 ALERT All-Domains
    }
}"""


def test_alert_and_logged_allow_end_to_end(dnsfw, upstream, tmp_path):
    """Needs the firewall plugin: an ALERT trial (scenario lesson 3) and ``firewall_allow``."""
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="firewall_allow",
            PLUGINS=TRIAL_FIREWALL,
            UPSTREAM=upstream.address,
        )
    )
    assert d.query("mx1.mail.yahoo.co.jp.").answer  # ALERT: answered normally
    assert d.query("gmail.com.").answer
    stop_and_wait(d)
    records = route53_lines((tmp_path / "r53.log").read_text())
    alert = by_name(records, "mx1.mail.yahoo.co.jp.")
    assert [alert[k] for k in FIREWALL_KEYS] == ["ALERT", "Trial", "All-Domains"]
    assert alert["answers"] == answers(("183.79.57.116", "A"))
    allow = by_name(records, "gmail.com.")
    assert [allow[k] for k in FIREWALL_KEYS] == ["ALLOW", "Trial", "Google"]


THREE_LOGS = """
.:$PORT {
    bind 127.0.0.1
    log example.com "{name} {type} {rcode} {/log/class} {/log/type} {proto}" {
        class denial
        output example.log
    }
    log google.com gmail.com {
        format combined
    }
    log . {
        class error
        output $DIR/errors.log
    }
    forward . $UPSTREAM
}
"""


def test_coredns_formats_names_classes_stdout_and_file(dnsfw, upstream, tmp_path):
    upstream.faults.servfail = True
    upstream.faults.only_names = frozenset({"broken.example.net."})
    d = dnsfw(corefile(THREE_LOGS, DIR=tmp_path, UPSTREAM=upstream.address))
    d.query("www.example.com.")  # NOERROR: rule 1 takes it, class denial: not logged
    d.query("nope.example.com.")
    d.query("example.com.", "TXT", tcp=True)
    d.query("example.com.", "SRV")  # NODATA
    _, port = query_from(d.port, "www.google.com.")
    d.query("gmail.com.", "MX")
    d.query("nothing.invalid.")  # NXDOMAIN: rule 3 logs errors only
    d.query("broken.example.net.")  # SERVFAIL from upstream
    stop_and_wait(d)
    assert (tmp_path / "example.log").read_text().splitlines() == [
        "nope.example.com. A NXDOMAIN denial NXDOMAIN udp",
        "example.com. SRV NOERROR denial NODATA udp",
    ]
    console = [x for x in d.stdout_path.read_text().splitlines() if x]
    assert len(console) == 2
    pattern = (
        r'\[INFO\] 127\.0\.0\.1:{port} - \d+ "A IN www\.google\.com\. udp \d+ false 512" '
        r'NOERROR qr,rd,ra \d+ \d+(\.\d+)?s "0"'
    )
    assert re.fullmatch(pattern.format(port=port), console[0]), console[0]
    assert re.fullmatch(
        r'\[INFO\] 127\.0\.0\.1:\d+ - \d+ "MX IN gmail\.com\. udp \d+ false 512" NOERROR qr,rd,ra \d+ .*s "0"',
        console[1],
    ), console[1]
    (error_line,) = (tmp_path / "errors.log").read_text().splitlines()
    assert re.fullmatch(
        r'127\.0\.0\.1:\d+ - \d+ "A IN broken\.example\.net\. udp \d+ false 512" SERVFAIL qr,rd,ra \d+ .*s',
        error_line,
    ), error_line  # no [INFO] prefix in files
    assert "[INFO]" not in d.stderr and "query_log_started" in d.stderr  # service log apart


LOAD = """
.:$PORT {
    bind 127.0.0.1
    log load.test {
        output $OUTPUT
        $EXTRA
    }
    whoami
}
"""


def test_sigterm_flushes_every_line(dnsfw, tmp_path):
    path = tmp_path / "q.log"
    d = dnsfw(corefile(LOAD, OUTPUT=path, EXTRA=""))
    answered = blast(d.port, [f"n{i}.load.test." for i in range(3000)])
    stop_and_wait(d)  # at once: the last lines are still queued
    lines = path.read_text().splitlines()
    assert answered > 0
    assert len(lines) == answered
    assert "query_log_dropped" not in d.stderr


def test_tiny_buffer_drops_are_counted(dnsfw, tmp_path):
    path = tmp_path / "q.log"
    d = dnsfw(corefile(LOAD, OUTPUT=path, EXTRA="buffer 1"))
    answered = blast(d.port, [f"n{i}.load.test." for i in range(2000)], window=256)
    stop_and_wait(d)
    lines = path.read_text().splitlines()
    totals = [int(t) for t in re.findall(r"event='query_log_dropped'.* total=(\d+)", d.stderr)]
    assert totals, d.stderr
    assert max(totals) > 0
    assert len(lines) + max(totals) == answered


def test_reload_after_logrotate_writes_to_the_new_file(dnsfw, tmp_path):
    path = tmp_path / "q.log"
    d = dnsfw(corefile(LOAD, OUTPUT=path, EXTRA=""))
    for i in range(3):
        d.query(f"before{i}.load.test.")
    wait_lines(path, 3)
    os.rename(path, tmp_path / "q.log.1")
    d.signal(signal.SIGHUP)  # dnsfw reloads on SIGHUP: the new configuration opens the path
    deadline = time.monotonic() + 10
    while "event='reloaded'" not in d.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(4):
        d.query(f"after{i}.load.test.")
    assert len(wait_lines(path, 4)) == 4
    stop_and_wait(d)
    assert all("before" in x for x in (tmp_path / "q.log.1").read_text().splitlines())
    assert len((tmp_path / "q.log.1").read_text().splitlines()) == 3
    assert [x.split('"')[1].split()[2] for x in path.read_text().splitlines()] == [
        f"after{i}.load.test." for i in range(4)
    ]


def test_identity_ec2_end_to_end(dnsfw, upstream, tmp_path, imds):
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="identity ec2",
            PLUGINS="",
            UPSTREAM=upstream.address,
        ),
        env={identity.ENDPOINT_ENV: imds.url},
    )
    d.query("gmail.com.")
    stop_and_wait(d)
    record = by_name(route53_lines((tmp_path / "r53.log").read_text()), "gmail.com.")
    assert (record["account_id"], record["region"], record["vpc_id"]) == (
        "123456789012",
        "ap-northeast-1",
        "vpc-0fake",
    )
    assert record["srcids"] == {}


def test_identity_ec2_unreachable_end_to_end(dnsfw, upstream, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    d = dnsfw(
        corefile(
            ROUTE53_LOG,
            OUTPUT=tmp_path / "r53.log",
            OPTIONS="identity ec2",
            PLUGINS="",
            UPSTREAM=upstream.address,
        ),
        env={identity.ENDPOINT_ENV: closed},
    )
    assert d.query("gmail.com.").answer
    stop_and_wait(d)
    assert "event='ec2_identity_failed'" in d.stderr
    record = by_name(route53_lines((tmp_path / "r53.log").read_text()), "gmail.com.")
    assert (record["account_id"], record["region"], record["vpc_id"]) == ("", "", "")


def test_default_log_is_coredns_common_on_stdout(dnsfw):
    d = dnsfw(".:$PORT {\n    bind 127.0.0.1\n    log\n    whoami\n}\n")
    d.query("hello.example.", tcp=True)
    stop_and_wait(d)
    lines = [x for x in d.stdout_path.read_text().splitlines() if "hello" in x]
    assert len(lines) == 1
    assert re.fullmatch(
        r'\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN hello\.example\. tcp \d+ false 65535" NOERROR '
        r"qr,aa,rd \d+ \d+(\.\d+)?s",
        lines[0],
    ), lines[0]


async def test_a_line_that_cannot_be_rendered_is_counted_and_the_query_still_answered(
    tmp_path, monkeypatch
):
    plugin = file_log(tmp_path, "")
    await plugin.start()

    def broken(req, resp):
        raise ValueError("bad record")

    monkeypatch.setattr(plugin, "_line", broken)
    with structlog.testing.capture_logs() as logs:
        await serve(plugin, 3)  # serve() asserts every reply came back NOERROR
    await plugin.stop()
    assert plugin.sink.failed == 3 and plugin.sink.written == 0
    warnings = [e for e in logs if e["event"] == "query_log_format_failed"]
    assert len(warnings) == 1 and "bad record" in warnings[0]["error"]  # rate-limited


def _stuck_first_write(monkeypatch) -> tuple[threading.Event, threading.Event, list[int]]:
    """Make the first write wait for ``release``; ``started`` is set when it began. The list
    collects the line count of every write."""
    release, started = threading.Event(), threading.Event()
    sizes: list[int] = []
    real_write = output.Sink._write

    def write(self, data):
        sizes.append(data.count(b"\n"))
        if len(sizes) == 1:
            started.set()
            release.wait(10)
        real_write(self, data)

    monkeypatch.setattr(output.Sink, "_write", write)
    return release, started, sizes


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_early_mark_wakes_the_writer_even_when_reached_during_a_write(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "FLUSH_INTERVAL", 30.0)  # only the early mark can wake it
    release, started, sizes = _stuck_first_write(monkeypatch)
    plugin = file_log(tmp_path, " buffer 10")
    assert plugin.sink.early == 5
    await plugin.start()
    await serve(plugin, 5)  # the mark: the writer takes these five and gets stuck
    await _until(started.is_set)
    await serve(plugin, 6, prefix="during")  # the mark is passed while nobody waits
    release.set()
    await _until(lambda: plugin.sink.written == 11)  # long before the 30 s interval
    assert sizes == [5, 6]
    await plugin.stop()


async def test_stop_writes_what_came_during_the_last_write_in_one_more_write(tmp_path, monkeypatch):
    release, started, sizes = _stuck_first_write(monkeypatch)
    plugin = file_log(tmp_path, "")
    await plugin.start()
    await serve(plugin, 40)
    await _until(started.is_set)
    for i in range(30):  # lines arriving one by one during the write
        await serve(plugin, 1, prefix=f"late{i}-")
    stopping = asyncio.ensure_future(plugin.stop())
    await asyncio.sleep(0.1)
    release.set()
    await stopping
    assert sizes == [40, 30]  # not one write per line that came in meanwhile
    assert plugin.sink.written == 70 and plugin.sink.dropped == 0
    assert len((tmp_path / "q.log").read_text().splitlines()) == 70


async def test_each_writer_turn_refreshes_the_route53_clock(tmp_path):
    plugin = file_log(tmp_path, " format route53")
    await plugin.start()
    plugin.route53.wall_offset = 0.0  # as if the wall clock had stepped since
    await _until(lambda: plugin.route53.wall_offset != 0.0)
    assert abs(plugin.route53.wall_offset - (time.time() - time.monotonic())) < 1.0
    await plugin.stop()


async def test_a_stop_that_gives_up_on_a_stuck_write_counts_its_lines_once(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "STOP_TIMEOUT", 0.3)
    release, started, sizes = _stuck_first_write(monkeypatch)
    plugin = file_log(tmp_path, "")
    await plugin.start()
    await serve(plugin, 40)
    await _until(started.is_set)
    await serve(plugin, 7, prefix="late")
    with structlog.testing.capture_logs() as logs:
        await plugin.stop()
    timeout = [e for e in logs if e["event"] == "query_log_stop_timeout"]
    assert timeout and timeout[0]["unwritten"] == 47
    assert plugin.sink.dropped == 47 and plugin.sink.written == 0
    release.set()  # the stuck write ends after all: nothing is counted twice
    await asyncio.sleep(0.2)
    assert plugin.sink.dropped == 47 and plugin.sink.written == 0
