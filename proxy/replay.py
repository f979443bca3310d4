"""Replays: a UDP query answered again without running the chain, from what the chain recorded
when it answered the very same query, until anything that answer depended on changes.

Most of what a DNS proxy sees is the same few thousand questions asked again and answered
from the cache. Running the chain for each (a Request, a coroutine per stage, each stage's
checks) costs several times what the reply itself costs. So each stage writes its per-query
behaviour once, as small objects that ``serve`` itself uses, and the request records them as
the chain runs them (:meth:`proxy.request.Request.record` and :meth:`~proxy.request.Request.run`):

* a :class:`Guard` -- True while the stage would still decide as it did (the firewall: no list
  swapped since). Recorded, not run: ``serve`` has just decided.
* an :class:`Effect` -- what the stage does for every query it sees, called with the client's
  address and the query's monotonic receive time (count a rule match, write a query-log line,
  count the query in the metrics). ``serve`` runs it through ``req.run(effect)``, which also
  records it, so the replay does exactly what the chain did, in the same order.
* a :class:`Gate` -- whether a query from this client may go on now (a rate limit). ``serve``
  asks it through ``req.admit(gate)``, which also records it; a replay asks it again for every
  query before the answer. A closed gate does not drop the replay: that one query runs the
  chain, where the stage answers it as it does for any held-back query (REFUSED, nothing...)
  and the stages around it count it as they count any chain answer.
* an :class:`Answer` -- the reply for the query bytes at a monotonic time, or None once it no
  longer holds (the cache: the entry expired, was flushed or replaced). The stage that answered
  puts it on its Response (``Response(..., replay=answer)``) after using it for the reply itself.
  :class:`FixedAnswer` is the one for a reply made from the stage's own data.
  A stage that edits every reply passing it (``loadbalance`` shuffles its records,
  ``rewrite`` maps names back) wraps the Answer it got in a :class:`Reshaped` with its edit
  (:func:`proxy.message.reshaped`), so the replay edits it again, innermost stage first.

When the chain finished a UDP query at once with an Answer, the listener keeps
:class:`Replay` (guards, gates, answer, effects) under the query's bytes after its id; the same
bytes from any client are then answered by :meth:`Replay.run` with no Request and no stage call.

Whether a stage can take part is declared at setup, not discovered per query: every plugin
has ``replays`` (:data:`TAKES_PART`, or :func:`not_replayed` with the reason). A stage that
takes part and has nothing to do for an answered query (``errors``) records nothing and costs
nothing. A stage that cannot take part (a text-format ``log`` renders the query id and duration
into each line) makes the core mark every query that passes through it as not replayable (see
:func:`proxy.pipeline.build_chain`), and the server logs that once per block at start
(``replays_off``), so the fast path is never lost silently. A stage may also refuse one query
with ``req.no_replay()`` (the firewall failing open counts each query).

A replay whose guard or answer fails, or that raises, is dropped and the query runs the chain,
which may record a new one. Replays live per listener, bounded, and are dropped whenever the
listener gets a new configuration. Only queries made of the header, the question and at most a
bare OPT record are replayed: the key is then under 300 bytes, and trailing bytes or EDNS
options (cookies, padding) cannot mint keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_REPLAYS = 16384  # per listener; cleared when full (the working set refills it at once)
HELD = b""  # Replay.run: a gate held this query back; the chain answers it, the replay stays


class Guard:
    """Recorded by a stage whose decision can go stale: ``guard()`` is True while it holds.
    It must have no side effects (guards run before the answer is known)."""

    __slots__ = ()

    def __call__(self) -> bool:
        raise NotImplementedError


class Effect:
    """Per-query behaviour of a stage: ``effect(client, start)`` for a query from ``client``
    (address, port) received at monotonic time ``start``. ``serve`` runs it with
    ``req.run(effect)``; a replay runs the recorded one again."""

    __slots__ = ()

    def __call__(self, client: Any, start: float) -> None:
        raise NotImplementedError


class Gate:
    """Recorded by a stage that lets a query go on or not by its client and the time (a rate
    limit): ``gate(client, now)`` is True when a query from ``client`` (address, port) at
    monotonic time ``now`` may go on, and it counts that query against the client. Asked
    through ``req.admit(gate)`` in ``serve``, and again by every replay of the query."""

    __slots__ = ()

    def __call__(self, client: Any, now: float) -> bool:
        raise NotImplementedError


class Answer:
    """The reply a stage made, made again: ``answer(data, now)`` for the query bytes ``data``
    at monotonic time ``now``, or None when it no longer holds. It may count what the stage
    counts when it answers (a cache hit): nothing can fail after it."""

    __slots__ = ()

    def __call__(self, data: bytes, now: float) -> bytes | None:
        raise NotImplementedError


class FixedAnswer(Answer):
    """A reply a stage made from its own data (its configuration, a hosts file, a zone, a
    template): the same bytes for the same query, with the asking query's id, while ``guard``
    holds (the data it came from is still the stage's), else None. No guard: data that never
    changes while the configuration serves (``any``, ``local``, ``chaos``, ``template``)."""

    __slots__ = ("guard", "rest")

    def __init__(self, reply: bytes, guard: Guard | None = None) -> None:
        self.guard = guard
        self.rest = reply[2:]

    def __call__(self, data: bytes, now: float) -> bytes | None:
        guard = self.guard
        return data[:2] + self.rest if guard is None or guard() else None


class Reshaped(Answer):
    """The Answer of a stage that edits every reply passing it (``rewrite``, ``header``,
    ``minimal``, ``bufsize``, ``loadbalance``): ``reshape(reply)`` -- the very function the
    stage applied to the reply it got -- applied to every replay of the inner ``answer``. It
    wraps the answer the stage saw, not the final reply, so a stage in front that combines two
    answers (:class:`proxy.message.Combined`) gets each as the chain gave it. ``reshape``
    returns new bytes, never changing those it is given (a cache entry may own them)."""

    __slots__ = ("answer", "reshape")

    def __init__(self, answer: Answer, reshape: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.reshape = reshape

    def __call__(self, data: bytes, now: float) -> bytes | None:
        reply = self.answer(data, now)
        return None if reply is None else self.reshape(reply)


@dataclass(frozen=True, slots=True)
class Replays:
    """A plugin's declared part in replays (its ``replays`` attribute)."""

    takes_part: bool
    reason: str = ""  # why not, when it does not: logged at start and by `dnsfw check`


TAKES_PART = Replays(True)


def not_replayed(reason: str) -> Replays:
    """A stage that cannot take part: queries it sees are not replayed, for ``reason``."""
    return Replays(False, reason)


class Replay:
    """What the chain recorded for one query, run without the chain."""

    __slots__ = ("guards", "gates", "answer", "effects")

    def __init__(
        self,
        guards: tuple[Guard, ...],
        gates: tuple[Gate, ...],
        answer: Answer,
        effects: tuple[Effect, ...],
    ) -> None:
        self.guards = guards
        self.gates = gates
        self.answer = answer
        self.effects = effects

    def run(self, data: bytes, client: Any) -> bytes | None:
        """The reply to ``data`` from ``client``; None: it no longer holds (drop it and run the
        chain); :data:`HELD`: a gate held this client back (run the chain, keep the replay)."""
        for guard in self.guards:
            if not guard():
                return None
        now = time.monotonic()
        for gate in self.gates:
            if not gate(client, now):
                return HELD
        reply = self.answer(data, now)
        if reply is not None:
            for effect in self.effects:
                effect(client, now)
        return reply


def build(trail: Sequence[Guard | Gate | Effect], answer: Answer) -> Replay:
    """A replay from a query's recorded ``trail`` (in the order the chain ran it)."""
    guards = tuple(step for step in trail if isinstance(step, Guard))
    gates = tuple(step for step in trail if isinstance(step, Gate))
    effects = tuple(step for step in trail if not isinstance(step, (Guard, Gate)))
    return Replay(guards, gates, answer, effects)
