"""The catalogue of public threat feeds (``data/feeds.json``) behind ``list NAME feed FEED``.

Each feed is a ``url`` list with a known URL, format and default refresh, and says which AWS
managed domain lists of Route 53 DNS Firewall it stands in for (``dnsfw aws import`` maps a
managed list by name through it). ``DNSFW_FEEDS`` names a catalogue of the same form to use
instead of the shipped one (an internal mirror of the feeds; tests point it at a local
server).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from proxy.corefile import CorefileError, Token
from proxy.durations import parse_duration

from .lists import FORMATS

SHIPPED = Path(__file__).with_name("data") / "feeds.json"


@dataclass(frozen=True)
class Feed:
    name: str
    url: str
    format: str
    refresh: float  # seconds
    licence: str
    updated: str  # the publisher's cadence, as it says
    replaces: tuple[str, ...]  # AWS managed list names
    about: str
    homepage: str


class CatalogueError(ValueError):
    """A catalogue file that is not one (its path and what is wrong)."""


def path() -> str:
    return os.environ.get("DNSFW_FEEDS") or str(SHIPPED)


def catalogue() -> dict[str, Feed]:
    """Every feed of the catalogue in force, by name. Raises CatalogueError."""
    where = path()
    try:
        with open(where, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise CatalogueError(f"feed catalogue {where}: {err}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"feed catalogue {where}: not a JSON object")
    return {
        name: _feed(where, name, entry) for name, entry in data.items() if not name.startswith("_")
    }


def _feed(where: str, name: str, entry: object) -> Feed:
    try:
        assert isinstance(entry, dict)
        fmt = entry["format"]
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        return Feed(
            name=name,
            url=str(entry["url"]),
            format=fmt,
            refresh=parse_duration(Token(str(entry.get("refresh", "4h")), where, 0)),
            licence=str(entry.get("licence", "")),
            updated=str(entry.get("updated", "")),
            replaces=tuple(entry.get("replaces", ())),
            about=str(entry.get("about", "")),
            homepage=str(entry.get("homepage", "")),
        )
    except (AssertionError, KeyError, TypeError, ValueError, CorefileError) as err:
        reason = f"missing {err}" if isinstance(err, KeyError) else str(err) or "not an object"
        raise CatalogueError(f"feed catalogue {where}: feed '{name}': {reason}") from None


def replacing(managed_name: str) -> Feed | None:
    """The feed that stands in for the AWS managed list ``managed_name``, if any."""
    return next((f for f in catalogue().values() if managed_name in f.replaces), None)
