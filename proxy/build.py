"""Which build of dnsfw this is: the git commit an artefact was made from.

An artefact (wheel, sdist, bundle, .deb, image) carries ``proxy/_build.py``, written by
setup.py when it is built (``BUILD = "<git describe>"``); a git checkout (an editable
install) has none, so the build is ``git describe`` of the checkout, asked once; anything
else is "unknown". ``dnsfw --version``, ``/v1/stats`` and ``coredns_build_info{revision}``
show it.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

# the Python that runs dnsfw, as CoreDNS names its Go (coredns_build_info{goversion})
RUNTIME = f"{platform.python_implementation().lower()}{platform.python_version()}"
# the arguments setup.py uses too: a tag if there is one, else the abbreviated commit
DESCRIBE = ("git", "describe", "--tags", "--always", "--dirty")


def describe(tree: Path) -> str | None:
    """``git describe`` of the checkout at ``tree``, or None (not a checkout, no git)."""
    if not (tree / ".git").exists():
        return None
    try:
        done = subprocess.run(
            [*DESCRIBE], cwd=tree, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


@functools.cache
def build() -> str:
    try:
        from ._build import BUILD  # type: ignore[import-not-found]  # written into artefacts
    except ImportError:
        return describe(Path(__file__).resolve().parent.parent) or "unknown"
    return BUILD
