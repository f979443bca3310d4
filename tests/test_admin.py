"""The admin API end to end: every endpoint with and without the token, good and bad bodies,
against ``dnsfw run`` (firewall with file/inline/hosts lists, cache, forward to the upstream
fixture)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import dns.rcode
import pytest

from tests.kit.api import TOKEN, Api
from tests.kit.corefiles import ADMIN, BLOCK_WHOAMI, TOKEN_FILE, corefile
from tests.kit.dnsfw import free_port, run_cli

TWO_BLOCKS = """\
a.example:$PORT {
    admin 127.0.0.1:$ADMIN $AUTH
    whoami
}
b.example:$PORT {
    admin 127.0.0.1:$ADMIN $AUTH
    whoami
}
"""


@pytest.fixture
def setup_files(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "blocked.txt").write_text("blocked.w.example.com\n*.ads.w.example.com\n")
    (tmp_path / "hosts.txt").write_text("0.0.0.0 hosted.w.example.com\n")
    return tmp_path


@pytest.fixture
def served(dnsfw, upstream, setup_files: Path):
    """(dnsfw, Api) with a token."""
    port = free_port()
    d = dnsfw(corefile(ADMIN, ADMIN=port, AUTH=TOKEN_FILE, UPSTREAM=upstream.address))
    api = Api(port)
    api.wait()
    return d, api


ENDPOINTS = [
    ("GET", "/v1/openapi.json", None),
    ("GET", "/v1/lists", None),
    ("GET", "/v1/lists/blocked", None),
    ("PATCH", "/v1/lists/blocked", {"operation": "ADD", "domains": ["x.example"]}),
    ("PUT", "/v1/lists/blocked", "x.example\n"),
    ("POST", "/v1/lists/blocked/refresh", None),
    ("GET", "/v1/rules", None),
    ("GET", "/v1/explain?name=example.com", None),
    ("GET", "/v1/stats", None),
    ("POST", "/v1/reload", None),
    ("POST", "/v1/cache/flush", None),
]


def rcode(d, name: str, rdtype: str = "A") -> str:
    return dns.rcode.to_text(d.query(name, rdtype).rcode())


def test_every_endpoint_needs_the_token(served, setup_files: Path) -> None:
    d, api = served
    before = (setup_files / "blocked.txt").read_text()
    for method, path, body in ENDPOINTS:
        missing = api.call(method, path, body, token=None)
        assert missing.status == 401, (method, path)
        assert missing.headers["WWW-Authenticate"] == 'Bearer realm="dnsfw"'
        assert "Authorization" in missing.json["error"]
        wrong = api.call(method, path, body, token="not-the-token-at-all")
        assert wrong.status == 403, (method, path)
        assert wrong.json == {"error": "invalid token"}
        basic = api.call(
            method, path, body, token=None, headers={"Authorization": f"Basic {TOKEN}"}
        )
        assert basic.status == 401
    # nothing was changed by the refused calls
    assert (setup_files / "blocked.txt").read_text() == before
    # with the token, every endpoint answers
    for method, path, body in ENDPOINTS:
        assert api.call(method, path, body).status == 200, (method, path)


def test_without_a_token_on_loopback(dnsfw, upstream, setup_files: Path) -> None:
    port = free_port()
    dnsfw(corefile(ADMIN, ADMIN=port, AUTH="", UPSTREAM=upstream.address))
    api = Api(port, token=None)
    api.wait()
    assert api.call("GET", "/v1/lists").status == 200
    document = api.ok("GET", "/v1/openapi.json")
    assert "security" not in document
    # a token sent anyway is ignored
    assert api.call("GET", "/v1/rules", token="whatever").status == 200


def test_lists_paging_and_errors(served) -> None:
    d, api = served
    lists = {row["name"]: row for row in api.ok("GET", "/v1/lists")["lists"]}
    assert lists["blocked"]["kind"] == "file" and lists["blocked"]["editable"] is True
    assert lists["blocked"]["entries"] == 2 and lists["blocked"]["status"] == "loaded"
    assert lists["inline"]["editable"] is False and lists["hosts"]["format"] == "hosts"
    page = api.ok("GET", "/v1/lists/blocked")
    assert page["entries"] == ["*.ads.w.example.com", "blocked.w.example.com"]
    assert page["total"] == 2 and page["offset"] == 0 and page["limit"] == 1000
    assert api.ok("GET", "/v1/lists/blocked?offset=1&limit=1")["entries"] == [
        "blocked.w.example.com"
    ]
    assert api.ok("GET", "/v1/lists/blocked?offset=5")["entries"] == []
    for bad in ("offset=-1", "limit=0", "limit=10001", "limit=abc"):
        reply = api.call("GET", f"/v1/lists/blocked?{bad}")
        assert reply.status == 400 and "query parameter" in reply.json["error"], bad
    missing = api.call("GET", "/v1/lists/nope")
    assert missing.status == 404 and missing.json == {"error": "no domain list named 'nope'"}
    assert api.call("GET", "/v1/nothing").status == 404
    wrong_method = api.call("DELETE", "/v1/lists/blocked")
    assert wrong_method.status == 405
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "PATCH", "PUT"}


def test_patch_add_remove_replace(served, setup_files: Path) -> None:
    d, api = served
    path = setup_files / "blocked.txt"
    assert rcode(d, "new.w.example.com") == "NOERROR"
    done = api.ok(
        "PATCH", "/v1/lists/blocked", {"operation": "ADD", "domains": ["New.w.Example.com."]}
    )
    assert done["entries"] == 3 and done["operation"] == "ADD"
    assert rcode(d, "new.w.example.com") == "NXDOMAIN"  # in force as soon as the reply came
    assert "new.w.example.com\n" in path.read_text()  # and on disk
    api.ok(
        "PATCH", "/v1/lists/blocked", {"operation": "REMOVE", "domains": ["blocked.w.example.com"]}
    )
    assert rcode(d, "blocked.w.example.com") == "NOERROR"
    api.ok("PATCH", "/v1/lists/blocked", {"operation": "REPLACE", "domains": ["*.example.com"]})
    assert rcode(d, "www.example.com") == "NXDOMAIN"
    assert rcode(d, "new.w.example.com") == "NXDOMAIN"
    assert rcode(d, "example.com") == "NOERROR"
    assert [line for line in path.read_text().splitlines() if not line.startswith("#")] == [
        "*.example.com"
    ]


def test_patch_takes_route53_casing(served, setup_files: Path) -> None:
    # the body of Route 53's UpdateFirewallDomains, as `aws route53resolver
    # update-firewall-domains --cli-input-json` sends it, edits the list as dnsfw's casing does
    d, api = served
    path = setup_files / "blocked.txt"
    done = api.ok(
        "PATCH",
        "/v1/lists/blocked",
        {"FirewallDomainListId": "blocked", "Operation": "ADD", "Domains": ["r53.w.example.com"]},
    )
    assert done["operation"] == "ADD" and done["entries"] == 3
    assert rcode(d, "r53.w.example.com") == "NXDOMAIN"
    api.ok("PATCH", "/v1/lists/blocked", {"Operation": "REMOVE", "Domains": ["r53.w.example.com"]})
    assert rcode(d, "r53.w.example.com") == "NOERROR"
    api.ok("PATCH", "/v1/lists/blocked", {"Operation": "REPLACE", "Domains": ["*.example.com"]})
    assert rcode(d, "www.example.com") == "NXDOMAIN"
    before = path.read_text()
    cases = [
        ({"Operation": "ADD", "domains": ["x.example"]}, "unknown field(s): domains"),
        ({"operation": "ADD", "Domains": ["x.example"]}, "unknown field(s): operation"),
        ({"Operation": "MERGE", "Domains": []}, "'operation' must be ADD, REMOVE or REPLACE"),
        (
            {"FirewallDomainListId": "other", "Operation": "ADD", "Domains": ["x.example"]},
            "'FirewallDomainListId' is not the list of the URL ('blocked')",
        ),
    ]
    for body, message in cases:
        reply = api.call("PATCH", "/v1/lists/blocked", body)
        assert reply.status == 400 and message in reply.json["error"], body
    assert path.read_text() == before


def test_patch_refusals_leave_the_list_unchanged(served, setup_files: Path) -> None:
    d, api = served
    path = setup_files / "blocked.txt"
    before = path.read_text()
    bad = api.call(
        "PATCH",
        "/v1/lists/blocked",
        {"operation": "ADD", "domains": ["good.example", "a..b", "x y.example", 7]},
    )
    assert bad.status == 400
    assert bad.json == {
        "error": "invalid domain list entries",
        "errors": [
            "'a..b': empty label",
            "'x y.example': contains whitespace",
            "7: not a string",
        ],
    }
    cases = [
        ({"operation": "MERGE", "domains": []}, 400, "'operation' must be ADD, REMOVE or REPLACE"),
        ({"operation": "ADD"}, 400, "'domains' must be an array of domain list entries"),
        ({"operation": "ADD", "domains": "x.example"}, 400, "'domains' must be an array"),
        ({"operation": "ADD", "domains": [], "extra": 1}, 400, "unknown field(s): extra"),
        (
            {"operation": "REPLACE", "domains": [f"d{i}.example" for i in range(1001)]},
            400,
            "at most 1000 domains per PATCH",
        ),
    ]
    for body, status, message in cases:
        reply = api.call("PATCH", "/v1/lists/blocked", body)
        assert reply.status == status and message in reply.json["error"], body
    not_json = api.call(
        "PATCH", "/v1/lists/blocked", b"{not json", headers={"Content-Type": "application/json"}
    )
    assert not_json.status == 400 and "not valid JSON" in not_json.json["error"]
    array = api.call("PATCH", "/v1/lists/blocked", b"[]")
    assert array.status == 400 and array.json["error"] == "request body must be a JSON object"
    huge = api.call("PATCH", "/v1/lists/blocked", b" " * ((1 << 20) + 1))
    assert huge.status == 413
    inline = api.call("PATCH", "/v1/lists/inline", {"operation": "ADD", "domains": ["x.example"]})
    assert inline.status == 409 and "inline in the Corefile" in inline.json["error"]
    hosts = api.call("PATCH", "/v1/lists/hosts", {"operation": "ADD", "domains": ["x.example"]})
    assert hosts.status == 409 and "hosts-format file" in hosts.json["error"]
    missing = api.call("PATCH", "/v1/lists/nope", {"operation": "ADD", "domains": []})
    assert missing.status == 404
    assert path.read_text() == before
    assert api.ok("GET", "/v1/lists/blocked")["total"] == 2


def test_put_replaces_in_bulk(served, setup_files: Path) -> None:
    d, api = served
    text = (
        "# replaced\n"
        + "".join(f"n{i}.bulk.example\n" for i in range(5000))
        + "*.ads.w.example.com\n"
    )
    done = api.ok("PUT", "/v1/lists/blocked", text, headers={"Content-Type": "text/plain"})
    assert done["entries"] == 5001 and done["operation"] == "REPLACE"
    assert rcode(d, "n4999.bulk.example") == "NXDOMAIN"
    assert rcode(d, "x.ads.w.example.com") == "NXDOMAIN"
    assert rcode(d, "blocked.w.example.com") == "NOERROR"
    written = (setup_files / "blocked.txt").read_text().splitlines()
    assert written[0] == "# domain list 'blocked', written by the dnsfw admin API"
    assert written[1].startswith("# replaced by dnsfw admin API ")
    assert written[2:] == text.splitlines()  # the body as sent, its comment too
    bad = api.call("PUT", "/v1/lists/blocked", "ok.example\nbad..name\n\n*x.example\n")
    assert bad.status == 400
    assert bad.json["errors"] == [
        "<request body>:2 - invalid domain list entry 'bad..name': empty label",
        "<request body>:4 - invalid domain list entry '*x.example': "
        "'*' is allowed only as the whole leftmost label ('*.name')",
    ]
    not_utf8 = api.call("PUT", "/v1/lists/blocked", b"\xff\xfe\x00bad")
    assert not_utf8.status == 400 and "not UTF-8" in not_utf8.json["error"]
    assert api.ok("GET", "/v1/lists/blocked")["total"] == 5001  # unchanged by the refusals
    url = api.call("PUT", "/v1/lists/inline", "x.example\n")
    assert url.status == 409


def test_refresh_rereads_the_file(served, setup_files: Path) -> None:
    d, api = served
    (setup_files / "blocked.txt").write_text("fresh.w.example.com\n")
    assert rcode(d, "fresh.w.example.com") == "NOERROR"
    rows = api.ok("POST", "/v1/lists/blocked/refresh")["lists"]
    assert rows[0]["entries"] == 1 and rows[0]["status"] == "loaded"
    assert rcode(d, "fresh.w.example.com") == "NXDOMAIN"
    (setup_files / "blocked.txt").write_text("broken..entry\n")
    failed = api.call("POST", "/v1/lists/blocked/refresh")
    assert failed.status == 502 and "refresh of list 'blocked' failed" in failed.json["error"]
    assert rcode(d, "fresh.w.example.com") == "NXDOMAIN"  # the old list keeps serving
    inline = api.call("POST", "/v1/lists/inline/refresh")
    assert inline.status == 409
    assert api.call("POST", "/v1/lists/nope/refresh").status == 404


def test_rules_and_explain(served) -> None:
    d, api = served
    (firewall,) = api.ok("GET", "/v1/rules")["firewalls"]
    assert firewall["fail"] == "closed" and firewall["zones"] == ["."]
    (group,) = firewall["groups"]
    assert [(r["name"], r["action"], r["list"]) for r in group["rules"]] == [
        ("block-listed", "BLOCK", "blocked"),
        ("watch-inline", "ALERT", "inline"),
        ("block-hosts", "BLOCK", "hosts"),
    ]
    assert group["rules"][0]["response"] == {"kind": "nxdomain", "target": None, "ttl": None}
    assert group["rules"][1]["response"] is None
    walk = api.ok("GET", "/v1/explain?name=x.ads.w.example.com&type=aaaa&client=10.1.2.3")
    assert walk["query"] == {"name": "x.ads.w.example.com.", "type": "AAAA", "client": "10.1.2.3"}
    (listener,) = walk["listeners"]
    assert listener["refused"] is False and "firewall" in listener["plugins"]
    (explained,) = listener["firewalls"]
    assert explained["decision"] == {
        "action": "BLOCK",
        "rule": "block-listed",
        "group": "main",
        "list": "blocked",
        "target": "",  # the query name matched, not a CNAME/DNAME target
    }
    assert explained["chain"] is None  # the API does not ask upstream
    assert explained["answer"].startswith("NXDOMAIN, no answer")
    assert explained["steps"] == [
        {
            "group": "main",
            "rule": "block-listed",
            "list": "blocked",
            "action": "BLOCK",
            "outcome": "match",
        }
    ]
    alert = api.ok("GET", "/v1/explain?name=inline.w.example.com")["listeners"][0]["firewalls"][0]
    assert alert["decision"]["action"] == "ALERT" and alert["note"].startswith(
        "redirection inspect"
    )
    for query, message in [
        ("", "query parameter 'name' is required"),
        ("name=x.example&type=NOPE", "unknown query type 'NOPE'"),
        ("name=x.example&client=nobody", "'client' is not an IP address"),
        ("name=a..b", "invalid name"),
    ]:
        reply = api.call("GET", f"/v1/explain?{query}")
        assert reply.status == 400 and message in reply.json["error"], query


def test_stats(served) -> None:
    d, api = served
    # the fixture's readiness probe (ready.probe.invalid, NXDOMAIN upstream) came first
    before = api.ok("GET", "/v1/stats")
    assert before["queries"]["total"] == 1 and before["queries"]["by_rcode"] == {"NXDOMAIN": 1}
    for _ in range(3):
        d.query("blocked.w.example.com")
    d.query("x.ads.w.example.com")
    d.query("inline.w.example.com")
    d.query("example.com")
    d.query("example.com")  # a cache hit
    d.query("nothing-here.example.com")
    stats = api.ok("GET", "/v1/stats?top=5")
    queries = stats["queries"]
    assert queries["total"] == 9
    assert queries["by_rcode"] == {"NOERROR": 3, "NXDOMAIN": 6}
    assert queries["rate_60s"] >= 0 and queries["rate_10s"] >= 0
    assert stats["firewall_actions"] == {"ALERT": 1, "BLOCK": 4}
    assert stats["top"]["blocked"] == [
        {"name": "blocked.w.example.com.", "count": 3},
        {"name": "x.ads.w.example.com.", "count": 1},
    ]
    assert stats["top"]["alerted"] == [{"name": "inline.w.example.com.", "count": 1}]
    assert stats["top"]["clients"] == [{"name": "127.0.0.1", "count": 9}]
    rules = {r["rule"]: r["matches"] for r in stats["firewall_rules"]}
    assert rules == {"block-listed": 4, "watch-inline": 1, "block-hosts": 0}
    assert stats["cache"]["hits"] == 1 and stats["cache"]["misses"] == 4
    (up,) = stats["upstreams"]
    assert up["healthy"] is True and up["answers"] == 4 and up["avg_latency_ms"] > 0
    assert stats["uptime_seconds"] > 0 and stats["server"]["panics"] == 0
    assert stats["reloads"] == {"total": 0, "failed": 0, "last": None}
    assert api.call("GET", "/v1/stats?top=0").status == 400


def test_reload_and_cache_flush(served, setup_files: Path) -> None:
    d, api = served
    d.query("example.com")
    d.query("www.example.com")
    assert api.ok("POST", "/v1/cache/flush", {"name": "example.com"})["flushed"] == 1
    # the rest: www.example.com and the fixture's readiness probe
    assert api.ok("POST", "/v1/cache/flush")["flushed"] == 2
    assert api.ok("POST", "/v1/cache/flush?name=nothing.example")["flushed"] == 0
    bad = api.call("POST", "/v1/cache/flush", {"name": "a..b"})
    assert bad.status == 400 and "invalid name" in bad.json["error"]
    assert api.call("POST", "/v1/cache/flush", {"names": []}).status == 400
    same = api.ok("POST", "/v1/reload")
    assert same["ok"] is True and same["changed"] is False and same["reason"] == "api"
    assert same["listeners"]["kept"] == [f"dns://127.0.0.1:{d.port}"]
    assert same["http"] == {"added": [], "removed": [], "kept": [f"127.0.0.1:{api.port}"]}
    text = d.conf.read_text()
    d.conf.write_text(text.replace("inline.w.example.com", "inline2.w.example.com"))
    changed = api.ok("POST", "/v1/reload")
    assert changed["changed"] is True and len(changed["sha512"]) == 128
    assert api.ok("GET", "/v1/lists/inline")["entries"] == ["inline2.w.example.com"]
    d.conf.write_text(text.replace("cache", "cache 0"))
    broken = api.call("POST", "/v1/reload")
    assert broken.status == 400
    assert "cache TTL can not be zero or negative: 0" in broken.json["error"]
    assert broken.json["reload"]["ok"] is False
    assert api.ok("GET", "/v1/lists/inline")["entries"] == ["inline2.w.example.com"]
    assert rcode(d, "blocked.w.example.com") == "NXDOMAIN"  # still serving
    stats = api.ok("GET", "/v1/stats")["reloads"]
    assert stats["total"] == 3 and stats["failed"] == 1 and stats["last"]["ok"] is False


def test_openapi_describes_every_route(served) -> None:
    from proxy.admin import ROUTES

    d, api = served
    document = api.ok("GET", "/v1/openapi.json")
    assert document["openapi"].startswith("3.0") and document["security"] == [{"bearer": []}]
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
        if method != "parameters"
    }  # fmt: skip
    for method, pattern, _, _ in ROUTES:
        path = pattern.pattern.replace("(?P<name>[^/]+)", "{name}").replace("\\.", ".")
        assert (method, path) in described


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("admin 0.0.0.0:8053", "admin on 0.0.0.0:8053 (not a loopback address) needs a token_file"),
        ("admin :8053", "admin on :8053 (not a loopback address) needs a token_file"),
        ("admin 127.0.0.1:8053 {\n token_file missing\n }", "cannot read token_file missing"),
        ("admin 127.0.0.1:8053 {\n token_file short\n }", "must hold one token of at least 16"),
        ("admin 127.0.0.1:8053 {\n tokenfile x\n }", "unknown property 'tokenfile'"),
        ("admin 127.0.0.1", "invalid address '127.0.0.1': expected HOST:PORT or :PORT"),
        ("admin 127.0.0.1:8053 127.0.0.1:8054", "Wrong argument count"),
    ],
)
def test_setup_errors(tmp_path: Path, admin: str, message: str) -> None:
    (tmp_path / "short").write_text("abc\n")
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(BLOCK_WHOAMI, KEYS=".:1053", LINES=admin))
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stderr.startswith(f"plugin/admin: {conf}:")


def test_token_on_every_address_passes_check(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    admin :8053 {\n        token_file token\n    }\n    whoami\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 0, result.stderr


def test_two_blocks_share_one_admin_listener(dnsfw, setup_files: Path) -> None:
    port = free_port()
    d = dnsfw(corefile(TWO_BLOCKS, ADMIN=port, AUTH=TOKEN_FILE))
    api = Api(port)
    api.wait()
    d.query("x.a.example")
    d.query("x.b.example")
    assert api.ok("GET", "/v1/stats")["queries"]["total"] == 2
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while api.ok("GET", "/v1/stats")["reloads"]["total"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # the counts survive the reload
    assert api.ok("GET", "/v1/stats")["queries"]["total"] == 2
