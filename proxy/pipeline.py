"""The plugin chain and the driver that runs it without a Task per query.

A chain is built once per server block by folding its plugins from last to first (as CoreDNS
does): each link is ``lambda req: plugin.serve(req, next_link)``. The server calls the outer
link and *drives* the coroutine by hand: most queries (cache hits, blocked names, local
answers) never truly suspend, so they finish inside the first ``send(None)`` with no Task, no
extra loop iteration. Only a query that waits on I/O gets a :class:`Continuation`, which does
what ``asyncio.Task.__step`` does (resume the coroutine when the awaited future is done) at a
fraction of the cost.

Consequences for plugin code: ``serve`` must not rely on ``asyncio.current_task()``, so
neither ``asyncio.timeout()`` nor (from Python 3.12 on) ``asyncio.wait_for()`` work there; use
:func:`deadline`. Awaiting a real Task (``await asyncio.ensure_future(...)``) works.

:class:`Plugin` is the contract every stage meets (see ``plugins/__init__.py`` for the whole
of it): ``name``, ``replays`` (its declared part in :mod:`proxy.replay`), ``serve``, and the
optional lifecycle hooks, which default to doing nothing when a plugin subclasses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from .replay import Replays
from .request import Request, Response
from .wire import SERVFAIL

T = TypeVar("T")

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class Sink(Protocol):
    """Where a finished query goes (a listener): ``finish(req, resp, exc)``."""

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None: ...


@runtime_checkable
class Plugin(Protocol):
    """A stage of the chain. Subclass it to inherit the default hooks."""

    name: str
    # declared at setup: whether the stage takes part in replays (proxy.replay.TAKES_PART) or
    # not (proxy.replay.not_replayed(reason)); set per instance when options decide it
    replays: Replays
    # query classes besides IN the stage answers (chaos: CH); the server refuses a query of
    # any other class before the chain, unless a stage of its block names that class here
    qclasses: frozenset[int] = frozenset()

    async def serve(self, req: Request, next: Handler) -> Response: ...

    async def start(self) -> None:
        """Called before the configuration serves (lists load, sockets open); may raise."""

    async def stop(self) -> None:
        """Called when the configuration is retired or the server stops. A stage lets go of
        its large state here (a firewall's lists): a retired configuration is full of
        reference cycles that only a later full garbage collection frees."""

    def ready(self) -> bool:
        """False while the stage cannot serve as configured yet (``/ready`` says 503)."""
        return True

    def waiting(self) -> str:
        """While not ready: why, when there is more to say than "not yet" (a failed download
        and its next try), for ``/ready``, the log and systemd's status; else ''."""
        return ""


def build_chain(plugins: Sequence[Plugin]) -> Handler:
    """Fold ``plugins`` (outermost first) into one handler; past the last one is SERVFAIL.

    A stage that takes no part in replays marks the queries that reach it (and so every answer
    it or a stage behind it makes for them) as not replayable."""
    handler: Handler = _no_next(plugins[-1].name if plugins else "")
    for plugin in reversed(plugins):
        if plugin.replays.takes_part:
            handler = _link(plugin.serve, handler)
        else:
            handler = _link_unreplayed(plugin.serve, handler)
    return handler


def _link(
    serve: Callable[[Request, Handler], Coroutine[Any, Any, Response]], nxt: Handler
) -> Handler:
    return lambda req: serve(req, nxt)


def _link_unreplayed(
    serve: Callable[[Request, Handler], Coroutine[Any, Any, Response]], nxt: Handler
) -> Handler:
    def link(req: Request) -> Coroutine[Any, Any, Response]:
        req.trail = None
        return serve(req, nxt)

    return link


def _no_next(name: str) -> Handler:
    message = f"plugin/{name}: no next plugin found" if name else "no plugins in this server block"

    async def no_next(req: Request) -> Response:
        return req.reply(SERVFAIL, source="error", error=message)

    return no_next


def start(coro: Coroutine[Any, Any, Response]) -> Response | Any:
    """Run ``coro`` until it finishes or first suspends.

    Returns the Response when it finished; otherwise the awaited object, to be handed to
    :class:`Continuation` (or closed). Exceptions from the chain propagate.
    """
    try:
        return coro.send(None)
    except StopIteration as stop:
        return stop.value


class Continuation:
    """Resumes a suspended chain coroutine each time what it awaits is done, then hands the
    result (or the exception) to ``sink.finish``."""

    __slots__ = ("coro", "req", "sink", "loop")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Response],
        awaited: Any,
        req: Request,
        sink: Sink,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.coro = coro
        self.req = req
        self.sink = sink
        self.loop = loop
        self._wait(awaited)

    def _wait(self, awaited: Any) -> None:
        if awaited is None:  # a bare yield (asyncio.sleep(0)): resume on the next loop iteration
            self.loop.call_soon(self._resume, None)
            return
        if getattr(awaited, "_asyncio_future_blocking", None) is None:
            self.coro.close()
            error = RuntimeError(f"chain awaited something that is not a future: {awaited!r}")
            self.sink.finish(self.req, None, error)
            return
        awaited._asyncio_future_blocking = False
        awaited.add_done_callback(self._resume)

    def _resume(self, _fut: object) -> None:
        try:
            awaited = self.coro.send(None)
        except StopIteration as stop:
            self.sink.finish(self.req, stop.value, None)
        except BaseException as exc:  # noqa: BLE001 - the sink answers SERVFAIL and logs it
            self.sink.finish(self.req, None, exc)
        else:
            self._wait(awaited)


async def deadline(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable`` for at most ``seconds``, else cancel it and raise TimeoutError.

    For plugin code in ``serve``: it needs no current Task (the chain is driven by hand), where
    ``asyncio.timeout()`` raises and ``asyncio.wait_for()`` does too from Python 3.12 on. A
    coroutine runs as a Task of its own; a future is awaited as it is.
    """
    loop = asyncio.get_running_loop()
    inner = asyncio.ensure_future(awaitable)
    if not inner.done():
        waiter = loop.create_future()

        def wake(_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        inner.add_done_callback(wake)
        timer = loop.call_later(seconds, wake, None)
        try:
            await waiter
        except BaseException:  # the chain was closed or cancelled: so is what it waited for
            inner.cancel()
            raise
        finally:
            timer.cancel()
            inner.remove_done_callback(wake)
        if not inner.done():
            inner.cancel()
            raise TimeoutError(f"no result within {seconds:g} s")
    return inner.result()
