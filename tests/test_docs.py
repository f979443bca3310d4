"""Every Corefile shown in the documentation is one that ``dnsfw check`` accepts.

Extraction rule:

* Files: ``README.md`` and ``docs/*.md``.
* A block starts at a line that is exactly ```` ```corefile ```` (the fence at the start of the
  line, trailing spaces ignored) and ends at the next line that is exactly ```` ``` ````. Fences
  with another or no info string (```` ```sh ````, ```` ```ini ````, ```` ``` ````) are not
  Corefiles and are not checked: tag a block ``corefile`` exactly when it is a whole Corefile.
* Each block is checked as ``/etc/dnsfw/Corefile`` would be on a host installed as
  docs/ec2.md says: it is written to ``Corefile`` in an empty directory D that stands for
  ``/etc/dnsfw``, which holds ``lists/doh-dot-endpoints.txt`` (copied from
  plugins/firewall/data/, as the install step does). In the block's text, the prefixes
  ``/etc/dnsfw/``, ``/var/lib/dnsfw/`` and ``/var/log/dnsfw/`` are replaced with ``D/``,
  ``D/lib/`` and ``D/log/`` (both created empty). Relative paths resolve against D, as they do
  against the Corefile's directory. Any other file a block names must exist on the machine that
  runs the tests (e.g. ``/etc/resolv.conf``); a block needing another list must use an inline
  ``domains`` list or a file added here.
* ``dnsfw check -conf D/Corefile`` must exit 0 and print ``OK``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import plugins
from proxy import reference
from tests.kit.dnsfw import ROOT, run_cli

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHIPPED_LISTS = {
    "lists/doh-dot-endpoints.txt": ROOT / "plugins/firewall/data/doh-dot-endpoints.txt"
}
HOST_PREFIXES = {"/etc/dnsfw/": "", "/var/lib/dnsfw/": "lib/", "/var/log/dnsfw/": "log/"}


def corefile_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number of the opening fence, text) of each ```corefile block in ``path``."""
    blocks = []
    start: int | None = None
    lines: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.rstrip()
        if start is None:
            if stripped == "```corefile":
                start, lines = number, []
        elif stripped == "```":
            blocks.append((start, "\n".join(lines) + "\n"))
            start = None
        else:
            lines.append(line)
    if start is not None:
        raise ValueError(f"{path}:{start}: ```corefile block is never closed")
    return blocks


BLOCKS = [
    (doc, line, text) for doc in DOCUMENTS if doc.exists() for line, text in corefile_blocks(doc)
]


def check(text: str, where: Path) -> tuple[int, str]:
    """``dnsfw check`` of ``text`` laid out as /etc/dnsfw/Corefile in ``where``."""
    for relative, source in SHIPPED_LISTS.items():
        (where / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, where / relative)
    for replacement in HOST_PREFIXES.values():
        (where / replacement).mkdir(parents=True, exist_ok=True)
    for prefix, replacement in HOST_PREFIXES.items():
        text = text.replace(prefix, f"{where}/{replacement}")
    conf = where / "Corefile"
    conf.write_text(text)
    done = run_cli("check", "-conf", str(conf))
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("doc", "line", "text"),
    BLOCKS,
    ids=[f"{doc.relative_to(ROOT)}:{line}" for doc, line, _ in BLOCKS],
)
def test_documented_corefile_is_accepted(doc: Path, line: int, text: str, tmp_path: Path) -> None:
    status, output = check(text, tmp_path)
    assert status == 0, f"{doc.relative_to(ROOT)}:{line}: the Corefile block fails:\n{output}"
    assert re.search(r"Corefile: OK$", output, re.M), output


def test_ec2_guide_shows_both_topologies() -> None:
    # the extraction must find the per-instance and the central Corefile
    ec2 = [text for doc, _, text in BLOCKS if doc.name == "ec2.md"]
    assert len(ec2) >= 2
    assert any("bind 127.0.0.1" in text for text in ec2)
    assert any("clients " in text and "bind" not in text for text in ec2)
    assert all("forward . 169.254.169.253" in text and "identity ec2" in text for text in ec2)


def test_a_broken_block_is_reported(tmp_path: Path) -> None:
    # the check can fail: a list file that the layout does not provide
    text = (
        ".:53 {\n    firewall {\n        list x file lists/missing.txt\n"
        "        group g 1 {\n            rule r 1 BLOCK x\n        }\n    }\n}\n"
    )
    status, output = check(text, tmp_path)
    assert status == 1
    assert "Corefile:" in output and "missing.txt" in output


def test_extraction_rule(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```sh\nnot a corefile\n```\n"
        "```corefile   \n.:53 {\n    whoami\n}\n```\n"
        "  ```corefile\nindented: not a block\n```\n"
    )
    assert corefile_blocks(doc) == [(4, ".:53 {\n    whoami\n}\n")]
    doc.write_text("```corefile\n.:53 {\n")
    with pytest.raises(ValueError, match="never closed"):
        corefile_blocks(doc)


def test_the_reference_page_is_current() -> None:
    # docs/reference.md is rendered from the plugin docstrings: `make docs` after editing one
    page = (ROOT / "docs/reference.md").read_text()
    assert page == reference.render(), "docs/reference.md is stale: run `make docs`"
    implemented = [line[3:] for line in page.splitlines() if line.startswith("## ")]
    assert sorted(implemented) == sorted(plugins.IMPLEMENTED)


def test_the_reference_renders_code_blocks_and_literals() -> None:
    section = reference._section(
        "x", "x - does a thing.\n\nSyntax::\n\n    x ``ARG``\n\nThe ``ARG`` (:mod:`y`).\n"
    )
    assert section == (
        "## x\n\nDoes a thing.\n\nSyntax:\n\n```\nx ``ARG``\n```\n\nThe `ARG` (`y`).\n"
    )
