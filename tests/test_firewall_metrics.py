"""Firewall metrics cover every firewall of a configuration, not only the last one set up."""

from __future__ import annotations

from plugins.firewall import FIREWALLS
from proxy.config import load
from proxy.services import DOMAIN_LISTS

COREFILE = """
a.example:53 {
    firewall {
        list l domains ads.example
        group g 1 {
            rule r 1 BLOCK l
        }
    }
}
b.example:53 {
    firewall {
        list l domains ads.example other.example
        group g 1 {
            rule r 1 BLOCK l
        }
    }
}
"""


def series(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_firewalls_of_two_blocks_are_both_counted(tmp_path):
    conf = tmp_path / "Corefile"
    conf.write_text(COREFILE)
    config = load(str(conf), checking=True)
    first, second = config.app.services.get(FIREWALLS)
    assert config.app.services.get(DOMAIN_LISTS) == [first, second]
    first.matches[next(iter(first.matches))] += 2
    second.matches[next(iter(second.matches))] += 3
    text = config.app.metrics.render()
    assert series(text, "dnsfw_firewall_rule_matches_total{") == [
        'dnsfw_firewall_rule_matches_total{group="g",rule="r",list="l",action="BLOCK"} 5'
    ]
    assert series(text, "dnsfw_firewall_list_entries{") == [
        'dnsfw_firewall_list_entries{list="l"} 3'
    ]
