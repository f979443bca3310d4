"""Presentation text of wire values, as query logs print them (shared by the line formats
and the wire reader of answers)."""

from __future__ import annotations

import re
from functools import lru_cache

import dns.rdataclass
import dns.rdatatype

from proxy.names import wire_to_text


@lru_cache(maxsize=1024)
def type_text(qtype: int) -> str:
    """Mnemonic of a type, ``TYPEnnn`` when it has none (as miekg/dns and Route 53 print it)."""
    return dns.rdatatype.to_text(qtype)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def class_text(qclass: int) -> str:
    return dns.rdataclass.to_text(qclass)  # type: ignore[arg-type]


_PLAIN_NAME = re.compile(rb'[^\x00-\x20\x7f-\xff\\"();@$]*')


def name_text(name: bytes) -> str:
    """``proxy.names.wire_to_text``, with a fast path for the usual names."""
    return plain_name(name) or wire_to_text(name)


def plain_name(name: bytes) -> str | None:
    """The text of a name none of whose bytes needs an escape (so none needs one in JSON
    either), made by turning the length bytes into dots; None for any other name."""
    if len(name) < 2 or 0x2E in name:  # a raw "." (or a length of 46) needs the slow path
        return None
    text = bytearray(name[1:])
    off = name[0]
    while text[off]:
        length = text[off]
        text[off] = 0x2E
        off += length + 1
    text[off] = 0x2E
    return text.decode("ascii") if _PLAIN_NAME.fullmatch(text) else None
