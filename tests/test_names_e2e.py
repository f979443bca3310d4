"""One name means one domain in every plugin (proxy.names), end to end and through setup.

``cache straße.de`` and a firewall list entry ``straße.de`` are both ``xn--strae-oqa.de``
(IDNA 2008), not IDNA 2003's ``strasse.de``; a CIDR off an octet boundary is the same set
of reverse zones as a server block key, a ``log`` NAME, a ``cache`` zone and a ``forward``
``except``.
"""

from __future__ import annotations

import dns.rcode

import plugins
from proxy.config import AppContext, build
from proxy.corefile import parse as parse_corefile
from tests.kit.corefiles import corefile

CIDR_27 = tuple(f"{i}.0.0.10.in-addr.arpa." for i in range(32))


def asked(upstream, name: str) -> int:
    return sum(1 for s in upstream.seen if s.name == name)


def test_cache_zone_and_list_entry_in_unicode_name_the_same_domain(dnsfw, upstream) -> None:
    server = dnsfw(
        corefile(
            """\
.:$PORT {
    firewall {
        list intl domains straße.de
        group g 100 {
            rule block-intl 100 BLOCK intl response nxdomain
        }
    }
    cache straße.de
    forward . $UPSTREAM
}
""",
            UPSTREAM=upstream.address,
        )
    )
    # the list entry is the IDNA 2008 name: it is blocked, the IDNA 2003 spelling is not
    blocked = server.query("xn--strae-oqa.de.", "A")
    assert blocked.rcode() == dns.rcode.NXDOMAIN and asked(upstream, "xn--strae-oqa.de.") == 0
    assert server.query("strasse.de.", "A").rcode() == dns.rcode.NXDOMAIN
    assert asked(upstream, "strasse.de.") == 1
    # the cache zone is the same name: below it answers are cached, below strasse.de not
    for name in ("www.xn--strae-oqa.de.", "www.strasse.de."):
        for _ in range(2):
            assert server.query(name, "A").rcode() == dns.rcode.NXDOMAIN
    assert asked(upstream, "www.xn--strae-oqa.de.") == 1
    assert asked(upstream, "www.strasse.de.") == 2


def configured(text: str):
    blocks = parse_corefile(text, directives=plugins.ORDER)
    return build(blocks, AppContext(conf_path="Corefile", checking=True))


def plugin(config, name: str):
    (block,) = config.blocks
    return next(p for p in block.plugins if p.name == name)


def test_a_27_is_its_32_zones_in_every_plugin() -> None:
    config = configured(
        """
10.0.0.0/27:1053 {
    log 10.0.0.0/27
    cache 10.0.0.0/27 {
        disable denial 10.0.0.0/27
    }
    forward . 192.0.2.1 {
        except 10.0.0.0/27
    }
}
"""
    )
    (block,) = config.blocks
    assert tuple(key.zone for key in block.keys) == CIDR_27
    assert plugin(config, "log").settings.names == CIDR_27
    cache = plugin(config, "cache")
    assert cache.config.zones == CIDR_27 and cache.config.disable_denial == CIDR_27
    assert plugin(config, "forward").cfg.except_zones == CIDR_27
    # the whole /24 is not in them: the old proxy.config meaning of a CIDR
    assert not cache.check_zones  # the cache's zones are the block's zones, no narrower
    (zones,) = config.listeners.values()
    assert len(zones) == 32 and b"\x010\x010\x0210\x07in-addr\x04arpa\x00" not in zones


def test_cache_zones_default_to_the_block_zones_of_a_cidr_key() -> None:
    config = configured("10.0.0.0/27:1053 {\n    cache\n    prometheus 127.0.0.1:9153\n}\n")
    assert plugin(config, "cache").config.zones == CIDR_27
    assert set(plugin(config, "prometheus").zones.values()) == set(CIDR_27)
