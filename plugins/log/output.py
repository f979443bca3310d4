"""The query-log writer: a bounded list of lines filled on the query path, written in batches.

``Log.serve`` renders its line as soon as the reply is known and appends it to
:attr:`Sink.lines` while that holds fewer than ``limit`` lines, or counts a drop: no I/O on the
query path. Rendering at once, rather than queueing the request and the reply for a writer to
format later, is a measured choice: the line is built while the request is still in the CPU's
cache (a memoised JSON line costs under a microsecond then), and only the line is kept. Keeping
the request, the reply and their parts alive until the writer's next turn left thousands of
records cold in memory, and allocating past them cost more than formatting did (bench figures
in the README).

A writer task on the event loop wakes every :data:`FLUSH_INTERVAL` (or when ``early`` lines
wait) and hands what is pending to the output's writer thread in one step; the thread joins,
encodes and writes it :data:`CHUNK` lines at a time, so a slow disk or a stalled stdout pipe
blocks that thread, never the event loop. While a write is stuck the list fills and further
lines are dropped and counted.

Each output (``stdout``, ``stderr`` or a file path) has one daemon writer thread shared by every
sink writing there, so the sinks of an old and a new configuration (during a reload) never
interleave inside a line. Files are opened ``O_APPEND`` (mode 0640: query logs hold client
addresses); :meth:`Sink.reopen` closes and reopens the path (after logrotate moved it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

FLUSH_INTERVAL = 0.05  # seconds between writer wake-ups
BATCH = 16384  # pending lines that wake the writer before its interval is up
CHUNK = 4096  # lines joined and encoded at a time in the writer thread (GIL held ~0.1 ms)
DEFAULT_BUFFER = 65536  # lines pending at most before drops
WARN_EVERY = 10.0  # seconds between two warnings about drops or write errors
STOP_TIMEOUT = 5.0  # how long stop() waits for the last lines to be written

log = structlog.get_logger("dnsfw.log")


class _WriterThread:
    """A daemon thread running blocking output calls one at a time, for one output."""

    def __init__(self, label: str) -> None:
        self.jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple, Any, Any]] = (
            queue.SimpleQueue()
        )
        # daemon: a write stuck on a pipe nobody reads must not keep the process alive
        thread = threading.Thread(target=self._run, name=f"dnsfw-log {label}", daemon=True)
        thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((fn, args, loop, future))
        return future

    def _run(self) -> None:
        while True:
            fn, args, loop, future = self.jobs.get()
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_threads: dict[str, _WriterThread] = {}
_live: set[Sink] = set()
_retired: dict[str, list[int]] = {}  # output -> [dropped, written] of stopped sinks


def _thread_for(output: str) -> _WriterThread:
    thread = _threads.get(output)
    if thread is None:
        thread = _threads[output] = _WriterThread(output)
    return thread


def dropped_samples() -> list[tuple[tuple[str, ...], float]]:
    """``dnsfw_log_dropped_total`` by output, over this process's life (reloads included)."""
    return _samples(0)


def written_samples() -> list[tuple[tuple[str, ...], float]]:
    """``dnsfw_log_lines_total`` by output."""
    return _samples(1)


def _samples(index: int) -> list[tuple[tuple[str, ...], float]]:
    totals = {output: counts[index] for output, counts in _retired.items()}
    for sink in _live:
        value = sink.dropped if index == 0 else sink.written
        totals[sink.output] = totals.get(sink.output, 0) + value
    return [((output,), n) for output, n in sorted(totals.items())]


class Sink:
    """The pending lines and the writer of one ``log`` directive.

    ``output`` is ``stdout``, ``stderr`` or an absolute file path. ``lines`` (never replaced,
    so the query path may hold it) and ``limit`` are read by the query path directly;
    ``dropped`` is bumped there. ``on_wake`` runs at every writer turn (the log refreshes its
    clock there).
    """

    def __init__(
        self,
        output: str,
        limit: int = DEFAULT_BUFFER,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self.output = output
        self.limit = limit
        self.on_wake = on_wake
        self.lines: list[str] = []
        # pending lines that wake the writer at once (read by the query path)
        self.early = max(1, min(BATCH, limit // 2))
        self.dropped = 0  # lines not written: the list was full, or the write failed
        self.written = 0  # lines written
        self.failed = 0  # queries whose line could not be rendered (a bug: logged)
        self._fd = -1
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closing = False
        self._in_flight = 0  # lines handed to the writer thread and not yet settled
        self._abandoned = False  # stop() gave up on a stuck write: it counted those lines
        self._warned_drops = 0
        self._last_warning: dict[str, float] = {}

    @property
    def is_file(self) -> bool:
        return self.output not in ("stdout", "stderr")

    async def start(self) -> None:
        """Open the output (raises OSError, e.g. for a file we may not write) and start writing."""
        if self.is_file:
            self._fd = await _thread_for(self.output).call(_open_append, self.output)
        else:
            self._fd = 1 if self.output == "stdout" else 2
        _live.add(self)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"log {self.output}")

    async def stop(self) -> None:
        """Write everything queued (bounded by :data:`STOP_TIMEOUT`), then close the output."""
        if self._task is None:
            return
        self._closing = True
        self._kick()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT)
        except TimeoutError:
            unwritten = len(self.lines) + self._in_flight
            log.error(
                "query_log_stop_timeout",
                output=self.output,
                unwritten=unwritten,
                timeout=STOP_TIMEOUT,
            )
            self._abandoned = True  # should the stuck write end later, it is not counted again
            self.dropped += unwritten
            self.lines.clear()
        self._report_drops(force=True)
        _live.discard(self)
        counts = _retired.setdefault(self.output, [0, 0])
        counts[0] += self.dropped
        counts[1] += self.written
        if self.is_file and self._fd >= 0 and self._task.done():
            with contextlib.suppress(OSError):
                await _thread_for(self.output).call(os.close, self._fd)
        self._fd = -1

    async def reopen(self) -> None:
        """Reopen a file output by its path (lines written after this go to the new file).

        Queued lines are written after the switch; lines already handed to the writer thread
        go to the old file. Raises OSError when the path cannot be opened (the old file stays).
        """
        if self.is_file and self._fd >= 0:
            await _thread_for(self.output).call(self._swap_fd)

    def _swap_fd(self) -> None:  # in the writer thread, so no write is in progress
        fd = _open_append(self.output)
        old, self._fd = self._fd, fd
        os.close(old)

    # --- the query path ------------------------------------------------------------
    def wake_early(self) -> None:
        """Called by the query path when :attr:`early` lines wait: write them now."""
        self._kick()

    def render_failed(self, exc: Exception) -> None:
        """A line could not be rendered (a bug): counted, warned about at most every 10 s."""
        self.failed += 1
        self._warn("query_log_format_failed", error=repr(exc), total=self.failed)

    # --- the writer task ---------------------------------------------------------------
    def _kick(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            if self.on_wake is not None:
                self.on_wake()
            # lines that reached the early mark during the last write wake nobody: write now
            if len(self.lines) < self.early:
                self._wake = loop.create_future()
                timer = loop.call_later(FLUSH_INTERVAL, self._kick)
                await self._wake
                timer.cancel()
            await self._flush()
            self._report_drops()
        while self.lines and not self._abandoned:  # stopping: also what came during the last write
            await self._flush()

    async def _flush(self) -> None:
        """Write the lines pending now, in one hand-off to the writer thread.

        Lines that arrive during the write wait for the next turn: writing them at once would
        turn a busy log into a stream of small writes, each a round trip to the writer thread
        (measured: 40-80 KB writes back to back cost the process ~2 us of CPU per query).
        The thread joins and encodes the batch :data:`CHUNK` lines at a time, so the event
        loop never waits on one long join of a full buffer.
        """
        pending = self.lines
        if not pending:
            return
        batch = pending[:]
        pending.clear()  # in place: the query path holds this list
        self._in_flight = count = len(batch)
        written, error = await _thread_for(self.output).call(self._write_lines, batch)
        self._in_flight = 0
        if self._abandoned:
            return
        self.written += written
        if error is not None:
            self.dropped += count - written
            self._warn("query_log_write_failed", output=self.output, error=str(error))
        self._report_drops()

    def _write_lines(self, lines: list[str]) -> tuple[int, OSError | None]:  # writer thread
        """Write ``lines`` in chunks; how many were written, and the error that stopped it."""
        done = 0
        while done < len(lines):
            chunk = lines[done : done + CHUNK]
            count = len(chunk)
            chunk.append("")  # the last line's newline, without copying the joined text again
            data = "\n".join(chunk).encode("utf-8", "backslashreplace")
            try:
                self._write(data)
            except OSError as err:
                return done, err
            done += count
        return done, None

    def _write(self, data: bytes) -> None:  # in the writer thread
        if self.is_file:
            _write_all(self._fd, memoryview(data))
            return
        # stdout and stderr may be pipes with other writers (the service log shares stderr):
        # a write() of at most PIPE_BUF bytes is atomic there, so cut at line ends below it
        view = memoryview(data)
        start = 0
        while start < len(data):
            end = start + select.PIPE_BUF
            if end < len(data):
                cut = data.rfind(b"\n", start, end)
                end = cut + 1 if cut >= start else end
            _write_all(self._fd, view[start:end])
            start = end

    def _report_drops(self, *, force: bool = False) -> None:
        new = self.dropped - self._warned_drops
        if new and (force or self._may_warn("drops")):
            self._warned_drops = self.dropped
            log.warning(
                "query_log_dropped",
                output=self.output,
                dropped=new,
                total=self.dropped,
                buffer=self.limit,
            )

    def _warn(self, event: str, **fields: Any) -> None:
        if self._may_warn(event):
            log.warning(event, **fields)

    def _may_warn(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last_warning.get(key, -WARN_EVERY) < WARN_EVERY:
            return False
        self._last_warning[key] = now
        return True


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a non-blocking stdout: wait until it takes more
            select.select([], [fd], [], 1.0)


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
