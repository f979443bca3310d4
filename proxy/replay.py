"""Replays: a UDP query answered again without running the chain, when nothing it depends on
has changed since the chain answered the very same query.

Most of what a DNS proxy sees is the same few thousand questions asked again and answered
from the cache. Running the chain for each (a Request, a coroutine per stage, each stage's
checks) costs several times what the reply itself costs. So when the chain finished a UDP
query at once and the stage that answered it says the answer can be replayed, the listener
asks every stage in front of it, in chain order, for a :class:`Step`, and keeps the steps
under the query's bytes after its id (question with the client's case, flags, EDNS): the
same bytes from any client are then answered by :meth:`Replay.run` -- guards, the answer,
effects -- with no Request and no stage call.

A plugin takes part by having ``replay(req, resp) -> Step | None``, called right after
``serve`` finished that query:

* ``guard()``: True while the stage would still decide as it did (e.g. the firewall: no list
  changed since). Guards run first and must have no side effects.
* ``answer(data, now)``: only for the stage that answered (``resp.replay is plugin``): the
  reply for query ``data`` at monotonic time ``now``, or None when it no longer holds (e.g.
  the cache entry expired or was replaced); it may count the hit, since nothing can fail
  after it.
* ``effect(client, now)``: what the stage does for every query it sees (count a rule match,
  write a query-log line), run once the reply is known.

None from any stage (or a stage without ``replay`` in front of the answering one) means the
query is not replayed; a stage whose configuration can never take part sets ``replay = None``
(so blocks with it do not even try). A replay whose guard or answer fails, or that raises, is
dropped and the query runs the chain, which may make a new one. Replays live per listener,
bounded, and are dropped whenever the listener gets a new configuration. Only queries made of
the header, the question and at most a bare OPT record are replayed: the key is then under 300
bytes, and trailing bytes or EDNS options (cookies, padding) cannot mint keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .request import Request, Response

Guard = Callable[[], bool]
Answer = Callable[[bytes, float], "bytes | None"]
Effect = Callable[[Any, float], None]

MAX_REPLAYS = 16384  # per listener; cleared when full (the working set refills it at once)


@dataclass(frozen=True, slots=True)
class Step:
    """What one stage contributes to a replay (any part may be None)."""

    guard: Guard | None = None
    answer: Answer | None = None
    effect: Effect | None = None


PASS = Step()  # the stage neither decides nor does anything for this query


class Replay:
    """The steps of one query's stages, run without the chain."""

    __slots__ = ("guards", "answer", "effects")

    def __init__(self, guards: tuple[Guard, ...], answer: Answer, effects: tuple[Effect, ...]):
        self.guards = guards
        self.answer = answer
        self.effects = effects

    def run(self, data: bytes, client: Any) -> bytes | None:
        """The reply to ``data`` from ``client``, or None (run the chain instead)."""
        for guard in self.guards:
            if not guard():
                return None
        now = time.monotonic()
        reply = self.answer(data, now)
        if reply is not None:
            for effect in self.effects:
                effect(client, now)
        return reply


def build(replayers: Sequence[Any], req: Request, resp: Response) -> Replay | None:
    """A replay of ``req`` answered with ``resp`` by ``resp.replay``, or None when a stage in
    front of it cannot replay it. ``replayers``: the block's leading plugins whose ``replay``
    is not None, in chain order (a stage without one ends the part of the chain that can)."""
    if resp.replay not in replayers:
        return None
    guards: list[Guard] = []
    effects: list[Effect] = []
    for plugin in replayers:
        step = plugin.replay(req, resp)
        if step is None:
            return None
        if step.guard is not None:
            guards.append(step.guard)
        if step.effect is not None:
            effects.append(step.effect)
        if plugin is resp.replay:
            if step.answer is None:
                return None
            # an outer stage's effect (the query log) comes after the inner ones (its rule count)
            return Replay(tuple(guards), step.answer, tuple(reversed(effects)))
    return None
