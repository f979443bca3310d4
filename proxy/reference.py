"""docs/reference.md, the configuration reference, rendered from the plugin docstrings.

    python -m proxy.reference > docs/reference.md      (``make docs``)

Each directive dnsfw implements gets a section, in chain order (``plugins.ORDER``), made from
its module's docstring: the first line ``NAME - summary`` is the heading, ``::`` blocks become
code blocks and ``:role:`x``` and ````x```` become ```x```. ``tests/test_docs.py`` fails when
the checked-in page is not what this renders, so a docstring change ships with its page.
"""

from __future__ import annotations

import importlib
import re
import sys

import plugins as registry

HEADER = """\
# Configuration reference

Generated from the plugin docstrings by `python -m proxy.reference` (`make docs`); do not edit
by hand: edit the docstring and run it again (`tests/test_docs.py` checks that this page is
current). Directives are listed in the order they handle a query (`dnsfw -plugins`), which is
not the order of lines in a Corefile. The Corefile language itself (keys, snippets, imports,
environment variables) is in `proxy/corefile.py`; `dnsfw -h` lists the commands.
"""

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)  # may span lines


def render() -> str:
    sections = [HEADER]
    for name in registry.ORDER:
        if name in registry.IMPLEMENTED:
            doc = importlib.import_module(registry.IMPLEMENTED[name]).__doc__ or ""
            sections.append(_section(name, doc))
    return "\n".join(sections)


def _section(name: str, doc: str) -> str:
    first, _, body = doc.strip().partition("\n")
    summary = first.split(" - ", 1)[1] if " - " in first else first
    lines = [f"## {name}", "", summary[:1].upper() + summary[1:], ""]
    code: list[str] | None = None  # the lines of an open code block
    for line in body.strip("\n").splitlines():
        if code is not None and line and not line.startswith(" "):
            lines.extend(_fence(code))
            code = None
        if code is not None:
            code.append(line[4:])
        elif line.rstrip().endswith("::"):
            text = line.rstrip()[:-2].rstrip()
            lines.append(text + ":" if text else "")
            code = []
        else:
            lines.append(line)
    if code is not None:
        lines.extend(_fence(code))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"
    # reST roles and literals in the prose, never inside the code blocks (odd parts)
    parts = text.split("\n```\n")
    parts[::2] = [_inline(part) for part in parts[::2]]
    return "\n```\n".join(parts)


def _fence(code: list[str]) -> list[str]:
    """An indented ``::`` block as a fenced one, with a blank line before and after."""
    text = "\n".join(code).strip("\n")
    return ["", "```", text, "```", ""]


def _inline(text: str) -> str:
    return _LITERAL.sub(r"`\1`", _ROLE.sub(r"`\1`", text))


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
