"""Go-style durations in Corefiles (``500ms``, ``5s``, ``1m30s``, ``1h``), as CoreDNS writes them."""

from __future__ import annotations

import re

from .corefile import CorefileError, Token

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(token: Token, *, allow_bare_seconds: bool = False) -> float:
    """Seconds in a Go duration; a bare integer means seconds only where CoreDNS allows it."""
    text = token.text
    if allow_bare_seconds and text.isdigit():
        return float(text)
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise CorefileError(token.file, token.line, f"invalid duration '{text}'")
    return total
