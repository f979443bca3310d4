"""Domain lists by name: where each comes from, its current content, and how it is replaced.

A :class:`ListSlot` holds one named list. Its content (a :class:`~.lists.DomainList`) is
replaced whole by assigning one reference, so a query sees either the old list or the new
one, never half of either. Parsing and building happen off the event loop and off the GIL,
in a forked child (``.child``: a reload or an edit of a 1M-entry list does not pause
queries); downloads and disk copies are read in a thread. A failed load or refresh keeps the
previous content serving.

* ``file`` lists are read at start; edits through the admin API are written back to the file
  atomically (temp file, fsync, rename, fsync of the directory) before they are swapped in.
  The reviewed file stays readable: ADD appends the new entries under a dated comment
  (``# added by dnsfw admin API TIME (CLIENT, IDENTITY)``), REMOVE deletes the entries' lines
  where they are, REPLACE keeps the header comment block; the previous ``versions`` (default
  5) are kept beside the file as ``PATH.1`` (the newest) ... ``PATH.N``, and every edit is
  logged (``list_edited``) with the client's address and identity.
  Only ``route53``-format files can be edited (a ``hosts`` or ``adblock`` file is refused),
  and only files dnsfw can write: checked at each load and before each edit (the file, and
  its directory for the rename); one it cannot write is ``editable: false`` with an
  ``editable_reason`` (e.g. ``/etc/dnsfw`` is read-only under the systemd unit: edited lists
  belong in ``$STATE_DIRECTORY/lists``) and an edit of it is refused (409), as is a write
  that fails all the same.
* ``url`` lists (``feed`` lists are url lists from the catalogue, :mod:`.feeds`) are fetched
  at start and every ``refresh`` with a conditional GET (ETag / Last-Modified), with the
  request headers of ``headers_file`` (:mod:`.headers`: read at each download, never logged,
  not sent on to a redirect's target). A failed download is retried with a capped exponential backoff
  (:data:`RETRY_FIRST` seconds, doubling up to ``refresh``, with jitter), whether the list was
  never loaded (the first download at start) or an older copy keeps serving; each failure is
  logged once, with the time of the next try. The last good copy is kept on disk (``$STATE_DIRECTORY`` under
  systemd, else ``$DNSFW_STATE_DIR``, else ``/var/lib/dnsfw``, else ``~/.local/state/dnsfw``)
  so a restart without network still has it.
* ``domains`` lists are given in the Corefile and cannot be edited at run time.

Parsed file contents are remembered per process by (path, format, mtime, size), so a reload
with an unchanged file swaps in at once instead of parsing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from proxy.services import Refused

from . import headers
from .child import BuildFailed, in_child
from .config import ListSpec
from .lists import DomainList, ListError, LoadReport, normalize_entry

log = structlog.get_logger("dnsfw.firewall")

FETCH_TIMEOUT = 30.0
RETRY_FIRST = 5.0  # seconds before the first retry of a failed download; doubles each failure
PROBE_TIMEOUT = 10.0  # `dnsfw check`'s download of a url list
JITTER = (0.9, 1.1)  # lists sharing a server do not all download at once
# (path, format, lenient) -> ((mtime_ns, size), DomainList, LoadReport): the latest parse
_PARSED: dict[tuple[str, str, bool], tuple[tuple[int, int], DomainList, LoadReport]] = {}


class ListEditError(Refused):
    """An admin edit that was refused; ``status`` is the HTTP status it maps to."""


@dataclass
class ListStatus:
    name: str
    kind: str
    source: str
    format: str
    entries: int
    status: str  # loading | loaded | failed
    loaded_at: float | None
    load_seconds: float | None
    error: str | None
    skipped: int
    failures: int
    consecutive_failures: int  # url: failed downloads since the last good one
    next_download_at: float | None  # url: the next download (a retry after a failure)
    editable: bool
    editable_reason: str | None  # why not, when not editable


class ListSlot:
    def __init__(self, spec: ListSpec) -> None:
        self.spec = spec
        self.current: DomainList | None = None
        self.status = "loading"
        self.error: str | None = None
        self.loaded_at: float | None = None
        self.load_seconds: float | None = None
        self.skipped = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.next_download_at: float | None = None  # url lists: wall time of the next GET
        self.rescheduled = asyncio.Event()  # next_download_at changed (wakes the refresh loop)
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.unwritable: str | None = None  # why dnsfw cannot write the file (checked at load)
        self.lock = asyncio.Lock()  # serialises admin edits of this list
        self.on_swap: list[Callable[[], None]] = []  # e.g. the policy's decision memo
        if spec.kind == "domains":
            self._set(DomainList.from_entries(spec.entries), 0, 0.0)

    # --- state ------------------------------------------------------------------------
    def _set(self, content: DomainList, skipped: int, seconds: float) -> None:
        self.current = content  # the atomic swap
        for forget in self.on_swap:
            forget()
        self.status = "loaded"
        self.error = None
        self.loaded_at = time.time()
        self.load_seconds = seconds
        self.skipped = skipped
        self.consecutive_failures = 0
        self._schedule()
        if self.spec.kind == "file":
            self.unwritable = unwritable(self.spec.path or "")

    def _failed(self, message: str) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.error = message
        if self.current is None:
            self.status = "failed"
        retry = self._schedule()
        log.error(
            "list_load_failed",
            list=self.spec.name,
            error=message,
            keeps_old=self.current is not None,
            failures_in_a_row=self.consecutive_failures,
            **({"retry_in": round(retry, 1)} if retry is not None else {}),
        )

    def _schedule(self) -> float | None:
        """Set when a url list is downloaded next: ``refresh`` after a success, after failures
        a backoff from RETRY_FIRST doubling up to ``refresh``; the delay in seconds."""
        if self.spec.kind != "url":
            return None
        refresh = self.spec.refresh
        failed = self.consecutive_failures
        base = refresh if not failed else min(refresh, RETRY_FIRST * 2 ** min(failed - 1, 30))
        delay = base * random.uniform(*JITTER)
        self.next_download_at = time.time() + delay
        self.rescheduled.set()
        return delay

    def waiting(self) -> str:
        """Why this list is not loaded yet, once a load failed (``/ready``); else ''."""
        if self.current is not None or self.error is None:
            return ""
        reason = f"list '{self.spec.name}': {self.error}"
        if self.next_download_at is not None:
            retry = time.strftime("%H:%M:%SZ", time.gmtime(self.next_download_at))
            reason += f" (failure {self.consecutive_failures}, next try at {retry})"
        return reason

    def describe(self) -> ListStatus:
        spec = self.spec
        source = spec.path or spec.url or "Corefile"
        return ListStatus(
            name=spec.name,
            kind=spec.kind,
            source=source,
            format=spec.fmt,
            entries=len(self.current) if self.current is not None else 0,
            status=self.status,
            loaded_at=self.loaded_at,
            load_seconds=self.load_seconds,
            error=self.error,
            skipped=self.skipped,
            failures=self.failures,
            consecutive_failures=self.consecutive_failures,
            next_download_at=self.next_download_at,
            editable=self.not_editable() is None,
            editable_reason=self.not_editable(),
        )

    # --- loading --------------------------------------------------------------------------
    def load_now(self) -> None:
        """Load synchronously (``dnsfw check`` / ``explain``): raises ListError on bad lines."""
        if self.spec.kind == "file":
            started = time.monotonic()
            signature, parsed = _known_parse(self.spec)
            if parsed is None:
                parsed = _parse_file(self.spec)
                _remember_parse(self.spec, signature, *parsed)
            self._set(parsed[0], parsed[1].skipped, time.monotonic() - started)
        elif self.spec.kind == "url":
            cached = _read_disk_copy(self.spec)
            if cached is not None:
                content, report = _parse_text(cached, self.spec)
                self._set(content, report.skipped, 0.0)

    def probe(self) -> None:
        """Download a url list now and parse it (``dnsfw check``): raises OSError when it
        cannot be downloaded (no network, a non-2xx status), ListError on bad lines."""
        fetched = _fetch(self.spec, None, None, timeout=PROBE_TIMEOUT)
        assert fetched is not None  # no conditional GET: never 304
        content, report = _parse_text(fetched[0], self.spec)
        self._set(content, report.skipped, 0.0)

    def check_readable(self) -> None:
        """Raise OSError when a file list cannot be opened for reading (``dnsfw run``'s setup,
        which parses it later in the background)."""
        if self.spec.kind == "file":
            assert self.spec.path is not None
            with open(self.spec.path, "rb"):
                pass

    def unreadable(self, err: OSError) -> str:
        """The message for a list file that cannot be read: the list and the path."""
        return f"cannot read list '{self.spec.name}': {self.spec.path}: {err.strerror or err}"

    async def load(self) -> None:
        """Load or re-read from the source; on failure the old content keeps serving."""
        if self.spec.kind == "file":
            await self._load_file()
        elif self.spec.kind == "url":
            await self._load_url()

    async def _load_file(self) -> None:
        spec = self.spec
        started = time.monotonic()
        try:
            signature, parsed = _known_parse(spec)
            if parsed is None:
                parsed = await in_child(_parse_file, spec)
                _remember_parse(spec, signature, *parsed)
        except ListError as err:
            self._failed(str(err))
            raise
        except OSError as err:
            # BuildFailed (the child died) has no strerror
            self._failed(
                f"{spec.file}:{spec.line}: {self.unreadable(err)}"
                if err.strerror
                else f"{spec.path}: {err}"
            )
            raise
        content, report = parsed
        self._set(content, report.skipped, time.monotonic() - started)
        log.info(
            "list_loaded",
            list=self.spec.name,
            entries=len(content),
            skipped=report.skipped,
            seconds=round(self.load_seconds or 0, 3),
        )

    async def _load_url(self) -> None:
        spec = self.spec
        if self.current is None:
            cached = await asyncio.to_thread(_read_disk_copy, spec)
            if cached is not None:
                with contextlib.suppress(ListError):
                    content, report = await in_child(_parse_text, cached, spec)
                    self._set(content, report.skipped, 0.0)
                    meta = _read_disk_meta(spec)
                    self.etag, self.last_modified = meta.get("etag"), meta.get("last_modified")
        started = time.monotonic()
        try:
            fetched = await asyncio.to_thread(_fetch, spec, self.etag, self.last_modified)
        except OSError as err:
            self._failed(f"download of {spec.url} failed: {err}")
            raise
        if fetched is None:  # 304 Not Modified
            if self.current is not None:
                self.status = "loaded"
                self.error = None
            self.consecutive_failures = 0
            self._schedule()
            return
        body, etag, last_modified = fetched
        try:
            content, report = await in_child(_parse_text, body, spec)
        except (ListError, BuildFailed) as err:
            self._failed(str(err))
            raise
        self._set(content, report.skipped, time.monotonic() - started)
        self.etag, self.last_modified = etag, last_modified
        await asyncio.to_thread(_write_disk_copy, spec, body, etag, last_modified)
        log.info(
            "list_downloaded",
            list=spec.name,
            entries=len(content),
            skipped=report.skipped,
            url=spec.url,
        )

    # --- edits (admin API) ------------------------------------------------------------
    def not_editable(self) -> str | None:
        """Why the admin API cannot edit this list, or None."""
        spec = self.spec
        if spec.kind == "domains":
            return (
                f"list '{spec.name}' is defined inline in the Corefile; "
                "edit the Corefile and reload"
            )
        if spec.kind == "url":
            return f"list '{spec.name}' is downloaded from {spec.url}; change it at the source"
        if spec.fmt != "route53":
            # edits are written back as route53 entries, which the file's format would refuse
            return f"list '{spec.name}' is a {spec.fmt}-format file; edit {spec.path}"
        if self.unwritable is not None:
            return f"list '{spec.name}' cannot be edited: {self.unwritable}"
        return None

    def check_editable(self) -> None:
        if self.spec.kind == "file":
            self.unwritable = unwritable(self.spec.path or "")  # it may have changed since
        reason = self.not_editable()
        if reason is not None:
            raise ListEditError(reason, 409)
        if self.current is None:
            raise ListEditError(f"list '{self.spec.name}' is not loaded yet", 409)

    async def _in_child_writing(self, fn: Callable[..., DomainList], *args: object) -> DomainList:
        """``fn`` run in a child that writes the file: a write that fails all the same (a
        full disk, a race with the checks) is refused with its reason, the list unchanged."""
        try:
            return await in_child(fn, *args)
        except BuildFailed:
            raise
        except OSError as err:
            raise ListEditError(
                f"list '{self.spec.name}' was not changed: cannot write {self.spec.path}: "
                f"{err.strerror or err}",
                409,
            ) from None

    async def edit(
        self,
        operation: str,
        domains: Iterable[str],
        *,
        client: str = "local",
        identity: str = "anonymous",
    ) -> int:
        """ADD, REMOVE or REPLACE entries (Route 53's UpdateFirewallDomains) for ``client``
        (its address) and ``identity`` (``anonymous``, or the token's fingerprint); returns
        the new size. The file keeps its comments (:func:`edited_text`)."""
        self.check_editable()
        entries, errors = normalize_all(domains)
        if errors:
            raise ListEditError("invalid domain list entries", 400, errors)
        assert self.current is not None
        if operation not in ("ADD", "REMOVE", "REPLACE"):
            raise ListEditError(f"unknown operation '{operation}' (ADD, REMOVE or REPLACE)")
        stamp = _stamp(client, identity)
        async with self.lock:
            # set arithmetic over a large list takes seconds: keep it off the event loop
            content = await self._in_child_writing(
                self._apply, self.current, operation, entries, stamp
            )
            self._wrote(content)
        self._logged(operation, content, client, identity)
        return len(content)

    async def replace_text(
        self, text: str, *, client: str = "local", identity: str = "anonymous"
    ) -> int:
        """REPLACE with a route53-format text (one entry per line, ``#`` comments, kept in the
        file under its header comments); returns the new size. Parsing, building and writing
        all run in a forked child, as a reload's: a 1M-entry list would hold the event loop
        for seconds otherwise."""
        self.check_editable()
        stamp = _stamp(client, identity)
        async with self.lock:
            content = await self._in_child_writing(self._parse_and_write, text, stamp)
            self._wrote(content)
        self._logged("REPLACE", content, client, identity)
        return len(content)

    def _logged(self, operation: str, content: DomainList, client: str, identity: str) -> None:
        log.info(
            "list_edited",
            list=self.spec.name,
            path=self.spec.path,
            operation=operation,
            entries=len(content),
            client=client,
            identity=identity,
        )

    def _parse_and_write(self, text: str, stamp: str) -> DomainList:
        try:
            content, _ = DomainList.from_lines(text.splitlines(), file="<request body>")
        except ListError as err:
            errors = [str(e) for e in err.errors]
            if err.total > len(errors):
                errors.append(f"... and {err.total - len(errors)} more invalid entries")
            raise ListEditError("invalid domain list entries", 400, errors) from None
        old = self._read()
        self._write(old, _header(old, self.spec.name) + f"# replaced by {stamp}\n" + _ended(text))
        return content

    def _apply(
        self, current: DomainList, operation: str, entries: list[str], stamp: str
    ) -> DomainList:
        old = self._read()
        have = set(current.entries())
        if operation == "ADD":
            added = sorted(set(entries) - have)
            new = sorted(have | set(entries))
            text = _ended(old) + f"# added by {stamp}\n" + _lines(added) if added else old
        elif operation == "REMOVE":
            drop = set(entries)
            new = [e for e in current.entries() if e not in drop]
            text = "".join(line for line in old.splitlines(True) if _entry_of(line) not in drop)
        else:
            new = sorted(set(entries))
            text = _header(old, self.spec.name) + f"# replaced by {stamp}\n" + _lines(new)
        content = DomainList.from_entries(new)
        if text != old:
            self._write(old, text)
        return content

    def _read(self) -> str:
        assert self.spec.path is not None
        with open(self.spec.path, encoding="utf-8-sig", errors="replace") as f:
            return f.read()

    def _write(self, old: str, text: str) -> None:
        """Keep the file's last versions beside it (``PATH.1`` the newest, up to ``versions``),
        then replace it with ``text`` atomically (in the child that built the content)."""
        path = self.spec.path
        assert path is not None
        keep = self.spec.versions
        if keep:
            for n in range(keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{path}.{n}", f"{path}.{n + 1}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}.1")
            os.link(path, f"{path}.1")  # the file itself: the rename below leaves it whole
        write_atomically(path, text)

    def _wrote(self, content: DomainList) -> None:
        """Swap in an edit's ``content``, and remember it as the parse of the file just written."""
        signature, _ = _known_parse(self.spec)
        _remember_parse(self.spec, signature, content, LoadReport(len(content), 0, ()))
        self._set(content, 0, 0.0)


EDIT_MARKS = ("# added by dnsfw admin API", "# replaced by dnsfw admin API")


def _stamp(client: str, identity: str) -> str:
    """What an edit's comment line says after "added by" / "replaced by"."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"dnsfw admin API {when} ({client}, {identity})"


def _entry_of(line: str) -> str | None:
    """The canonical entry of a route53-format line, or None (a comment, a blank line)."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    try:
        return normalize_entry(text)
    except ValueError:
        return None


def _header(text: str, name: str) -> str:
    """The comment block that opens a list file (the reviewed header REPLACE keeps): its
    comment and blank lines up to the first entry or the first edit mark; a file without one
    gets a line naming the list."""
    header = []
    for line in text.splitlines(True):
        stripped = line.strip()
        if stripped and (not stripped.startswith("#") or stripped.startswith(EDIT_MARKS)):
            break
        header.append(line)
    kept = "".join(header)
    if not kept.strip():
        return f"# domain list '{name}', written by the dnsfw admin API\n"
    return _ended(kept)


def _ended(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _lines(entries: Iterable[str]) -> str:
    return "".join(e + "\n" for e in entries)


def normalize_all(domains: Iterable[str]) -> tuple[list[str], list[str]]:
    """Canonical entries and, separately, one message per bad entry."""
    good: list[str] = []
    bad: list[str] = []
    for raw in domains:
        if not isinstance(raw, str):
            bad.append(f"{raw!r}: not a string")
            continue
        try:
            good.append(normalize_entry(raw))
        except ValueError as err:
            bad.append(f"'{raw}': {err}")
    return good, bad


def unwritable(path: str) -> str | None:
    """Why dnsfw cannot replace the file at ``path`` atomically (it writes a temporary file
    in the same directory and renames it over the file), or None. ``access(2)`` also sees a
    read-only filesystem (EROFS: ``ProtectSystem=strict`` under systemd), even for root."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.access(directory, os.W_OK):
        return (
            f"dnsfw cannot write in {directory} (read-only, or not its own); put lists edited "
            "through the admin API in a writable directory, e.g. /var/lib/dnsfw/lists "
            "($STATE_DIRECTORY/lists under the systemd unit)"
        )
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"dnsfw cannot write {path} (its permissions)"
    return None


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so a crash leaves either the old or the new file, whole."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dnsfw-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _known_parse(
    spec: ListSpec,
) -> tuple[tuple[int, int], tuple[DomainList, LoadReport] | None]:
    """The file's signature (mtime, size) and its remembered parse, if it has not changed."""
    assert spec.path is not None
    stat = os.stat(spec.path)
    signature = (stat.st_mtime_ns, stat.st_size)
    key = (spec.path, spec.fmt, spec.lenient)
    known = _PARSED.get(key)
    if known is not None and known[0] == signature:
        return signature, (known[1], known[2])
    return signature, None


def _remember_parse(
    spec: ListSpec, signature: tuple[int, int], content: DomainList, report: LoadReport
) -> None:
    assert spec.path is not None
    _PARSED[(spec.path, spec.fmt, spec.lenient)] = (signature, content, report)


def _parse_file(spec: ListSpec) -> tuple[DomainList, LoadReport]:
    assert spec.path is not None
    with open(spec.path, encoding="utf-8-sig", errors="replace") as f:  # -sig: tolerate a BOM
        return DomainList.from_lines(f, fmt=spec.fmt, file=spec.path, lenient=spec.lenient)


def _parse_text(text: str, spec: ListSpec) -> tuple[DomainList, LoadReport]:
    """A downloaded list (or its disk copy)."""
    return DomainList.from_lines(
        text.splitlines(), fmt=spec.fmt, file=spec.url or "", lenient=spec.lenient
    )


def state_dir() -> str:
    for candidate in (
        os.environ.get("STATE_DIRECTORY", "").split(":")[0],
        os.environ.get("DNSFW_STATE_DIR", ""),
        "/var/lib/dnsfw",
        os.path.expanduser("~/.local/state/dnsfw"),
    ):
        if not candidate:
            continue
        with contextlib.suppress(OSError):
            os.makedirs(candidate, exist_ok=True)
        if os.access(candidate, os.W_OK):
            return candidate
    return tempfile.gettempdir()


def _disk_paths(spec: ListSpec) -> tuple[str, str]:
    digest = hashlib.sha256((spec.url or "").encode()).hexdigest()[:16]
    base = os.path.join(state_dir(), "lists", f"{spec.name}-{digest}")
    return base + ".txt", base + ".json"


def _read_disk_copy(spec: ListSpec) -> str | None:
    body, _ = _disk_paths(spec)
    try:
        with open(body, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _read_disk_meta(spec: ListSpec) -> dict:
    _, meta = _disk_paths(spec)
    try:
        with open(meta, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_disk_copy(
    spec: ListSpec, body: str, etag: str | None, last_modified: str | None
) -> None:
    body_path, meta_path = _disk_paths(spec)
    try:
        os.makedirs(os.path.dirname(body_path), exist_ok=True)
        write_atomically(body_path, body)
        write_atomically(
            meta_path, json.dumps({"url": spec.url, "etag": etag, "last_modified": last_modified})
        )
    except OSError as err:
        log.warning("list_disk_copy_failed", list=spec.name, error=str(err))


def _fetch(
    spec: ListSpec, etag: str | None, last_modified: str | None, timeout: float = FETCH_TIMEOUT
) -> tuple[str, str | None, str | None] | None:
    """GET the list; None when the server says 304 Not Modified. Raises OSError on failure."""
    request = urllib.request.Request(spec.url or "", headers={"User-Agent": "dnsfw"})
    if spec.headers_file:
        try:
            extra = headers.read(spec.headers_file)
        except (OSError, ValueError) as err:
            raise OSError(f"headers_file: {err}") from None
        for name, value in extra:
            # not sent on to a redirect's target, which may be another host
            request.add_unredirected_header(name, value)
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read().decode("utf-8", errors="replace")
            return body, response.headers.get("ETag"), response.headers.get("Last-Modified")
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return None
        raise OSError(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise OSError(str(err.reason)) from None
