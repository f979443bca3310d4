"""Wire helpers against dnspython-built messages: the answer-chain scan and AnswerInfo agree,
and the record walk (``check_records``) takes what dnspython renders and refuses the rest."""

from __future__ import annotations

import random
import struct

import dns.edns
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


def _records_at(data: bytes) -> tuple[int, int, int, int]:
    """(offset past the question, ANCOUNT, NSCOUNT, ARCOUNT) of a one-question message."""
    off = 12
    while data[off]:
        off += data[off] + 1
    return off + 5, (data[6] << 8) | data[7], (data[8] << 8) | data[9], (data[10] << 8) | data[11]


RICH = reply(
    [
        ("www.example.com.", "CNAME", "edge.example.net."),
        ("edge.example.net.", "A", "192.0.2.1"),
        ("edge.example.net.", "AAAA", "2001:db8::1"),
        ("edge.example.net.", "MX", "10 mail.example.net."),
        ("edge.example.net.", "SRV", "1 2 443 srv.example.net."),
        ("edge.example.net.", "TXT", '"v=spf1 -all" "two"'),
        ("edge.example.net.", "CAA", '0 issue "ca.example"'),
        ("1.2.0.192.in-addr.arpa.", "PTR", "edge.example.net."),
        ("example.com.", "DNAME", "example.net."),
    ],
    authority=[("example.net.", "SOA", "ns1.example.net. h.example.net. 1 2 3 4 5")],
    additional=[("ns1.example.net.", "NS", "ns2.example.net.")],
)


def test_check_records_walks_what_dnspython_renders():
    off, an, ns, ar = _records_at(RICH)
    assert wire.check_records(RICH, off, an, ns, ar) == (len(RICH), len(RICH) - 11)
    query = dns.message.make_query(
        "www.example.com.", "A", use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")]
    )
    data = query.to_wire()
    assert wire.check_records(data, *_records_at(data)) == (len(data), len(data) - 23)


def test_check_records_refuses_every_cut_and_raises_nothing_else_on_mutations():
    off, an, ns, ar = _records_at(RICH)
    for end in range(off, len(RICH)):
        with pytest.raises(wire.WireError):
            wire.check_records(RICH[:end], off, an, ns, ar)
    rng = random.Random(22)
    for _ in range(5000):
        data = bytearray(RICH)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(off, len(data))] = rng.randrange(256)
        try:
            end, _ = wire.check_records(bytes(data), off, an, ns, ar)
        except wire.WireError:
            continue
        assert end <= len(data)


QUERY = dns.message.make_query("www.example.com.", "A").to_wire()
QEND = len(QUERY)  # the question ends the query: the records start here
A_RECORD = struct.pack("!HHIH", 1, 1, 0, 4) + bytes(4)  # type, class, TTL, RDLENGTH, address


def _pointer(target: int) -> bytes:
    return struct.pack("!H", 0xC000 | target)


def _with_answers(count: int, records: bytes) -> bytes:
    return QUERY[:6] + struct.pack("!H", count) + QUERY[8:] + records


@pytest.mark.parametrize(
    "owner",
    [
        _pointer(QEND),  # the record's own start: a loop
        _pointer(QEND + 2),  # ahead of the pointer
        b"\x01a" + _pointer(QEND),  # back into the name it is read from
        b"\x40abc\x00",  # reserved label type
        (b"\x3f" + b"a" * 63) * 4 + b"\x00",  # 257 bytes
    ],
    ids=["self", "ahead", "into-itself", "label-type", "over-255"],
)
def test_names_the_walk_refuses(owner: bytes):
    with pytest.raises(wire.WireError):
        wire.check_records(_with_answers(1, owner + A_RECORD), QEND, 1, 0, 0)
    # the same record owned by the question's name is fine
    assert wire.check_records(_with_answers(1, _pointer(12) + A_RECORD), QEND, 1, 0, 0)


def _pointer_chain(links: int) -> bytes:
    """Two records: the first's rdata holds ``links`` pointers, each to the one before (the
    first to the record's own owner, a pointer to the question's name, which needs no walk);
    the second's owner points at the last: ``links + 1`` pointers to follow."""
    rdata_at = QEND + 2 + 10
    chain = _pointer(QEND) + b"".join(_pointer(rdata_at + 2 * i) for i in range(links - 1))
    first = _pointer(12) + struct.pack("!HHIH", 0xFF00, 1, 0, len(chain)) + chain
    second = _pointer(rdata_at + 2 * (links - 1)) + A_RECORD
    return _with_answers(2, first + second)


def test_the_pointers_followed_in_a_name_are_bounded():
    data = _pointer_chain(wire.MAX_POINTERS - 1)
    assert wire.check_records(data, QEND, 2, 0, 0) == (len(data), -1)
    with pytest.raises(wire.WireError, match="too many compression pointers"):
        wire.check_records(_pointer_chain(wire.MAX_POINTERS), QEND, 2, 0, 0)
