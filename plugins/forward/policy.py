"""The order in which ``forward`` tries its upstreams for one query (``policy``).

* ``random`` (default): a fresh random order per query.
* ``round_robin``: query N starts at upstream N mod count, then the ones after it.
* ``sequential``: always in the written order (the first healthy one takes everything).

Upstreams marked down are skipped by the caller, not here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Policy(Protocol):
    def order(self, items: Sequence[T]) -> Sequence[T]: ...


class Random:
    def order(self, items: Sequence[T]) -> Sequence[T]:
        if len(items) < 2:
            return items
        return random.sample(items, len(items))


class RoundRobin:
    def __init__(self) -> None:
        self.count = 0

    def order(self, items: Sequence[T]) -> Sequence[T]:
        if len(items) < 2:
            return items
        start = self.count % len(items)
        self.count += 1
        return [*items[start:], *items[:start]]


class Sequential:
    def order(self, items: Sequence[T]) -> Sequence[T]:
        return items


def make(name: str) -> Policy:
    """The policy called ``name`` (validated at setup)."""
    return {"random": Random, "round_robin": RoundRobin, "sequential": Sequential}[name]()
