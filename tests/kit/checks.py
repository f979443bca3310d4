"""Plugin setup in process, for the setup tests: a Corefile set up as ``dnsfw check`` does,
and the example Corefiles a plugin module documents (so each plugin's tests run them)."""

from __future__ import annotations

import textwrap
from types import ModuleType

import plugins
from proxy.config import AppContext, build
from proxy.corefile import CorefileError, parse


def setup_error(text: str, conf_path: str = "Corefile") -> str | None:
    """The parse or setup error of the Corefile ``text`` (read as ``conf_path``, so relative
    paths resolve next to it), or None."""
    try:
        blocks = parse(text, filename=conf_path, directives=plugins.ORDER)
        build(blocks, AppContext(conf_path=conf_path, checking=True))
    except CorefileError as err:
        return str(err)
    return None


def docstring_examples(module: ModuleType) -> list[str]:
    """Each server block of the indented literal after ``Example::`` or ``Examples::``."""
    doc = module.__doc__ or ""
    examples: list[str] = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() not in ("Example::", "Examples::"):
            continue
        body: list[str] = []
        for follow in lines[i + 1 :]:
            if follow and not follow.startswith(" "):
                break
            body.append(follow)
        text = textwrap.dedent("\n".join(body)).strip("\n")
        examples.extend(block.strip("\n") + "\n}\n" for block in text.split("\n}") if block.strip())
    return examples
