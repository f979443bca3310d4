"""Threat feeds (``list NAME feed FEED``) from the catalogue, and ``headers_file`` for url
lists: served by a local HTTP server that records each request's headers."""

from __future__ import annotations

import json
from pathlib import Path

import dns.rcode
import pytest

from commands.aws.model import MANAGED_LISTS
from plugins.firewall import feeds
from plugins.firewall.lists import FORMATS
from tests.kit.dnsfw import run_cli
from tests.kit.servers import StaticList

SECRET = "Bearer s3cr3t-feed-token-6f1c"


def test_the_shipped_catalogue_describes_each_feed() -> None:
    known = feeds.catalogue()
    assert {"urlhaus", "threatfox", "hagezi-tif", "oisd-big"} <= set(known)
    for feed in known.values():
        assert feed.url.startswith("https://"), feed
        assert feed.format in FORMATS
        assert feed.licence and feed.updated and feed.about and feed.homepage, feed
        assert feed.refresh >= 3600  # never hammers a free service
        assert set(feed.replaces) <= set(MANAGED_LISTS), feed
    # every public-intelligence managed list has a stand-in; GuardDuty's has none
    assert feeds.replacing("AWSManagedDomainsMalwareDomainList").name == "urlhaus"
    assert feeds.replacing("AWSManagedDomainsBotnetCommandandControl").name == "threatfox"
    assert feeds.replacing("AWSManagedDomainsAggregateThreatList").name == "hagezi-tif"
    assert feeds.replacing("AWSManagedDomainsAmazonGuardDutyThreatList") is None


@pytest.fixture
def feed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A catalogue (DNSFW_FEEDS) whose feed 'local-threats' is served by a StaticList on
    127.0.0.1 in hosts format (as URLhaus's), and a private state directory."""
    body = "# local threat feed\n127.0.0.1\tlocalhost\n127.0.0.1\tevil.example.com\n"
    with StaticList(body) as server:
        catalogue = tmp_path / "feeds.json"
        catalogue.write_text(
            json.dumps(
                {
                    "local-threats": {
                        "url": server.url,
                        "format": "hosts",
                        "refresh": "1h",
                        "licence": "CC0-1.0",
                        "replaces": ["AWSManagedDomainsMalwareDomainList"],
                    }
                }
            )
        )
        monkeypatch.setenv("DNSFW_FEEDS", str(catalogue))
        monkeypatch.setenv("DNSFW_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        yield server


FEED_COREFILE = """\
.:$PORT {
    bind 127.0.0.1
    firewall {
        list threats feed local-threats headers_file feed.headers
        group g 100 {
            rule block-threats 10 BLOCK threats response nxdomain
        }
    }
    forward . UPSTREAM
}
"""


def test_a_feed_list_downloads_with_the_headers_of_its_file_never_logged(
    feed_env: StaticList, dnsfw, upstream, tmp_path: Path
) -> None:
    (tmp_path / "feed.headers").write_text(f"# the feed's key\nAuthorization: {SECRET}\n")
    fw = dnsfw(FEED_COREFILE.replace("UPSTREAM", upstream.address))
    assert fw.query("evil.example.com").rcode() == dns.rcode.NXDOMAIN
    assert fw.query("example.com").rcode() == dns.rcode.NOERROR
    assert feed_env.headers and feed_env.headers[0]["Authorization"] == SECRET
    assert "list_downloaded" in fw.stderr and feed_env.url in fw.stderr
    # its on-disk copy, as any url list's
    assert any(p.read_text().count("evil.example.com") for p in (tmp_path / "state").rglob("*.txt"))
    fw.stop()
    assert SECRET not in fw.stderr and "s3cr3t" not in (tmp_path / "dnsfw.stdout").read_text()


def test_check_downloads_a_feed_with_its_headers(feed_env: StaticList, tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(FEED_COREFILE.replace("$PORT", "1053").replace("UPSTREAM", "127.0.0.1:9"))
    (tmp_path / "feed.headers").write_text(f"Authorization: {SECRET}\nX-Client: dnsfw-test\n")
    done = run_cli("check", "-conf", str(conf))
    assert done.returncode == 0, done.stderr
    assert feed_env.headers[-1]["X-Client"] == "dnsfw-test"
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("list_line", "headers", "message"),
    [
        (
            "list threats feed local-threat",
            None,
            "unknown feed 'local-threat' (did you mean 'local-threats'?)",
        ),
        (
            "list threats feed local-threats format adblock",
            None,
            "unknown list option 'format'",
        ),
        (
            "list threats feed local-threats headers_file feed.headers",
            f"Authorization {SECRET}\n",
            "feed.headers:1: not a 'Name: value' header line",
        ),
        (
            "list threats url http://127.0.0.1:9/x.txt headers_file feed.headers",
            f"Host: {SECRET}\n",
            "feed.headers:1: header Host is set by dnsfw",
        ),
        (
            "list threats url http://127.0.0.1:9/x.txt headers_file missing.headers",
            None,
            "headers_file: [Errno 2] No such file or directory",
        ),
    ],
)
def test_bad_feed_and_headers_lines_are_errors_at_their_line_without_the_secret(
    feed_env: StaticList, tmp_path: Path, list_line: str, headers: str | None, message: str
) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(
        FEED_COREFILE.replace("$PORT", "1053")
        .replace("UPSTREAM", "127.0.0.1:9")
        .replace("list threats feed local-threats headers_file feed.headers", list_line)
    )
    if headers is not None:
        (tmp_path / "feed.headers").write_text(headers)
    done = run_cli("check", "-conf", str(conf))
    assert done.returncode == 1
    assert f"{conf}:4 - " in done.stderr and message in done.stderr, done.stderr
    assert "s3cr3t" not in done.stderr
