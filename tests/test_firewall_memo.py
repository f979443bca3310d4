"""The firewall's decision memo: fast repeats, and never a stale decision after a list swap."""

from __future__ import annotations

from plugins.firewall.config import ListSpec
from plugins.firewall.lists import DomainList
from plugins.firewall.policy import BLOCK, Group, Policy, Rule
from plugins.firewall.sources import ListSlot
from proxy.names import text_to_wire


def make_policy(entries: list[str], **rule_kw) -> tuple[Policy, ListSlot]:
    slot = ListSlot(ListSpec("bad", "domains", entries=tuple(entries)))
    rule = Rule("block-bad", 10, BLOCK, "bad", "g", **rule_kw)
    policy = Policy([Group("g", 1, (rule,))], lambda name: slot.current)
    slot.on_swap.append(policy.forget)
    return policy, slot


def test_repeat_decisions_come_from_the_memo():
    policy, _ = make_policy(["ads.example"])
    name = text_to_wire("ads.example")
    first = policy.decide(name, 1, "127.0.0.1")
    assert first is not None and first.name == "block-bad"
    assert policy.memo == {name: first}
    assert policy.decide(name, 1, "127.0.0.1") is first
    assert policy.decide(text_to_wire("ok.example"), 1, "127.0.0.1") is None


def test_a_swapped_list_applies_at_once():
    policy, slot = make_policy(["ads.example"])
    name = text_to_wire("new.example")
    assert policy.decide(name, 1, "127.0.0.1") is None  # remembered as no match
    slot._set(DomainList.from_entries(["ads.example", "new.example"]), 0, 0.0)
    assert policy.memo == {}
    assert policy.decide(name, 1, "127.0.0.1") is not None


def test_memo_keys_include_type_when_rules_depend_on_it():
    policy, _ = make_policy(["ads.example"], qtype=28)
    name = text_to_wire("ads.example")
    assert policy.decide(name, 1, "127.0.0.1") is None
    assert policy.decide(name, 28, "127.0.0.1") is not None


def test_memo_is_bounded():
    policy, _ = make_policy(["ads.example"])
    policy.MEMO_MAX = 100
    for i in range(250):
        policy.decide(text_to_wire(f"n{i}.example"), 1, "127.0.0.1")
    assert len(policy.memo) <= 100
