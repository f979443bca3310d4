"""Domain lists of the firewall plugin: syntax, formats, errors and matching."""

from __future__ import annotations

import pickle
import random
import re

import pytest

from plugins.firewall.lists import (
    FORMATS,
    MAX_ERRORS,
    DomainList,
    EntryError,
    ListError,
    LoadReport,
    normalize_entry,
)
from proxy.names import text_to_wire, wire_suffixes


def build(*entries: str) -> DomainList:
    dl, _ = DomainList.from_lines(entries, file="test.txt")
    return dl


def matches(dl: DomainList, name: str) -> bool:
    wire = text_to_wire(name)
    answer = dl.matches(wire)
    assert dl.match_suffixes(wire_suffixes(wire)) is answer
    return answer


# route53-dns-firewall.md §2.2, row by row (the root "." for "*" is dnsfw's decision)
SPEC_TABLE = [
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", False),
    ("example.com", "a.b.example.com", False),
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "deep.sub.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.ru", "yandex.ru", True),
    ("*.ru", "a.b.c.ru", True),
    ("*.ru", "ru", False),
    ("*", "example.com", True),
    ("*", "com", True),
    ("*", "a.b.c.d.e", True),
    ("*", ".", True),
    ("*.", "example.com", True),
    # neighbours that share text but not labels
    ("example.com", "notexample.com", False),
    ("*.example.com", "wwwexample.com", False),
    ("*.example.com", "www.example.com.evil", False),
    ("ab.com", "ab", False),
    ("ab", "ab.com", False),
    ("*.ab", "ab.com", False),
]


@pytest.mark.parametrize(("entry", "qname", "expected"), SPEC_TABLE)
def test_spec_matching_table(entry: str, qname: str, expected: bool) -> None:
    assert matches(build(entry), qname) is expected


def test_exact_and_wildcard_are_distinct_for_the_same_name() -> None:
    exact = build("example.com")
    wild = build("*.example.com")
    both = build("example.com", "*.example.com")
    assert (matches(exact, "example.com"), matches(exact, "www.example.com")) == (True, False)
    assert (matches(wild, "example.com"), matches(wild, "www.example.com")) == (False, True)
    assert (matches(both, "example.com"), matches(both, "www.example.com")) == (True, True)
    assert len(both) == 2
    assert list(both.entries()) == ["*.example.com", "example.com"]


def test_wildcard_deeper_in_the_list_than_an_exact_parent() -> None:
    dl = build("example.com", "*.ads.example.com")
    assert matches(dl, "x.ads.example.com")
    assert not matches(dl, "ads.example.com")
    assert not matches(dl, "www.example.com")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("*.Example.Com.", "*.example.com"),
        ("  example.com\n", "example.com"),
        ("*", "*"),
        ("*.", "*"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("*._tcp.Example.com", "*._tcp.example.com"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.DE.", "xn--bcher-kva.de"),
        ("*.münchen.de", "*.xn--mnchen-3ya.de"),
        ("bücher\u3002de", "xn--bcher-kva.de"),  # ideographic full stop, mapped by UTS #46
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: not "fass.de" as IDNA 2003 would say
        ("_sip._tcp.bücher.de", "_sip._tcp.xn--bcher-kva.de"),
        ("a-.-b.c", "a-.-b.c"),
    ],
)
def test_normalize_entry(text: str, canonical: str) -> None:
    assert normalize_entry(text) == canonical


def test_case_trailing_dot_underscore_and_idn_match() -> None:
    dl = build("Example.COM.", "*._DOMAINKEY.example.org", "bücher.de", "*.münchen.de")
    assert matches(dl, "EXAMPLE.com.")  # text_to_wire lower-cases, as the server does
    assert matches(dl, "sel1._domainkey.example.org")
    assert matches(dl, "xn--bcher-kva.de")
    assert matches(dl, "www.xn--mnchen-3ya.de")
    assert not matches(dl, "xn--mnchen-3ya.de")


LONG_LABEL = "a" * 63
NAME_253 = ".".join([LONG_LABEL] * 3 + ["b" * 61])  # 255 octets in wire form: the limit
NAME_251 = ".".join([LONG_LABEL] * 3 + ["b" * 59])  # "*." + this is 255 octets


def test_length_limits_accept_the_boundary() -> None:
    assert len(NAME_253) == 253
    assert normalize_entry(NAME_253) == NAME_253
    assert normalize_entry(NAME_253 + ".") == NAME_253
    assert normalize_entry("*." + NAME_251) == "*." + NAME_251
    assert len(text_to_wire(NAME_253)) == 255
    assert matches(build(NAME_253), NAME_253)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a..b", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("*..example.com", "empty label"),
        (".", "empty name"),
        ("*..", "empty name"),
        ("", "empty entry"),
        ("a" * 64 + ".com", "label longer than 63 octets (64)"),
        (NAME_253 + "b", "name longer than 255 octets in wire form (256)"),
        ("*." + NAME_251 + "b", "name longer than 255 octets in wire form (256)"),
        ("f1w-*.com", "'*' is allowed only as the whole leftmost label"),
        ("www.*.com", "'*' is allowed only as the whole leftmost label"),
        ("*example.com", "'*' is allowed only as the whole leftmost label"),
        ("**.example.com", "'*' is allowed only as the whole leftmost label"),
        ("*.*.example.com", "'*' is allowed only as the whole leftmost label"),
        ("*.bü*.de", "'*' is allowed only as the whole leftmost label"),
        ("exa mple.com", "contains whitespace"),
        ("bü cher.de", "contains whitespace"),
        ("exa$mple.com", "illegal character '$'"),
        ("example.com/path", "illegal character '/'"),
        ("http://example.com", "illegal character ':'"),
        ("ex!.com", "illegal character '!'"),
        ("a\x00b.com", "illegal character '\\x00'"),
        ("☃☃.\U0001f4a9.la", "invalid internationalized name"),
    ],
)
def test_invalid_entries(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        normalize_entry(text)


def test_list_error_reports_every_bad_line_with_file_and_line() -> None:
    lines = ["good.example", "a..b", "# comment", "", "www.*.com", "ok.example", "bad name"]
    with pytest.raises(ListError) as info:
        DomainList.from_lines(lines, file="internal.txt", first_line=10)
    err = info.value
    assert err.total == 3
    assert err.errors == [
        EntryError("internal.txt", 11, "a..b", "empty label"),
        EntryError(
            "internal.txt",
            14,
            "www.*.com",
            "'*' is allowed only as the whole leftmost label ('*.name')",
        ),
        EntryError("internal.txt", 16, "bad name", "contains whitespace"),
    ]
    assert str(err).splitlines()[0] == (
        "internal.txt:11 - invalid domain list entry 'a..b': empty label"
    )
    assert len(str(err).splitlines()) == 3


def test_list_error_is_capped_but_counts_all() -> None:
    lines = [f"bad..{i}" for i in range(MAX_ERRORS + 50)]
    with pytest.raises(ListError) as info:
        DomainList.from_lines(lines, file="big.txt")
    assert len(info.value.errors) == MAX_ERRORS
    assert info.value.total == MAX_ERRORS + 50
    assert info.value.errors[-1].line == MAX_ERRORS
    assert str(info.value).endswith("... and 50 more invalid entries")


def test_route53_comments_blank_lines_and_duplicates() -> None:
    dl, report = DomainList.from_lines(
        [
            "# a list",
            "",
            "   ",
            "example.com   # trailing comment",
            "EXAMPLE.com.",
            "*.example.net#no space",
            "\texample.org\r\n",
        ]
    )
    assert list(dl.entries()) == ["*.example.net", "example.com", "example.org"]
    assert report == LoadReport(entries=3, skipped=0, skipped_examples=())


def test_unknown_format() -> None:
    assert FORMATS == ("route53", "hosts", "adblock")
    with pytest.raises(ValueError, match="unknown domain list format 'csv'"):
        DomainList.from_lines([], fmt="csv")


HOSTS = """\
# a hosts file
127.0.0.1 localhost
127.0.0.1 localhost.localdomain local
255.255.255.255 broadcasthost
::1 localhost ip6-localhost ip6-loopback
fe80::1%lo0 localhost
0.0.0.0 0.0.0.0
0.0.0.0 ads.example.com tracker.Example.net.   # two names
127.0.0.1 pixel.example.org
:: ipv6.example
0.0.0.0 ip6-tracker.example
""".splitlines()


def test_hosts_format() -> None:
    dl, report = DomainList.from_lines(HOSTS, fmt="hosts", file="hosts")
    assert list(dl.entries()) == [
        "ads.example.com",
        "ip6-tracker.example",
        "ipv6.example",
        "pixel.example.org",
        "tracker.example.net",
    ]
    assert matches(dl, "ads.example.com")
    assert not matches(dl, "www.ads.example.com")  # hosts names are exact entries
    assert report.entries == 5
    assert report.skipped == 9
    assert report.skipped_examples == (
        "hosts:2 'localhost': local host name",
        "hosts:3 'localhost.localdomain': local host name",
        "hosts:3 'local': local host name",
        "hosts:4 'broadcasthost': local host name",
        "hosts:5 'localhost': local host name",
    )


def test_hosts_format_errors() -> None:
    lines = ["0.0.0.0 good.example", "ads.example", "0.0.0.0", "0.0.0.0 *.x.example a..b"]
    with pytest.raises(ListError) as info:
        DomainList.from_lines(lines, fmt="hosts", file="h")
    assert [(e.line, e.text, e.reason) for e in info.value.errors] == [
        (2, "ads.example", "expected 'ADDRESS NAME...' with an IP address"),
        (3, "0.0.0.0", "no host name after the address"),
        (4, "*.x.example", "wildcards are not allowed in the hosts format"),
        (4, "a..b", "empty label"),
    ]


ADBLOCK = """\
[Adblock Plus 2.0]
! Title: test list
! comment
# another comment style
||ads.example.com^
||Tracker.Example.NET^
||bücher.de^
@@||allowed.example.com^
/banner[0-9]+/
example.com##.ad-banner
##.sponsored
||important.example^$important
||example.org/path^
||*.glob.example^
plain.example
||ads.example.com^
""".splitlines()


def test_adblock_format() -> None:
    dl, report = DomainList.from_lines(ADBLOCK, fmt="adblock", file="easy.txt")
    assert list(dl.entries()) == [
        "*.ads.example.com",
        "*.tracker.example.net",
        "*.xn--bcher-kva.de",
        "ads.example.com",
        "tracker.example.net",
        "xn--bcher-kva.de",
    ]
    assert matches(dl, "ads.example.com")
    assert matches(dl, "a.b.ads.example.com")
    assert not matches(dl, "allowed.example.com")
    assert not matches(dl, "important.example")
    assert report.entries == 6
    assert report.skipped == 8  # comments and the header are not rules, so not counted
    assert report.skipped_examples == (
        "easy.txt:8 '@@||allowed.example.com^': exception rule",
        "easy.txt:9 '/banner[0-9]+/': regular expression rule",
        "easy.txt:10 'example.com##.ad-banner': cosmetic rule",
        "easy.txt:11 '##.sponsored': cosmetic rule",
        "easy.txt:12 '||important.example^$important': rule with options",
    )


def test_adblock_bad_domain_is_an_error() -> None:
    with pytest.raises(ListError) as info:
        DomainList.from_lines(["||ok.example^", "||a..b^"], fmt="adblock", file="a.txt")
    assert str(info.value) == "a.txt:2 - invalid domain list entry '||a..b^': empty label"


def test_entries_round_trip_len_and_contains() -> None:
    texts = ["*", "b.example", "*.b.example", "a.example", "*.z.example", "_x.example"]
    dl = DomainList.from_entries(texts)
    assert list(dl.entries()) == sorted(texts)
    assert len(dl) == len(texts)
    again = DomainList.from_entries(dl.entries())
    assert list(again.entries()) == sorted(texts)
    assert "b.example" in dl and "*.b.example" in dl
    assert "B.Example." in dl  # any spelling of a member
    assert "*.a.example" not in dl and "z.example" not in dl
    assert "*" in dl and "*" not in DomainList.from_entries(["a.example"])
    assert "a..b" not in dl and 42 not in dl


def test_from_entries_errors_and_duplicates() -> None:
    assert len(DomainList.from_entries(["a.example", "A.example.", "a.example"])) == 1
    with pytest.raises(ListError) as info:
        DomainList.from_entries(["ok.example", "#not-a-comment", "x y"])
    assert [str(e) for e in info.value.errors] == [
        "<entries>:2 - invalid domain list entry '#not-a-comment': illegal character '#'",
        "<entries>:3 - invalid domain list entry 'x y': contains whitespace",
    ]


def test_empty_list() -> None:
    dl = DomainList.from_entries([])
    assert len(dl) == 0
    assert list(dl.entries()) == []
    assert not matches(dl, "example.com")
    assert not matches(dl, ".")


def test_pickle_rebuilds_for_another_hash_seed() -> None:
    dl = DomainList.from_entries(["a.example", "*.b.example"])
    copy = pickle.loads(pickle.dumps(dl))
    assert list(copy.entries()) == list(dl.entries())
    assert matches(copy, "x.b.example") and not matches(copy, "b.example")


def _random_name(rng: random.Random, labels: int) -> str:
    alphabet = "abcdefghij0123-_"
    return ".".join(
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(labels)
    )


def _reference(exact: set[str], wild: set[str], name: str) -> bool:
    labels = name.split(".")
    return name in exact or any(".".join(labels[i:]) in wild for i in range(1, len(labels)))


def test_200k_generated_list_has_no_false_answers() -> None:
    rng = random.Random(2024)
    tlds = ["com", "net", "org", "de", "io"]
    exact: set[str] = set()
    wild: set[str] = set()
    while len(exact) + len(wild) < 200_000:
        name = _random_name(rng, rng.randint(1, 3)) + "." + rng.choice(tlds)
        r = rng.random()
        if r < 0.5:
            exact.add(name)
        elif r < 0.9:
            wild.add(name)
        else:
            exact.add(name)
            wild.add(name)
    texts = sorted(exact) + ["*." + n for n in wild]
    rng.shuffle(texts)
    dl, report = DomainList.from_lines(texts, file="gen.txt")
    assert len(dl) == report.entries == len(exact) + len(wild)
    assert list(dl.entries()) == sorted(texts)

    queries = rng.sample(sorted(exact), 3000) + [
        _random_name(rng, rng.randint(1, 2)) + "." + n for n in rng.sample(sorted(wild), 3000)
    ]
    non_members = [_random_name(rng, rng.randint(2, 5)) for _ in range(5000)]
    non_members = [n for n in non_members if not _reference(exact, wild, n)]
    assert len(non_members) > 4000
    # apexes of wildcard-only names, and exact names plus a label, must not match
    queries += [n for n in rng.sample(sorted(wild - exact), 1000)]
    queries += ["x." + n for n in rng.sample(sorted(exact - wild), 1000)]
    for name in queries + non_members:
        assert matches(dl, name) is _reference(exact, wild, name), name
    assert not any(matches(dl, n) for n in non_members)
