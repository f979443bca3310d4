"""Setup of the ``forward`` plugin: every option, valid and invalid, with the exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

import plugins
from plugins.forward import Forward
from plugins.forward.options import ForwardConfig, Target
from proxy.config import AppContext, Config, build
from proxy.corefile import CorefileError, parse
from proxy.services import UPSTREAMS
from tests.kit.corefiles import BLOCK, corefile
from tests.kit.tls import make_cert

# a forward to TO with OPTIONS in its block (as a body for load: the block opens on line 2)
FORWARD_OPTIONS = """\
forward . $TO {
$OPTIONS
}"""


def load(body: str, *, name: str = "Corefile") -> Config:
    """Set up ``. { BODY }`` (BODY starts on line 2) through the core, as ``dnsfw check`` does."""
    text = corefile(BLOCK, KEYS=".:1053", BODY=body)
    blocks = parse(text, filename=name, directives=plugins.ORDER)
    return build(blocks, AppContext(conf_path=name, checking=True))


def forwards(body: str) -> list[Forward]:
    return [p for p in load(body).blocks[0].plugins if isinstance(p, Forward)]


def config(body: str) -> ForwardConfig:
    (plugin,) = forwards(body)
    return plugin.cfg


def error(body: str) -> str:
    with pytest.raises(CorefileError) as info:
        load(body)
    return str(info.value)


def prefix(line: int) -> str:
    return f"plugin/forward: Corefile:{line} - Error during parsing: "


# --- FROM and TO ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("1.2.3.4", [Target("dns", "1.2.3.4", 53)]),
        ("1.2.3.4:5301", [Target("dns", "1.2.3.4", 5301)]),
        ("::1", [Target("dns", "::1", 53)]),
        ("[2001:db8::1]:5301", [Target("dns", "2001:db8::1", 5301)]),
        ("dns://1.2.3.4", [Target("dns", "1.2.3.4", 53)]),
        ("dns://[::1]:5353", [Target("dns", "::1", 5353)]),
        ("tls://9.9.9.9", [Target("tls", "9.9.9.9", 853)]),
        ("tls://9.9.9.9:8853", [Target("tls", "9.9.9.9", 8853)]),
        ("tls://9.9.9.9%dns.quad9.net", [Target("tls", "9.9.9.9", 853, "dns.quad9.net")]),
        ("tls://9.9.9.9%dns.quad9.net:8853", [Target("tls", "9.9.9.9", 8853, "dns.quad9.net")]),
        (
            "tls://[2620:fe::fe]%dns.quad9.net:853",
            [Target("tls", "2620:fe::fe", 853, "dns.quad9.net")],
        ),
        (
            "1.1.1.1 8.8.8.8:5353",
            [Target("dns", "1.1.1.1", 53), Target("dns", "8.8.8.8", 5353)],
        ),
    ],
)
def test_to_forms(to: str, expected: list[Target]) -> None:
    assert list(config(f"forward . {to}").targets) == expected


def test_defaults_are_corednss() -> None:
    cfg = config("forward . 1.2.3.4")
    assert cfg.from_zone == "."
    assert (cfg.max_fails, cfg.health_check, cfg.expire, cfg.read_timeout) == (2, 0.5, 10.0, 2.0)
    assert (cfg.policy, cfg.max_concurrent, cfg.force_tcp, cfg.prefer_udp) == (
        "random",
        0,
        False,
        False,
    )
    assert (cfg.health_domain, cfg.health_rd, cfg.failfast) == (".", True, False)
    assert cfg.tls_context is None  # no tls:// upstream, no `tls` line


@pytest.mark.parametrize(
    ("from_", "zone"),
    [
        ("example.ORG", "example.org."),
        ("example.org.", "example.org."),
        ("10.0.0.0/8", "10.in-addr.arpa."),
        ("10.0.0.0/27", "0.0.0.10.in-addr.arpa."),  # the first of its 32 zones, as CoreDNS
    ],
)
def test_from_is_normalised(from_: str, zone: str) -> None:
    assert config(f"forward {from_} 1.2.3.4").from_zone == zone


def test_resolv_conf_file(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example.org\nnameserver 192.0.2.1\nnameserver 2001:db8::53\n"
        "options ndots:2\nnameserver 192.0.2.2 ; trailing comment\n"
    )
    cfg = config(f"forward . {conf} 192.0.2.9:5300")
    assert list(cfg.targets) == [
        Target("dns", "192.0.2.1", 53),
        Target("dns", "2001:db8::53", 53),
        Target("dns", "192.0.2.2", 53),
        Target("dns", "192.0.2.9", 5300),
    ]


def test_resolv_conf_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.conf"
    empty.write_text("search example.org\n")
    assert error(f"forward . {empty}") == prefix(2) + f"no nameservers found in {empty}"
    bad = tmp_path / "bad.conf"
    bad.write_text("nameserver 192.0.2.1\nnameserver ns.example.org\n")
    assert error(f"forward . {bad}") == (
        prefix(2) + f"{bad}:2: nameserver 'ns.example.org' is not an IP address"
    )


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("dns.google", 'not an IP address or file: "dns.google"'),
        ("/nonexistent/resolv.conf", 'not an IP address or file: "/nonexistent/resolv.conf"'),
        ("1.2.3.4:99999", 'not an IP address or file: "1.2.3.4:99999"'),
        ("1.2.3.4:", 'not an IP address or file: "1.2.3.4:"'),
        ("[::1]", 'not an IP address or file: "[::1]"'),
        ("tls://dns.quad9.net", 'not an IP address or file: "dns.quad9.net"'),
        ("foo://1.2.3.4", 'not an IP address or file: "foo://1.2.3.4"'),
        # DoH upstreams take the fixed path /dns-query, as CoreDNS's: a path is refused
        ("https://1.1.1.1/dns-query", 'not an IP address or file: "1.1.1.1/dns-query"'),
        (
            "quic://1.1.1.1",
            "'quic' is not supported as a destination protocol in forward: 1.1.1.1 "
            "(dnsfw forwards over dns://, tls:// and https:// only)",
        ),
        (
            "grpc://1.1.1.1:443",
            "'grpc' is not supported as a destination protocol in forward: 1.1.1.1:443 "
            "(dnsfw forwards over dns://, tls:// and https:// only)",
        ),
    ],
)
def test_bad_to(to: str, message: str) -> None:
    assert error(f"forward . 1.2.3.4 {to}") == prefix(2) + message


def test_at_most_15_tos() -> None:
    fifteen = " ".join(f"192.0.2.{i}" for i in range(1, 16))
    assert len(config(f"forward . {fifteen}").targets) == 15
    assert error(f"forward . {fifteen} 192.0.2.16") == prefix(2) + "more than 15 TOs configured: 16"


def test_bad_from() -> None:
    assert (
        error("forward exa..mple 1.2.3.4")
        == prefix(2) + "zone is not a valid domain name: exa..mple"
    )
    assert error("forward 10.0.0.0/99 1.2.3.4") == prefix(2) + "unable to normalize '10.0.0.0/99'"


@pytest.mark.parametrize("body", ["forward", "forward .", "forward . 1.2.3.4 {\n}\nforward"])
def test_argument_count(body: str) -> None:
    line = 2 + body.count("\n")
    assert (
        error(body)
        == prefix(line) + "Wrong argument count or unexpected line ending after 'forward'"
    )


# --- block options -------------------------------------------------------------------------

VALID = [
    ("except example.org SUB.example.com.", {"except_zones": ("example.org.", "sub.example.com.")}),
    (
        "except 10.0.0.0/31",  # a CIDR excepts all its reverse zones
        {"except_zones": ("0.0.0.10.in-addr.arpa.", "1.0.0.10.in-addr.arpa.")},
    ),
    ("force_tcp", {"force_tcp": True}),
    ("prefer_udp", {"prefer_udp": True}),
    ("expire 30s", {"expire": 30.0}),
    ("expire 0s", {"expire": 0.0}),
    ("max_fails 0", {"max_fails": 0}),
    ("max_fails 5", {"max_fails": 5}),
    ("policy round_robin", {"policy": "round_robin"}),
    ("policy sequential", {"policy": "sequential"}),
    ("policy random", {"policy": "random"}),
    ("health_check 2s", {"health_check": 2.0, "health_domain": ".", "health_rd": True}),
    ("health_check 100ms no_rec", {"health_check": 0.1, "health_rd": False}),
    (
        "health_check 1s domain Example.ORG no_rec",
        {"health_check": 1.0, "health_domain": "example.org.", "health_rd": False},
    ),
    ("health_check 0s", {"health_check": 0.0}),
    ("max_concurrent 1000", {"max_concurrent": 1000, "max_concurrent_text": "1000"}),
    ("read_timeout 300ms", {"read_timeout": 0.3}),
    ("failfast_all_unhealthy_upstreams", {"failfast": True}),
    ("next NXDOMAIN servfail", {"next_rcodes": frozenset({3, 2})}),
    ("failover SERVFAIL REFUSED", {"failover_rcodes": frozenset({2, 5})}),
    ("tls_servername dns.example", {"tls_servername": "dns.example"}),
]


@pytest.mark.parametrize(("line", "fields"), VALID, ids=[v[0] for v in VALID])
def test_valid_option(line: str, fields: dict[str, object]) -> None:
    cfg = config(corefile(FORWARD_OPTIONS, TO="1.2.3.4", OPTIONS=line))
    for name, value in fields.items():
        assert getattr(cfg, name) == value, name


ARG = "Wrong argument count or unexpected line ending after '{}'"
INVALID = [
    ("except", ARG.format("except")),
    ("force_tcp yes", ARG.format("force_tcp")),
    ("prefer_udp 1", ARG.format("prefer_udp")),
    ("failfast_all_unhealthy_upstreams now", ARG.format("failfast_all_unhealthy_upstreams")),
    ("expire", ARG.format("expire")),
    ("expire 1s 2s", ARG.format("expire")),
    ("expire soon", "invalid duration 'soon'"),
    ("expire -1s", "expire can't be negative: -1s"),
    ("max_fails", ARG.format("max_fails")),
    ("max_fails -1", "max_fails must be an integer from 0 to 4294967295, not '-1'"),
    ("max_fails two", "max_fails must be an integer from 0 to 4294967295, not 'two'"),
    ("max_fails 4294967296", "max_fails must be an integer from 0 to 4294967295, not '4294967296'"),
    ("policy", ARG.format("policy")),
    ("policy fastest", "unknown policy 'fastest'"),
    ("health_check", ARG.format("health_check")),
    ("health_check -5s", "health_check can't be negative: -5s"),
    ("health_check 5", "invalid duration '5'"),
    ("health_check 1s maybe", "health_check: unknown option maybe"),
    ("health_check 1s domain", ARG.format("health_check")),
    ("health_check 1s domain a..b", "health_check: invalid domain name a..b"),
    ("max_concurrent", ARG.format("max_concurrent")),
    ("max_concurrent many", "max_concurrent must be an integer, not 'many'"),
    ("max_concurrent -1", "max_concurrent can't be negative: -1"),
    ("read_timeout", ARG.format("read_timeout")),
    ("read_timeout 0s", "read_timeout must be greater than 0: 0s"),
    ("read_timeout -1s", "read_timeout can't be negative: -1s"),
    ("next", ARG.format("next")),
    ("next NXDOMIAN", "NXDOMIAN is not a valid rcode"),
    (
        "next BADVERS",
        "BADVERS is an extended rcode; dnsfw matches header rcodes (NOERROR..NOTZONE)",
    ),
    ("failover", ARG.format("failover")),
    ("failover NOERROR", "NoError cannot be used in failover"),
    ("failover 2", "2 is not a valid rcode"),
    ("tls_servername", ARG.format("tls_servername")),
    ("tls a b c d", ARG.format("tls")),
    ("tls /nonexistent/ca.pem", "error reading /nonexistent/ca.pem: No such file or directory"),
    ("bogus 1", "unknown property 'bogus'"),
    ("force_tcp {\n}", ARG.format("force_tcp")),
    ("max_connect_attempts 3", "forward option 'max_connect_attempts' is not supported by dnsfw"),
    ("max_idle_conns 10", "forward option 'max_idle_conns' is not supported by dnsfw"),
    ("max_age 1m", "forward option 'max_age' is not supported by dnsfw"),
    ("next_on_nodata", "forward option 'next_on_nodata' is not supported by dnsfw"),
    ("resolver 1.1.1.1", "forward option 'resolver' is not supported by dnsfw"),
    ("doh_method GET", "forward option 'doh_method' is not supported by dnsfw"),
    ("source_address 10.0.0.1", "forward option 'source_address' is not supported by dnsfw"),
]


@pytest.mark.parametrize(("line", "message"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_option(line: str, message: str) -> None:
    # the option sits on line 4, after a valid one: the error must point at line 4
    body = corefile(FORWARD_OPTIONS, TO="1.2.3.4", OPTIONS=f"policy sequential\n{line}")
    assert error(body) == prefix(4) + message


def test_error_names_the_file_of_an_import(tmp_path: Path) -> None:
    (tmp_path / "fw.conf").write_text("forward . 1.2.3.4 {\n    max_fails x\n}\n")
    main = tmp_path / "Corefile"
    main.write_text(".:1053 {\n    import fw.conf\n}\n")
    from proxy.config import load as load_file

    with pytest.raises(CorefileError) as info:
        load_file(str(main), checking=True)
    where = tmp_path / "fw.conf"
    assert str(info.value) == (
        f"plugin/forward: {where}:2 - Error during parsing: "
        "max_fails must be an integer from 0 to 4294967295, not 'x'"
    )


# --- TLS -----------------------------------------------------------------------------------


def test_tls_options(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "dot.test")
    for args in ("", f"{cert}", f"{cert} {key}", f"{cert} {key} {cert}"):
        cfg = config(
            corefile(
                FORWARD_OPTIONS,
                TO="tls://127.0.0.1",
                OPTIONS=f"tls {args}\ntls_servername dot.test",
            )
        )
        assert cfg.tls_context is not None
        assert cfg.tls_context.minimum_version.name == "TLSv1_2"
        assert cfg.tls_servername == "dot.test"
    # a tls:// upstream without a `tls` line verifies against the system store
    assert config("forward . tls://9.9.9.9").tls_context is not None


def test_tls_errors(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "dot.test")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert error(corefile(FORWARD_OPTIONS, TO="tls://127.0.0.1", OPTIONS=f"tls {junk}")) == (
        prefix(3) + f"could not read root certs from {junk}"
    )
    message = error(corefile(FORWARD_OPTIONS, TO="tls://127.0.0.1", OPTIONS=f"tls {key} {cert}"))
    assert message.startswith(prefix(3) + "could not load TLS cert: ")
    assert error("forward . tls://127.0.0.1%a.test {\ntls_servername b.test\n}") == prefix(2) + (
        "both forward ('b.test') and proxy level ('a.test') TLS servernames are set for "
        "upstream proxy '127.0.0.1:853'"
    )


# --- several forwards, registration ----------------------------------------------------------


def test_forwards_chain_in_corefile_order() -> None:
    first, second, third = forwards(
        "forward lab.example.local 10.0.0.1\nforward example.local 10.0.0.2\nforward . 10.0.0.3\nwhoami"
    )
    assert [f.cfg.from_zone for f in (first, second, third)] == [
        "lab.example.local.",
        "example.local.",
        ".",
    ]
    # `next RCODES` only hands over to another forward: the last one's next is whoami
    assert (first.next_is_forward, second.next_is_forward, third.next_is_forward) == (
        True,
        True,
        False,
    )


def test_forwards_of_other_blocks_do_not_chain() -> None:
    text = ".:1053 {\nforward . 10.0.0.1\n}\nexample.org:1053 {\nforward . 10.0.0.2\n}\n"
    cfg = build(parse(text, directives=plugins.ORDER), AppContext(conf_path="Corefile"))
    assert [p.next_is_forward for b in cfg.blocks for p in b.plugins] == [False, False]
    assert len(cfg.app.services.get(UPSTREAMS)) == 2


def test_metrics_are_registered() -> None:
    cfg = load("forward . 10.0.0.1")
    names = set(cfg.app.metrics.metrics)
    assert {
        "coredns_proxy_request_duration_seconds",
        "coredns_proxy_healthcheck_failures_total",
        "coredns_forward_healthcheck_broken_total",
        "coredns_forward_max_concurrent_rejects_total",
        "coredns_forward_rejected_replies_total",
    } <= names
