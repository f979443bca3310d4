"""auto - authoritative answers from every zone file in a directory (CoreDNS's ``auto``).

Syntax::

    auto [ZONES...] {
        directory DIR [REGEXP ORIGIN_TEMPLATE]
        reload DURATION
    }

* **ZONES**: the zones it may answer for (default: the server block's); zones found in the
  directory outside them are loaded but never asked.
* ``directory DIR``: where the zone files are (relative: to the Corefile's directory). A file
  whose name matches **REGEXP** (unanchored, at most 10000 characters) is the zone named by
  **ORIGIN_TEMPLATE**, where ``{1}``, ``{2}``... are the regex's groups. Default: ``db\\.(.*)``
  and ``{1}`` (``db.example.com`` is ``example.com``). Errors: ``regexp too large``, ``Need at
  least one sub expression``, ``Unable to access root path 'DIR': ...``; a directory that does
  not exist is a warning (``Directory does not exist: DIR``), read again at each reload.
* ``reload DURATION``: how often the directory is scanned again (zones added, removed, their
  files read again when the SOA serial changed), default ``1m``; ``0``: never (errors:
  ``reload duration value is expected``, ``invalid duration``).
* ``upstream`` is accepted and ignored; anything else is ``unknown property 'X'``.

Answers are the ``file`` plugin's (see there): AA, referrals, CNAME chasing inside the zone,
wildcards, NXDOMAIN/NODATA with the SOA, AXFR/IXFR REFUSED; no ``fallthrough``. A name in
ZONES that is in no loaded zone goes to the next plugin. A file that does not parse is logged
and skipped (the other zones load). Replays: answers are guarded by their zone's data, and
queries passed on by the set of loaded zones, so a zone added, removed or changed by a scan
ends every replay that depended on it.

Examples::

    org {
        auto {
            directory zones/org
        }
    }

    org {
        auto {
            directory zones/org www\\.db\\.(.*) {1}
            reload 45s
        }
    }
"""

from __future__ import annotations

import asyncio
import os
import re

import structlog

from plugins.file import DEFAULT_RELOAD, File, Settings, Zone, ZoneError
from proxy.config import SetupContext
from proxy.corefile import CorefileError, Directive, Token
from proxy.durations import parse_duration
from proxy.fall import NEVER
from proxy.names import longest_zone, normalize_zone, text_to_wire
from proxy.pipeline import Handler
from proxy.replay import Guard
from proxy.request import Request, Response

log = structlog.get_logger("dnsfw.auto")

MAX_REGEX = 10000
_GROUP = re.compile(r"\{(\d+)\}")


def setup(directive: Directive, ctx: SetupContext) -> Auto:
    base = os.path.dirname(os.path.abspath(ctx.app.conf_path))
    origins = ctx.zones_from(directive.args)
    directory, regex, template, reload = "", re.compile(r"db\.(.*)"), "{1}", DEFAULT_RELOAD
    for line in directive.block or ():
        word = line.name.text
        if word == "directory":
            values = line.values
            if not values or len(values) == 2 or len(values) > 3:
                raise line.arg_error()
            directory = os.path.join(base, values[0])
            _check_directory(directory, line, ctx)
            if len(values) == 3:
                regex, template = _regex(line, values[1]), values[2]
        elif word == "reload":
            if not line.args:
                raise line.error("reload duration value is expected")
            reload = _reload(line.args[0])
        elif word != "upstream":
            raise line.error(f"unknown property '{word}'")
    return Auto(origins, directory, regex, template, reload)


def _check_directory(directory: str, line: Directive, ctx: SetupContext) -> None:
    try:
        os.stat(directory)
    except FileNotFoundError:
        ctx.app.warn(line.file, line.line, f"Directory does not exist: {directory}")
    except OSError as err:
        reason = f"stat {directory}: {(err.strerror or str(err)).lower()}"
        raise line.error(f"Unable to access root path '{directory}': {reason}") from None


def _regex(line: Directive, text: str) -> re.Pattern[str]:
    if len(text) > MAX_REGEX:
        raise line.error("regexp too large")
    try:
        regex = re.compile(text)
    except re.error as err:
        raise line.error(f"error parsing regexp: {err}: `{text}`") from None
    if regex.groups == 0:
        raise line.error("Need at least one sub expression")
    return regex


def _reload(token: Token) -> float:
    if token.text.lstrip("+") == "0":
        return 0.0
    try:
        return parse_duration(token)
    except CorefileError:
        raise CorefileError(token.file, token.line, "invalid duration") from None


class Loaded(Guard):
    """The set of zones one scan found: the guard of a query passed to the next plugin."""

    __slots__ = ("auto",)

    def __init__(self, auto: Auto) -> None:
        self.auto = auto

    def __call__(self) -> bool:
        return self.auto.loaded is self


class Auto(File):
    def __init__(
        self,
        origins: tuple[str, ...],
        directory: str,
        regex: re.Pattern[str],
        template: str,
        reload: float,
    ) -> None:
        super().__init__("auto", [], NEVER)
        self.origins = frozenset(text_to_wire(origin) for origin in origins)
        self.directory = directory
        self.regex = regex
        self.template = template
        self.settings = Settings()
        self.settings.reload = reload
        self.loaded = Loaded(self)

    async def serve(self, req: Request, next: Handler) -> Response:
        qname = req.qname_wire
        if longest_zone(qname, self.origins) is None:
            return await next(req)
        zone = self.zone_for(qname)
        if zone is None:
            req.record(self.loaded)  # a later scan may find its zone
            return await next(req)
        return await self.answer(req, zone, next)

    def scan(self) -> None:
        """Load the zones the directory holds now; drop those whose file went away."""
        found: dict[bytes, tuple[str, str]] = {}
        for root, _, names in os.walk(os.path.realpath(self.directory)):
            for name in sorted(names):
                origin = self.origin_of(name)
                if origin is None:
                    continue
                path = os.path.join(root, name)
                key = text_to_wire(origin)
                if key in found:
                    log.warning("zone_files_clash", origin=origin, used=found[key][1], path=path)
                    continue
                found[key] = (origin, path)
        changed = False
        for key, (origin, path) in found.items():
            zone = self.zones.get(key)
            if zone is not None and zone.path == path:
                zone.reload()
                continue
            zone = Zone(origin, path, self.settings)
            try:
                zone.data = zone.read(-1)
            except (OSError, ZoneError) as err:
                log.warning("zone_parse_failed", origin=origin, path=path, error=str(err))
                continue
            self.zones[key] = zone
            changed = True
            log.info("zone_inserted", origin=origin, path=path)
        for key in [key for key in self.zones if key not in found]:
            zone = self.zones.pop(key)
            zone.data = None  # ends the replays of its answers
            changed = True
            log.info("zone_deleted", origin=zone.origin)
        if changed:
            self.loaded = Loaded(self)

    def origin_of(self, filename: str) -> str | None:
        """The origin a file name stands for (CoreDNS's matches), or None."""
        found = self.regex.search(filename)
        if found is None:
            return None
        text = _GROUP.sub(
            lambda m: (found.group(int(m[1])) or "") if int(m[1]) <= self.regex.groups else "",
            self.template,
        )
        try:
            return normalize_zone(text)
        except ValueError:
            return None

    async def start(self) -> None:
        self.scan()
        if self.settings.reload > 0:
            self.tasks.append(asyncio.ensure_future(self._rescan()))

    async def _rescan(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload)
            self.scan()
