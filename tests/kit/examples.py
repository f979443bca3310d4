"""The example Corefiles in a plugin module's docstring (its ``Example::``/``Examples::``
section), so each plugin's tests run the examples it documents."""

from __future__ import annotations

import textwrap
from types import ModuleType


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
