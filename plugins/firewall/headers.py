"""Request headers for ``url`` lists, from a file (``headers_file PATH``).

One ``Name: value`` per line (an Authorization header for a commercial or internal feed),
``#`` comment lines and blank lines ignored. The file is read again at each download, so a
rotated token is used without a reload. Values are secrets: no message, log line or error
ever includes one (an error names the file and the line number only).
"""

from __future__ import annotations

import re

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
# set by dnsfw itself: a file may not change what the conditional GET relies on
RESERVED = frozenset({"host", "if-none-match", "if-modified-since", "content-length"})


def read(path: str) -> list[tuple[str, str]]:
    """The headers of the file at ``path``. Raises OSError (unreadable) or ValueError (the
    path and line number of a bad line, never its text)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = stripped.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not TOKEN.match(name):
            raise ValueError(f"{path}:{number}: not a 'Name: value' header line")
        if name.lower() in RESERVED:
            raise ValueError(f"{path}:{number}: header {name} is set by dnsfw")
        if not value.isprintable():
            raise ValueError(f"{path}:{number}: header {name} has a control character")
        found.append((name, value))
    if not found:
        raise ValueError(f"{path}: no header in the file")
    return found
