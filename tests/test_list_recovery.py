"""Lists that recover: a url list whose download fails is retried with backoff (at start and
on later refreshes) and says so in ``/ready`` and ``/v1/lists``; ``dnsfw check`` warns about
a url list it cannot download (``-strict``: an error)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.kit.api import Api
from tests.kit.corefiles import corefile
from tests.kit.dnsfw import free_port, run_cli
from tests.kit.metrics import get, wait_http
from tests.kit.servers import FlakyList

URL_LIST = """\
.:$PORT {
    bind 127.0.0.1
    ready 127.0.0.1:$HTTP
    admin 127.0.0.1:$HTTP
    firewall {
        list remote url $URL refresh $REFRESH
        group g 1 {
            rule r 1 BLOCK remote response nxdomain
        }
    }
    forward . $UPSTREAM
}
"""


def wait_until(condition: Callable[[], object], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rcode(port: int, name: str) -> int:
    query = dns.message.make_query(name, "A")
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3).rcode()


def blocked(port: int, name: str) -> bool:
    """Whether rule r blocked the query (its EDE), whatever the upstream would answer."""
    query = dns.message.make_query(name, "A", use_edns=0)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
    return any("rule 'r'" in (getattr(o, "text", "") or "") for o in reply.options)


def remote(api: Api) -> dict:
    (status,) = [s for s in api.ok("GET", "/v1/lists")["lists"] if s["name"] == "remote"]
    return status


def failures_logged(stderr: str) -> list[dict]:
    """The ``list_load_failed`` lines: their ``key=value`` fields."""
    return [
        dict(re.findall(r"(\w+)=(\S+)", line))
        for line in stderr.splitlines()
        if "list_load_failed" in line
    ]


def test_first_download_failing_is_retried_with_backoff(dnsfw, upstream, tmp_path: Path):
    """The list server answers 503 twice: dnsfw retries after ~5 s then ~10 s (not after the
    4 h refresh), shows why it is not ready meanwhile, then loads the list and is ready."""
    http = free_port()
    with FlakyList("ads.example\n", failures=2) as server:
        text = corefile(
            URL_LIST, URL=server.url, REFRESH="4h", HTTP=http, UPSTREAM=upstream.address
        )
        d = dnsfw(text, env={"DNSFW_STATE_DIR": str(tmp_path / "state")}, wait="listening")
        wait_http(http, "/ready")
        api = Api(http, token=None)
        wait_until(lambda: server.hits >= 1 and "HTTP 503" in get(http, "/ready")[2], "503")
        status, _, body = get(http, "/ready")
        assert status == 503
        assert body.startswith("firewall (list 'remote': download of ")
        assert "next try at" in body
        listed = remote(api)
        assert listed["status"] == "failed" and "HTTP 503" in listed["error"]
        assert listed["consecutive_failures"] >= 1 and listed["next_download_at"] > time.time()
        assert rcode(d.port, "gmail.com") == dns.rcode.SERVFAIL  # fail closed meanwhile

        wait_until(lambda: get(http, "/ready")[0] == 200, "the list to load on a retry")
        assert server.hits == 3
        assert blocked(d.port, "ads.example")
        listed = remote(api)
        assert listed["status"] == "loaded" and listed["consecutive_failures"] == 0
        assert listed["failures"] == 2
        # each failure logged once, with the backoff step that follows it: ~5 s, then ~10 s
        logged = failures_logged(d.stderr)
        assert [line["failures_in_a_row"] for line in logged] == ["1", "2"]
        first, second = (float(line["retry_in"]) for line in logged)
        assert 4.5 <= first <= 5.5 and 9 <= second <= 11


def test_failed_refresh_is_retried_with_backoff_old_list_serving(dnsfw, upstream, tmp_path: Path):
    """A refresh that fails (here one asked through the API) keeps the old list and is retried
    after ~5 s, long before the next refresh (1 h)."""
    http = free_port()
    with FlakyList("ads.example\n", failures=0) as server:
        text = corefile(
            URL_LIST, URL=server.url, REFRESH="1h", HTTP=http, UPSTREAM=upstream.address
        )
        d = dnsfw(text, env={"DNSFW_STATE_DIR": str(tmp_path / "state")})
        api = Api(http, token=None)
        assert blocked(d.port, "ads.example")
        server.fail(1)
        server.body = "new.example\n"
        reply = api.call("POST", "/v1/lists/remote/refresh")
        assert reply.status == 502 and "HTTP 503" in reply.json["error"]
        listed = remote(api)
        assert listed["status"] == "loaded" and listed["consecutive_failures"] == 1
        assert listed["next_download_at"] < time.time() + 60
        assert blocked(d.port, "ads.example")  # the old list serves
        wait_until(lambda: blocked(d.port, "new.example"), "the retry")
        assert not blocked(d.port, "ads.example")
        assert remote(api)["consecutive_failures"] == 0


CHECK_URL = """\
. {
    firewall {
        list remote url $URL
        group g 1 {
            rule r 1 BLOCK remote
        }
    }
    whoami
}
"""


def test_check_warns_about_an_unreachable_url_list_strict_fails(tmp_path: Path):
    conf = tmp_path / "Corefile"
    with FlakyList("ads.example\n", failures=1, status=404) as server:
        conf.write_text(corefile(CHECK_URL, URL=server.url))
        result = run_cli("check", "-conf", str(conf))
        assert result.returncode == 0, result.stderr
        assert (
            f"{conf}:3 - Warning: cannot download list 'remote' from {server.url}: "
            "HTTP 404 Not Found (dnsfw retries it with backoff)"
        ) in result.stderr
        server.fail(1)
        strict = run_cli("check", "-strict", "-conf", str(conf))
        assert strict.returncode == 1
        assert strict.stderr.strip() == (
            f"plugin/firewall: {conf}:3 - Error during parsing: cannot download list 'remote' from "
            f"{server.url}: HTTP 404 Not Found"
        )
        # reachable: no warning, and its lines are checked
        ok = run_cli("check", "-strict", "-conf", str(conf))
        assert ok.returncode == 0 and "Warning" not in ok.stderr, ok.stderr
        server.body = "not a list line\n"
        bad = run_cli("check", "-strict", "-conf", str(conf))
        assert bad.returncode == 1 and "not a list line" in bad.stderr
    # nothing listening at all
    conf.write_text(corefile(CHECK_URL, URL="http://127.0.0.1:9/list.txt"))
    down = run_cli("check", "-conf", str(conf))
    assert down.returncode == 0 and "Warning: cannot download list 'remote'" in down.stderr


FILE_LIST = """\
.:$PORT {
    bind 127.0.0.1
    admin 127.0.0.1:$HTTP
    firewall {
        list local file $FILE
        group g 1 {
            rule r 1 BLOCK local response nxdomain
        }
    }
    forward . $UPSTREAM
}
"""


def test_run_with_a_missing_list_file_exits_with_the_corefile_line(tmp_path: Path):
    missing = tmp_path / "lists" / "missing.txt"
    conf = tmp_path / "Corefile"
    text = corefile(FILE_LIST, PORT=free_port(), FILE=missing, HTTP=free_port(), UPSTREAM="::1")
    conf.write_text(text)
    result = run_cli("run", "-conf", str(conf), timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"plugin/firewall: {conf}:5 - Error during parsing: cannot read list 'local': "
        f"{missing}: No such file or directory"
    )


def test_reload_with_a_missing_list_file_keeps_the_old_lists(dnsfw, upstream, tmp_path: Path):
    listfile = tmp_path / "blocked.txt"
    listfile.write_text("ads.example\n")
    http = free_port()
    d = dnsfw(corefile(FILE_LIST, FILE=listfile, HTTP=http, UPSTREAM=upstream.address))
    assert blocked(d.port, "ads.example")
    listfile.unlink()
    expected = (
        f"{d.conf}:5 - Error during parsing: cannot read list 'local': {listfile}: "
        "No such file or directory"
    )
    d.signal(signal.SIGHUP)
    wait_until(lambda: "reload_failed" in d.stderr, "the failed reload")
    assert expected in d.stderr
    assert blocked(d.port, "ads.example")  # the old configuration, its list loaded
    reply = Api(http, token=None).call("POST", "/v1/reload")
    assert reply.status == 400 and expected in reply.json["error"]
    assert blocked(d.port, "ads.example")
