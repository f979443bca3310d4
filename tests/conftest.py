"""Shared fixtures: a test upstream, and dnsfw itself started as a subprocess from a Corefile.
The helpers behind them, and every other shared one, are in tests/kit/."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.dnsfw import Dnsfw
from tests.kit.upstream import Upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def dnsfw(tmp_path: Path):
    """Factory: ``dnsfw(corefile_text)`` starts dnsfw (``$PORT`` in the text is its port)."""
    started: list[Dnsfw] = []

    def start(corefile: str, **kw) -> Dnsfw:
        wait = kw.pop("wait", True)
        d = Dnsfw(corefile, tmp_path, **kw)
        started.append(d)
        return d.start(wait=wait)

    yield start
    for d in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.stop()
