"""Setup of the ``cache`` plugin: every option, CoreDNS's defaults, and its exact error texts."""

from __future__ import annotations

from pathlib import Path

import pytest

import plugins
from plugins.cache import INSTANCES, Cache
from plugins.cache.options import CacheConfig, TTLs
from plugins.cache.store import effective_capacity
from proxy.config import AppContext, Config, build
from proxy.corefile import CorefileError
from proxy.corefile import parse as parse_corefile
from proxy.services import CACHES
from tests.kit.corefiles import BLOCK_WHOAMI, corefile
from tests.kit.dnsfw import run_cli


def load(body: str, keys: str = ".:53") -> Config:
    text = corefile(BLOCK_WHOAMI, KEYS=keys, LINES=body)
    return build(parse_corefile(text, directives=plugins.ORDER), AppContext("Corefile"))


def config(body: str, keys: str = ".:53") -> CacheConfig:
    cache = load(body, keys).blocks[0].plugins[0]
    assert isinstance(cache, Cache)
    return cache.config


def error(body: str) -> str:
    with pytest.raises(CorefileError) as info:
        load(body)
    return str(info.value)


DEFAULTS = CacheConfig(zones=(".",), success=TTLs(10000, 3600, 5), denial=TTLs(10000, 1800, 5))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("cache", {}),
        ("cache 300", {"success": TTLs(10000, 300, 5), "denial": TTLs(10000, 300, 5)}),
        ("cache example.org", {"zones": ("example.org.",)}),
        (
            "cache 30 Example.ORG example.net.",
            {
                "zones": ("example.org.", "example.net."),
                "success": TTLs(10000, 30, 5),
                "denial": TTLs(10000, 30, 5),
            },
        ),
        ("cache 10.0.0.0/8", {"zones": ("10.in-addr.arpa.",)}),
        ("cache {\n success 20000\n }", {"success": TTLs(20000, 3600, 5)}),
        (
            "cache 300 {\n success 20000 600 10\n }",
            {
                "success": TTLs(20000, 600, 10),
                "denial": TTLs(10000, 300, 5),
            },
        ),
        ("cache {\n denial 100 60 0\n }", {"denial": TTLs(100, 60, 0)}),
        ("cache {\n success -5\n }", {"success": TTLs(-5, 3600, 5)}),
        ("cache {\n prefetch 10\n }", {"prefetch": 10}),
        ("cache {\n prefetch 0 30s\n }", {"prefetch": 0, "prefetch_window": 30.0}),
        (
            "cache {\n prefetch 2 2m 50%\n }",
            {
                "prefetch": 2,
                "prefetch_window": 120.0,
                "prefetch_percentage": 50,
            },
        ),
        ("cache {\n prefetch 2 1m 10%\n }", {"prefetch": 2, "prefetch_percentage": 10}),
        ("cache {\n prefetch 2 1m 90%\n }", {"prefetch": 2, "prefetch_percentage": 90}),
        ("cache {\n serve_stale\n }", {"stale_up_to": 3600.0}),
        ("cache {\n serve_stale 10m verify\n }", {"stale_up_to": 600.0, "stale_verify": True}),
        ("cache {\n serve_stale 1h VERIFY\n }", {"stale_up_to": 3600.0, "stale_verify": True}),
        ("cache {\n serve_stale 90s immediate\n }", {"stale_up_to": 90.0}),
        ("cache {\n serve_stale 0\n }", {"stale_up_to": 0.0}),
        ("cache {\n servfail 0\n }", {"servfail_ttl": 0.0}),
        ("cache {\n servfail 5m\n }", {"servfail_ttl": 300.0}),
        ("cache {\n servfail 1m30s\n }", {"servfail_ttl": 90.0}),
        ("cache {\n disable success\n }", {"disable_success": (".",)}),
        (
            "cache {\n disable denial Cluster.Local example.org\n }",
            {
                "disable_denial": ("cluster.local.", "example.org."),
            },
        ),
        (
            "cache {\n disable denial a.example\n disable denial b.example\n }",
            {
                "disable_denial": ("b.example.",),
            },
        ),
        ("cache {\n keepttl\n }", {"keepttl": True}),
    ],
)
def test_valid(body: str, expected: dict[str, object]) -> None:
    want = CacheConfig(**{**DEFAULTS.__dict__, **expected})
    assert config(body) == want


def test_zones_default_to_the_block_keys() -> None:
    assert config("cache", keys="example.org:53 example.net:53").zones == (
        "example.org.",
        "example.net.",
    )


@pytest.mark.parametrize(
    ("requested", "capacity"),
    [
        (10000, 9984),
        (9984, 9984),
        (1024, 1024),
        (1023, 1024),
        (5000, 4864),
        (1, 1024),
        (0, 1024),
        (-5, 1024),
        (100000, 99840),
    ],
)
def test_capacity_rounds_like_coredns(requested: int, capacity: int) -> None:
    assert effective_capacity(requested) == capacity


def test_store_capacity_and_services() -> None:
    cfg = load("cache {\n success 5000\n denial 10\n }")
    cache = cfg.blocks[0].plugins[0]
    assert (cache.success.capacity, cache.denial.capacity) == (4864, 1024)
    assert cfg.app.services.get(CACHES) == [cache]
    assert cfg.app.services.get(INSTANCES) == [cache]
    assert "coredns_cache_hits_total" in cfg.app.metrics.metrics


def test_zone_check_only_when_narrower_than_the_block() -> None:
    assert not load("cache").blocks[0].plugins[0].check_zones
    assert load("cache example.org").blocks[0].plugins[0].check_zones
    assert not load("cache org", keys="example.org:53").blocks[0].plugins[0].check_zones


def prefix(line: int) -> str:
    return f"plugin/cache: Corefile:{line} - Error during parsing: "


ARG = "Wrong argument count or unexpected line ending after"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("cache 0", 2, "cache TTL can not be zero or negative: 0"),
        ("cache -5 example.org", 2, "cache TTL can not be zero or negative: -5"),
        (
            "cache 99999999999999999999",
            2,
            'strconv.Atoi: parsing "99999999999999999999": value out of range',
        ),
        ("cache exa..mple", 2, "zone is not a valid domain name: exa..mple"),
        ("cache {\n success\n }", 3, f"{ARG} 'success'"),
        ("cache {\n success 1 2 3 4\n }", 3, f"{ARG} 'success'"),
        ("cache {\n success abc\n }", 3, 'strconv.Atoi: parsing "abc": invalid syntax'),
        ("cache {\n success 1.5\n }", 3, 'strconv.Atoi: parsing "1.5": invalid syntax'),
        ("cache {\n success 100 0\n }", 3, "cache TTL can not be zero or negative: 0"),
        ("cache {\n success 100 10s\n }", 3, 'strconv.Atoi: parsing "10s": invalid syntax'),
        ("cache {\n success 100 10 -1\n }", 3, "cache min TTL can not be negative: -1"),
        ("cache {\n denial\n }", 3, f"{ARG} 'denial'"),
        ("cache {\n denial 100 -3\n }", 3, "cache TTL can not be zero or negative: -3"),
        ("cache {\n denial 100 10 -2\n }", 3, "cache min TTL can not be negative: -2"),
        ("cache {\n\n denial 100 10 x\n }", 4, 'strconv.Atoi: parsing "x": invalid syntax'),
        ("cache {\n prefetch\n }", 3, f"{ARG} 'prefetch'"),
        ("cache {\n prefetch 1 1m 10% x\n }", 3, f"{ARG} 'prefetch'"),
        ("cache {\n prefetch many\n }", 3, 'strconv.Atoi: parsing "many": invalid syntax'),
        ("cache {\n prefetch -1\n }", 3, "prefetch amount should be positive: -1"),
        ("cache {\n prefetch 1 soon\n }", 3, "invalid duration 'soon'"),
        (
            "cache {\n prefetch 1 1m 50\n }",
            3,
            "last character of percentage should be `%`, but is: '0'",
        ),
        ("cache {\n prefetch 1 1m 5%\n }", 3, "percentage should fall in range [10, 90]: 5"),
        ("cache {\n prefetch 1 1m 91%\n }", 3, "percentage should fall in range [10, 90]: 91"),
        ("cache {\n prefetch 1 1m x%\n }", 3, 'strconv.Atoi: parsing "x": invalid syntax'),
        ("cache {\n serve_stale -1s\n }", 3, "invalid negative duration for serve_stale"),
        ("cache {\n serve_stale forever\n }", 3, "invalid duration 'forever'"),
        (
            "cache {\n serve_stale 1h later\n }",
            3,
            "invalid value for serve_stale refresh mode: later",
        ),
        (
            "cache {\n serve_stale 1h verify 5s\n }",
            3,
            "serve_stale: only [DURATION] [immediate|verify] are supported by dnsfw "
            "(no VERIFY_TIMEOUT, RESPONSE_TTL or FAILURE_RECHECK)",
        ),
        ("cache {\n servfail\n }", 3, f"{ARG} 'servfail'"),
        ("cache {\n servfail 1s 2s\n }", 3, f"{ARG} 'servfail'"),
        ("cache {\n servfail -1s\n }", 3, "invalid negative ttl for servfail"),
        (
            "cache {\n servfail 5m1s\n }",
            3,
            "caching SERVFAIL responses over 5 minutes is not permitted",
        ),
        ("cache {\n servfail 10\n }", 3, "invalid duration '10'"),
        ("cache {\n disable\n }", 3, f"{ARG} 'disable'"),
        ("cache {\n disable both\n }", 3, 'cache type for disable must be "success" or "denial"'),
        ("cache {\n disable success bad..zone\n }", 3, "invalid disabled zone: bad..zone"),
        ("cache {\n keepttl now\n }", 3, f"{ARG} 'keepttl'"),
        ("cache {\n ttl 30\n }", 3, f"{ARG} 'ttl'"),
        ("cache {\n success 10 {\n }\n }", 3, f"{ARG} 'success'"),
        ("cache\n    cache 30", 3, "this plugin can only be used once per Server Block"),
    ],
)
def test_errors(body: str, line: int, message: str) -> None:
    assert error(body) == prefix(line) + message


def test_dnsfw_check_reports_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "Corefile"
    conf.write_text(".:1053 {\n    cache {\n        servfail 10m\n    }\n    whoami\n}\n")
    result = run_cli("check", "-conf", str(conf))
    assert result.returncode == 1
    assert (
        f"plugin/cache: {conf}:3 - Error during parsing: "
        "caching SERVFAIL responses over 5 minutes is not permitted"
    ) in result.stderr
