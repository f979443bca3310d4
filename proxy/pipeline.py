"""The plugin chain and the driver that runs it without a Task per query.

A chain is built once per server block by folding its plugins from last to first (as CoreDNS
does): each link is ``lambda req: plugin.serve(req, next_link)``. The server calls the outer
link and *drives* the coroutine by hand: most queries (cache hits, blocked names, local
answers) never truly suspend, so they finish inside the first ``send(None)`` with no Task, no
extra loop iteration. Only a query that waits on I/O gets a :class:`Continuation`, which does
what ``asyncio.Task.__step`` does (resume the coroutine when the awaited future is done) at a
fraction of the cost.

Consequences for plugin code: ``serve`` must not rely on ``asyncio.current_task()`` (so no
``asyncio.timeout()``); use futures with ``loop.call_later`` for deadlines. Awaiting a real
Task (``await asyncio.ensure_future(...)``) works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from .request import Request, Response
from .wire import SERVFAIL

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class Sink(Protocol):
    """Where a finished query goes (a listener): ``finish(req, resp, exc)``."""

    def finish(self, req: Request, resp: Response | None, exc: BaseException | None) -> None: ...


class Plugin(Protocol):
    """A stage of the chain. Optional hooks: ``async start()``, ``async stop()``, ``ready() -> bool``."""

    name: str

    async def serve(self, req: Request, next: Handler) -> Response: ...


def build_chain(plugins: Sequence[Plugin]) -> Handler:
    """Fold ``plugins`` (outermost first) into one handler; past the last one is SERVFAIL."""
    handler: Handler = _no_next(plugins[-1].name if plugins else "")
    for plugin in reversed(plugins):
        handler = _link(plugin.serve, handler)
    return handler


def _link(
    serve: Callable[[Request, Handler], Coroutine[Any, Any, Response]], nxt: Handler
) -> Handler:
    return lambda req: serve(req, nxt)


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
