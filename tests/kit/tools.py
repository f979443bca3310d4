"""System tools some tests need (Debian packages that .ci/run installs): a missing one skips
the test on a developer's machine and fails it in CI (``CI=true``), where it must run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip, or in CI fail, a test that cannot run here for ``reason``."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must run this check: see .ci/run)")
    pytest.skip(reason)


def need_tool(name: str, package: str) -> str:
    """The path of the program ``name`` (also looked for in /usr/sbin and /sbin), or
    :func:`unavailable` naming the Debian ``package`` that has it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        unavailable(f"{name} not found (Debian package {package})")
    return path  # type: ignore[return-value]


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
