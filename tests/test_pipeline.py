"""The hand-driven chain (proxy.pipeline): no current Task in ``serve``, and ``deadline()`` for
plugins that need a time limit there."""

from __future__ import annotations

import asyncio
import sys

import pytest

from proxy.pipeline import Continuation, deadline, start


class Sink:
    def __init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()

    def finish(self, req, resp, exc) -> None:
        self.done.set_result((resp, exc))


async def drive(coro) -> tuple[object, BaseException | None]:
    """Run ``coro`` as the server runs a chain: by hand, with no Task of its own."""
    try:
        awaited = start(coro)
    except Exception as exc:  # noqa: BLE001 - the server answers SERVFAIL for it
        return None, exc
    if not asyncio.isfuture(awaited) and awaited is not None:
        return awaited, None
    sink = Sink()
    Continuation(coro, awaited, None, sink, asyncio.get_running_loop())
    return await sink.done


async def test_serve_runs_without_a_current_task():
    async def serve():
        await asyncio.sleep(0)
        return asyncio.current_task()

    outside = asyncio.current_task()

    async def chain():
        return await serve()

    task_seen, exc = await drive(chain())
    assert outside is not None
    assert exc is None and task_seen is None  # resumed from a loop callback: no Task at all


async def test_asyncio_timeout_fails_in_a_driven_chain_and_deadline_works():
    loop = asyncio.get_running_loop()

    async def with_asyncio_timeout():
        fut = loop.create_future()  # ensure the chain suspends first
        loop.call_soon(fut.set_result, None)
        await fut
        async with asyncio.timeout(1):
            return "never"

    _, exc = await drive(with_asyncio_timeout())
    assert isinstance(exc, RuntimeError)  # "Timeout should be used inside a task"

    async def with_deadline(seconds: float):
        slow = loop.create_future()
        loop.call_later(0.2, slow.set_result, "late")
        fast = loop.create_future()
        loop.call_soon(fast.set_result, "fast")
        first = await deadline(fast, 1.0)
        try:
            await deadline(slow, seconds)
        except TimeoutError:
            return first, "timed out", slow.cancelled()
        return first, "in time", slow.cancelled()

    result, exc = await drive(with_deadline(0.05))
    assert exc is None and result == ("fast", "timed out", True)  # and it cancelled the future
    result, exc = await drive(with_deadline(1.0))
    assert exc is None and result == ("fast", "in time", False)


async def test_wait_for_needs_a_task_from_python_312_on():
    """Why plugins must not use it: it works here on 3.11 only by accident of its implementation."""

    async def with_wait_for():
        await asyncio.sleep(0)
        return await asyncio.wait_for(asyncio.sleep(0.01, result="done"), 1)

    result, exc = await drive(with_wait_for())
    if sys.version_info >= (3, 12):
        assert isinstance(exc, RuntimeError) and result is None
    else:
        assert exc is None and result == "done"


async def test_deadline_runs_a_coroutine_and_cancels_it_when_late():
    loop = asyncio.get_running_loop()
    cancelled = loop.create_future()

    async def slow():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set_result(True)
            raise

    async def chain():
        await asyncio.sleep(0)
        assert await deadline(asyncio.sleep(0.01, result=7), 1) == 7
        with pytest.raises(TimeoutError):
            await deadline(slow(), 0.05)
        return "ok"

    result, exc = await drive(chain())
    assert exc is None and result == "ok"
    assert await asyncio.wait_for(cancelled, 1)
