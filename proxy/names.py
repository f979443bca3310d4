"""Domain names and zones, written once (CoreDNS's ``plugin/normalize.go`` is the model).

Every part of dnsfw maps a name through here, so one text means one domain everywhere: a
server block's key, the zones of ``cache``, ``firewall``, ``prometheus`` and ``log``,
``forward``'s FROM and ``except``, a firewall list entry, the admin API's names and
``dnsfw explain``.

Text and wire
    A *wire name* is length-prefixed labels ending in the root ``b"\\x00"``, lower-cased with
    ``bytes.lower()``, which folds only ASCII: exactly DNS's case-insensitivity.
    International text is mapped with the ``idna`` package (IDNA 2008 with UTS #46
    non-transitional mapping, as browsers do), never with Python's built-in
    ``encodings.idna`` (IDNA 2003, which maps ``straße.de`` to ``strasse.de``, a different
    domain from the ``xn--strae-oqa.de`` a browser asks for). Names are at most 255 octets
    in wire form, labels 1-63 octets.

Zones
    A name is *in* a zone when it is the zone or below it; the root ``b"\\x00"`` holds every
    name. Matching walks the name's suffixes label by label and looks each up in a set or
    dict of wire zones: no allocation beyond the slices, for the query path.

Corefile zones
    A zone written in a Corefile (a key, or a zone argument of a plugin) is a lower-case FQDN
    in A-labels (the Corefile parser also wants keys to be host names); a CIDR is its reverse
    zones with CoreDNS's meaning (``NormalizeExact``, ``plugin/pkg/cidr``): the prefix is
    rounded up to a whole label (8 bits for IPv4, a 4-bit nibble for IPv6) and every value
    of the bits that adds is its own zone, so ``10.0.0.0/24`` is ``0.0.10.in-addr.arpa.``
    and ``10.0.0.0/27`` the 32 zones ``0.0.0.10.in-addr.arpa.`` .. ``31.0.0.10.in-addr.arpa.``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Container

import idna

ROOT = b"\x00"
MAX_TEXT = 253  # 255 octets of wire form minus the first length octet and the root

_BYTE = [bytes((i,)) for i in range(256)]
_CIDR = re.compile(r"[0-9A-Fa-f:.]+/[0-9]{1,3}")


def to_ascii(text: str) -> str:
    """``text`` with its international labels as A-labels (``Straße.de`` ->
    ``xn--strae-oqa.de``); ASCII text is returned unchanged. ValueError if it cannot be mapped.
    """
    if text.isascii():
        return text
    try:
        mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
        return ".".join(
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        )
    except UnicodeError as err:  # idna.IDNAError is one
        raise ValueError(f"invalid internationalized name: {err}") from None


def text_to_wire(name: str) -> bytes:
    """Lower-case wire form of a name's text (one trailing dot optional; ``""`` and ``"."``
    are the root). International names are mapped as in :func:`to_ascii`; there are no
    escapes. ValueError for an empty or over-long label or a name over 255 octets."""
    name = _checked(name)
    return checked_to_wire(name) if name else ROOT


def checked_to_wire(name: str) -> bytes:
    """Wire form of a name text that is already lower-case ASCII with valid labels and no
    trailing dot (not the root): :func:`text_to_wire` without its checks, for bulk builds."""
    return b"".join([_BYTE[len(label)] + label for label in name.encode().split(b".")]) + ROOT


def _checked(name: str) -> str:
    """``name`` lower-case, in A-labels, without its trailing dot (the root is ``""``);
    ValueError unless it is a name of wire form."""
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return name
    name = to_ascii(name).lower()
    if not all(0 < len(label) <= 63 for label in name.split(".")):
        raise ValueError(f"bad label in {name!r}")
    if len(name) > MAX_TEXT:
        raise ValueError(f"name too long: {name!r}")
    return name


def wire_to_text(name: bytes) -> str:
    """Presentation form of a wire name, with a trailing dot ("." for the root)."""
    if name == ROOT:
        return "."
    labels = []
    off = 0
    length = name[0]
    while length:
        labels.append(_label_text(name[off + 1 : off + 1 + length]))
        off += length + 1
        length = name[off]
    return ".".join(labels) + "."


def _label_text(label: bytes) -> str:
    if all(0x21 <= b <= 0x7E and b not in b'.\\"();@$' for b in label):
        return label.decode("ascii")
    out = []
    for b in label:
        if b in b'.\\"();@$':
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def wire_suffixes(name: bytes) -> list[bytes]:
    """All suffixes of a wire name: the name itself first, the root ``b"\\x00"`` last.

    The hot path, once per query: ``name`` must be well formed (as the server's parser
    guarantees); a truncated name raises ``IndexError``.
    """
    out = [name]
    pos = 0
    length = name[0]
    while length:
        pos += length + 1
        out.append(name[pos:])
        length = name[pos]
    return out


def longest_zone(name: bytes, zones: Container[bytes]) -> bytes | None:
    """The longest of ``zones`` (wire) that the wire name ``name`` is in; None if none is."""
    off = 0
    while True:
        suffix = name[off:] if off else name
        if suffix in zones:
            return suffix
        length = name[off]
        if not length:
            return None
        off += length + 1


def in_zones(name: bytes, zones: Container[bytes]) -> bool:
    """Whether the wire name ``name`` is one of ``zones`` (wire) or below one."""
    return longest_zone(name, zones) is not None


def normalize_zone(text: str) -> str:
    """A zone name as a lower-case FQDN in A-labels (``Straße.DE`` -> ``xn--strae-oqa.de.``);
    ``""`` and ``"."`` are the root. ValueError unless it is a name of wire form (any octets:
    CoreDNS takes ``log {common}``'s NAME as it is)."""
    try:
        return _checked(text) + "."
    except ValueError:
        raise ValueError(f"zone is not a valid domain name: {text}") from None


def reverse_zones(cidr: str) -> list[str]:
    """The reverse zones of a CIDR, as CoreDNS's ``NormalizeExact``: the prefix rounded up to
    a whole label (8 bits IPv4, 4 bits IPv6), one zone per value of the added bits, in
    address order. Host bits are ignored. ValueError for anything but ADDRESS/PREFIX."""
    try:
        if not _CIDR.fullmatch(cidr):
            raise ValueError("expected ADDRESS/PREFIX")
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as err:
        raise ValueError(f"invalid CIDR '{cidr}': {err}") from None
    bits = 8 if network.version == 4 else 4
    labels = -(-network.prefixlen // bits)
    prefix = labels * bits
    subnets = [network] if prefix == network.prefixlen else network.subnets(new_prefix=prefix)
    zones = []
    for subnet in subnets:
        # "3.2.1.10.in-addr.arpa": keep the network's labels and the two of the suffix
        parts = subnet.network_address.reverse_pointer.split(".")
        zones.append(".".join(parts[len(parts) - 2 - labels :]) + ".")
    return zones


def zones(text: str) -> list[str]:
    """The zones a Corefile zone (a key's or a plugin argument's) names: a CIDR's reverse
    zones (:func:`reverse_zones`), else the one :func:`normalize_zone`; ValueError if neither.
    """
    return reverse_zones(text) if "/" in text else [normalize_zone(text)]
