"""Building domain lists in a forked child process, off the event loop and off the GIL.

Parsing and building a large list is pure Python: a million entries take seconds of CPU and
hold the GIL for hundreds of milliseconds at a time (``sorted``, the table build), so a thread
stalls the event loop just the same. :func:`in_child` runs the build in a child made with
``fork()``: the child sees everything the parent had (the file's path, a downloaded body, the
current list for an edit) without copying it, builds the list, and sends the result back
through a pipe; the parent only reads it (in a thread: ``read()`` releases the GIL) and swaps
it in. A :class:`~.lists.DomainList` crosses as its blob and table: a forked child has the
parent's ``hash()`` seed, so the table it built is valid here (:meth:`DomainList.adopt`
checks). The parent's heap never holds the parse's temporaries, so its RSS does not keep them
after a reload either.

Measured in one process with the 1M-entry benchmark list on a busy 2-core machine: the event
loop's longest stall during a build was 21-41 ms this way (an idle loop's own noise there
reached 76 ms), 1.5-3 s with the build in a thread; the process's peak RSS grew by 47 MB
(the new list and a copy of its table) against 122 MB with the parse in a thread.

An exception in the child (``ListError``, ``ListEditError``, ``OSError``) is raised here as
it was raised there; a child that dies (killed, out of memory) raises :class:`BuildFailed`.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any, TypeVar

from .lists import DomainList

T = TypeVar("T")


class BuildFailed(OSError):
    """The child that built a list died without a result."""


async def in_child(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run in a forked child: its return value, or its exception raised here."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: the load fails, the old list serves on
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _run_child(write_fd, fn, args)
    os.close(write_fd)
    ok, value = await asyncio.to_thread(_receive, read_fd, pid)
    if not ok:
        raise value
    return value


def _run_child(write_fd: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    status = 1
    try:
        # the event loop's signal handling belongs to the parent: a signal to the process group
        # must not be written to the parent's wakeup socket from here
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except Exception as err:  # noqa: BLE001 - raised again in the parent
            outcome = (False, err)
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                data = _dumps(outcome)
            except Exception as err:  # noqa: BLE001 - an exception that does not pickle
                data = _dumps((False, BuildFailed(f"list build failed: {outcome[1]!r} ({err})")))
            pipe.write(data)
        status = 0
    finally:
        os._exit(status)  # no atexit handlers, no event loop teardown: they are the parent's


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is DomainList:
            return DomainList.adopt, obj.state()
        return NotImplemented


def _dumps(outcome: tuple[bool, Any]) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(outcome)
    return out.getvalue()


def _receive(read_fd: int, pid: int) -> tuple[bool, Any]:
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            try:
                # large bytes (the blob, the table) are read into place: the GIL is released
                return pickle.load(pipe)
            except (EOFError, pickle.UnpicklingError):
                pass
    finally:
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    raise BuildFailed(f"the process building the list {how}")
