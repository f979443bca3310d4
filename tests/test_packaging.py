"""Release artefacts and the build they record.

* the version and build: ``dnsfw --version`` of a git checkout is ``git describe``; of an
  artefact, the commit it was built from (proxy/_build.py, written by setup.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from proxy import __version__
from proxy.build import DESCRIBE

ROOT = Path(__file__).resolve().parent.parent


def sh(*args: object, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300):
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def git_describe() -> str:
    return sh(*DESCRIBE).stdout.strip()


def test_version_of_a_checkout_is_git_describe():
    out = sh(sys.executable, "-m", "proxy.cli", "--version").stdout.splitlines()
    assert out[0] == f"dnsfw-{__version__}"
    assert out[1].startswith("linux/") and out[1].endswith(f", {git_describe()}")
