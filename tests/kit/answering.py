"""Helpers for the plugins that answer from data (hosts, file, auto, template): the setup
error of a Corefile as ``dnsfw check`` reports it, the Corefile examples of a plugin's
docstring, and ``dig`` run against a dnsfw."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from types import ModuleType

import plugins
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse
from tests.kit.tools import need_tool


def setup_error(text: str, where: Path | None = None) -> str | None:
    """The error ``dnsfw check`` reports for Corefile ``text`` (read as ``where``/Corefile, so
    relative paths resolve there), or None when it sets up."""
    conf = str(where / "Corefile") if where else "Corefile"
    try:
        blocks = parse(text, filename=conf, directives=plugins.ORDER)
        build(blocks, AppContext(conf_path=conf, checking=True))
    except CorefileError as err:
        return str(err)
    return None


def docstring_examples(module: ModuleType) -> list[str]:
    """The Corefiles after ``Example::`` / ``Examples::`` in a plugin module's docstring, one
    per block that closes with a ``}`` at its start of line."""
    doc = module.__doc__ or ""
    marker = "Examples::" if "Examples::" in doc else "Example::"
    body = textwrap.dedent(doc[doc.index(marker) + len(marker) :].split("\n\n\n")[0])
    examples, lines = [], []
    for line in body.strip("\n").splitlines():
        if not lines and not line.strip():
            continue
        lines.append(line)
        if line == "}":
            examples.append("\n".join(lines) + "\n")
            lines = []
    return examples


def dig(port: int, *args: str) -> str:
    """``dig @127.0.0.1 -p PORT ARGS`` (one try, 3 s), its output."""
    path = need_tool("dig", "bind9-dnsutils")
    done = subprocess.run(
        [path, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout
