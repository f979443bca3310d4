"""Wire helpers against dnspython-built messages: the answer-chain scan and AnswerInfo agree."""

from __future__ import annotations

import dns.message
import dns.rrset
import pytest

from proxy import wire
from proxy.names import text_to_wire


def reply(records: list[tuple[str, str, str]], authority=(), additional=()) -> bytes:
    query = dns.message.make_query("www.example.com.", "A", use_edns=0)
    msg = dns.message.make_response(query)
    for section, items in (
        (msg.answer, records),
        (msg.authority, authority),
        (msg.additional, additional),
    ):
        for name, rtype, rdata in items:
            section.append(dns.rrset.from_text(name, 300, "IN", rtype, rdata))
    return msg.to_wire()  # compressed, as upstreams send them


CASES = [
    [("www.example.com.", "A", "192.0.2.1")],
    [
        ("www.example.com.", "CNAME", "Edge.CDN.example.net."),
        ("edge.cdn.example.net.", "A", "192.0.2.2"),
    ],
    [
        ("www.example.com.", "CNAME", "a.example.org."),
        ("a.example.org.", "CNAME", "b.example.org."),
        ("b.example.org.", "AAAA", "2001:db8::1"),
    ],
    [("example.com.", "DNAME", "example.net."), ("www.example.com.", "CNAME", "www.example.net.")],
    [],
]


@pytest.mark.parametrize("records", CASES)
def test_answer_chain_matches_answer_info(records):
    data = reply(
        records,
        authority=[("example.com.", "NS", "ns1.example.com.")],
        additional=[("ns1.example.com.", "A", "192.0.2.53")],
    )
    assert wire.answer_chain(data) == wire.AnswerInfo(data).chain
    expected = [text_to_wire(r[2]) for r in records if r[1] in ("CNAME", "DNAME")]
    assert list(wire.answer_chain(data)) == expected


def test_answer_chain_rejects_a_truncated_answer_section():
    query = dns.message.make_query("www.example.com.", "A", use_edns=False)
    msg = dns.message.make_response(query)
    for name, rtype, rdata in CASES[1]:
        msg.answer.append(dns.rrset.from_text(name, 300, "IN", rtype, rdata))
    data = msg.to_wire()  # the answer section ends the message
    assert wire.answer_chain(data)
    with pytest.raises((wire.WireError, IndexError)):
        wire.answer_chain(data[:-2])  # the A record's address cut short


def test_answer_chain_ignores_sections_after_the_answer():
    data = reply(CASES[1], additional=[("ns1.example.com.", "A", "192.0.2.53")])
    assert wire.answer_chain(data[:-8]) == wire.answer_chain(data)
