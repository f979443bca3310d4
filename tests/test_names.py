"""The name toolkit (proxy.names): text <-> wire, zone matching, Corefile zones and CIDRs."""

from __future__ import annotations

import pytest

from plugins.firewall.lists import normalize_entry
from proxy.names import (
    in_zones,
    longest_zone,
    normalize_zone,
    reverse_zones,
    text_to_wire,
    to_ascii,
    wire_suffixes,
    wire_to_text,
    zones,
)

LONG_LABEL = "a" * 63
NAME_253 = ".".join([LONG_LABEL] * 3 + ["b" * 61])  # 255 octets in wire form: the limit


# --- text <-> wire ------------------------------------------------------------------------


def test_text_to_wire() -> None:
    assert text_to_wire("www.Example.com.") == b"\x03www\x07example\x03com\x00"
    assert text_to_wire("_dmarc.x") == b"\x06_dmarc\x01x\x00"
    assert text_to_wire("") == text_to_wire(".") == b"\x00"
    assert len(text_to_wire(NAME_253)) == 255
    assert text_to_wire(NAME_253 + ".") == text_to_wire(NAME_253)


@pytest.mark.parametrize(
    ("text", "ascii_name"),
    [
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: not IDNA 2003's "strasse.de"
        ("Straße.DE.", "xn--strae-oqa.de"),
        ("faß.de", "xn--fa-hia.de"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("ÄÖÜ.example", "xn--4ca0bs.example"),
        ("bücher\u3002de", "xn--bcher-kva.de"),  # ideographic full stop, mapped by UTS #46
        ("_sip._tcp.bücher.de", "_sip._tcp.xn--bcher-kva.de"),
    ],
)
def test_international_names_map_by_idna_2008(text: str, ascii_name: str) -> None:
    assert text_to_wire(text) == text_to_wire(ascii_name)
    assert wire_to_text(text_to_wire(text)) == ascii_name + "."
    assert to_ascii(text.removesuffix(".")).lower() == ascii_name
    # a list entry and a query name in the same spelling are the same domain
    assert text_to_wire(normalize_entry(text)) == text_to_wire(text)


def test_idna_2003_would_merge_what_2008_keeps_apart() -> None:
    assert "straße.de".encode("idna") == b"strasse.de"  # what proxy.config once keyed on
    assert text_to_wire("straße.de") != text_to_wire("strasse.de")


def test_to_ascii_leaves_ascii_alone() -> None:
    assert to_ascii("Example.COM") == "Example.COM"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a..b", "bad label in 'a..b'"),
        (".example", "bad label in '.example'"),
        ("example.com..", "bad label in 'example.com.'"),
        (LONG_LABEL + "a.com", f"bad label in '{LONG_LABEL}a.com'"),
        (NAME_253 + "b", f"name too long: '{NAME_253}b'"),
        ("☃☃.\U0001f4a9.la", "invalid internationalized name: "),
    ],
)
def test_text_to_wire_refuses_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        text_to_wire(text)
    assert str(info.value).startswith(message)


def test_wire_to_text() -> None:
    assert wire_to_text(b"\x00") == "."
    assert wire_to_text(b"\x03www\x07example\x03com\x00") == "www.example.com."
    assert wire_to_text(b"\x03a.b\x02c \x00") == "a\\.b.c\\032."  # escaped presentation
    assert wire_to_text(b'\x02("\x00') == '\\(\\".'


def test_wire_suffixes() -> None:
    qname = b"\x03www\x07example\x03com\x00"
    assert wire_suffixes(qname) == [qname, b"\x07example\x03com\x00", b"\x03com\x00", b"\x00"]
    assert wire_suffixes(b"\x00") == [b"\x00"]


# --- zone matching ------------------------------------------------------------------------

ORG = text_to_wire("org.")
EXAMPLE_ORG = text_to_wire("example.org.")


@pytest.mark.parametrize(
    ("name", "zone_list", "expected"),
    [
        # CoreDNS's TestNameMatches, parent zone -> child name
        (".", ["."], True),
        ("example.org.", ["."], True),
        ("example.org.", ["example.org."], True),
        ("example.org.", ["org."], True),
        ("org.", ["example.org."], False),
        ("a.b.example.org.", ["example.org."], True),
        ("notexample.org.", ["example.org."], False),  # a suffix of the text, not a parent
        ("example.com.", ["example.org.", "org."], False),
        ("x.example.com.", ["example.org.", "com."], True),
    ],
)
def test_in_zones(name: str, zone_list: list[str], expected: bool) -> None:
    wires = frozenset(text_to_wire(z) for z in zone_list)
    assert in_zones(text_to_wire(name), wires) is expected


def test_longest_zone() -> None:
    # CoreDNS's TestZoneMatches: the most specific zone wins
    zone_map = {ORG: "org.", b"\x00": ".", text_to_wire("bla.example.org."): "bla"}
    assert longest_zone(EXAMPLE_ORG, zone_map) == ORG
    assert longest_zone(text_to_wire("bla.example.org."), zone_map) == text_to_wire(
        "bla.example.org."
    )
    assert longest_zone(text_to_wire("x.example.com."), zone_map) == b"\x00"
    assert longest_zone(text_to_wire("x.example.com."), {ORG}) is None


# --- Corefile zones -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("example.org", "example.org."),  # CoreDNS's TestZoneNormalize
        ("Example.ORG.", "example.org."),
        ("", "."),
        (".", "."),
        ("Straße.DE", "xn--strae-oqa.de."),
        ("{common}", "{common}."),  # CoreDNS takes any octets (log's one-argument NAME)
    ],
)
def test_normalize_zone(text: str, zone: str) -> None:
    assert normalize_zone(text) == zone
    assert zones(text) == [zone]


@pytest.mark.parametrize("text", ["a..b", LONG_LABEL + "x.org", NAME_253 + "x", "☃☃.la"])
def test_normalize_zone_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="^zone is not a valid domain name: "):
        normalize_zone(text)


def _v6(nibbles: str) -> str:
    return ".".join(nibbles) + ".8.b.d.0.1.0.0.2.ip6.arpa."


ZEROS_20 = "0" * 20

# CoreDNS's TestHostNormalizeExact (plugin/normalize_test.go), each zone list in full
COREDNS_CASES = [
    ("10.0.0.0/8", ["10.in-addr.arpa."]),
    ("10.0.0.0/15", ["0.10.in-addr.arpa.", "1.10.in-addr.arpa."]),
    ("10.9.3.0/18", [f"{i}.9.10.in-addr.arpa." for i in range(64)]),
    ("2001:db8::/29", [f"{n}.b.d.0.1.0.0.2.ip6.arpa." for n in "89abcdef"]),
    ("2001:db8::/30", [f"{n}.b.d.0.1.0.0.2.ip6.arpa." for n in "89ab"]),
    ("2001:db8::/115", [_v6(n + ZEROS_20) for n in "01"]),
    ("2001:db8::/114", [_v6(n + ZEROS_20) for n in "0123"]),
    ("2001:db8::/113", [_v6(n + ZEROS_20) for n in "01234567"]),
    ("2001:db8::/112", [_v6(ZEROS_20)]),
    ("2001:db8::/108", [_v6("0" * 19)]),
]


@pytest.mark.parametrize(("cidr", "expected"), COREDNS_CASES)
def test_reverse_zones_match_coredns(cidr: str, expected: list[str]) -> None:
    assert reverse_zones(cidr) == expected
    assert zones(cidr) == expected


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("10.0.0.0/24", ["0.0.10.in-addr.arpa."]),
        ("10.0.0.0/27", [f"{i}.0.0.10.in-addr.arpa." for i in range(32)]),  # not the /24
        ("10.0.0.32/27", [f"{i}.0.0.10.in-addr.arpa." for i in range(32, 64)]),
        ("10.1.2.3/24", ["2.1.10.in-addr.arpa."]),  # host bits are ignored
        ("10.1.2.3/32", ["3.2.1.10.in-addr.arpa."]),
        ("192.168.0.0/16", ["168.192.in-addr.arpa."]),
        ("0.0.0.0/0", ["in-addr.arpa."]),
        ("fd00::/7", ["c.f.ip6.arpa.", "d.f.ip6.arpa."]),
        ("::/0", ["ip6.arpa."]),
    ],
)
def test_reverse_zones(cidr: str, expected: list[str]) -> None:
    assert reverse_zones(cidr) == expected


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.0/", "expected ADDRESS/PREFIX"),
        ("example.org/24", "expected ADDRESS/PREFIX"),
        ("fd00::zz/64", "expected ADDRESS/PREFIX"),
    ],
)
def test_reverse_zones_refuse(cidr: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        reverse_zones(cidr)
    assert str(info.value) == f"invalid CIDR '{cidr}': {reason}"
