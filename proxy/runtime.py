"""The running process: its configuration, reloads, HTTP listeners, systemd state and stop.

``dnsfw run`` makes one :class:`Runtime`. Everything that changes the running configuration
goes through :meth:`Runtime.reload`: SIGHUP and SIGUSR1, the ``reload`` stage (the Corefile
changed on disk) and ``POST /v1/reload``. Reloads and admin list edits are serialised by
:attr:`Runtime.lock`, so an edit never lands on a configuration that is being replaced.

A reload, step by step (any failure before step 4 changes nothing):

1. parse the Corefile and set up every block (``reloading=True``) against a staging view of
   the process's metrics (:class:`proxy.metrics.Staging`);
2. open the HTTP addresses the new configuration adds (:class:`proxy.http.HttpListeners`);
3. :meth:`proxy.server.Server.reload`: start the new plugins (domain lists loaded), open new
   DNS listeners, swap every listener's routes at once; queries in flight finish on the old
   chains, whose plugins stop after the grace time;
4. commit: the new metric collectors, the HTTP sites (addresses the new configuration
   dropped close only now), the ``reload`` watcher's settings.
5. after the grace time: the old plugins stop (letting go of their large parts: a firewall's
   lists), what the old configuration counted is folded into the counters, nothing holds it
   any more (logged ``retired``), and the freed heap goes back to the OS; RSS after any
   number of reloads is that of one configuration.

A failed reload is logged (``reload_failed``), counted (``coredns_reload_failed_total``),
kept as :attr:`Runtime.last_reload` for the admin API and, under systemd, shown in the
``STATUS=`` line; the old configuration keeps serving. Under systemd a reload is framed by
``RELOADING=1`` (with ``MONOTONIC_USEC=``) and ``READY=1``, and the start by ``READY=1`` once
every plugin is ready (:mod:`proxy.systemd`).

Stop (SIGTERM, SIGINT): ``STOPPING=1``; with ``health ... { lameduck D }`` the process keeps
answering for D (``/health`` says OK, ``/ready`` says 503) so load balancers drain it; then
in-flight queries finish (bounded) and the plugins and HTTP listeners close. A plugin that
finds the process cannot serve (``loop``: a forwarding loop) calls :meth:`Runtime.fatal`
through ``AppContext.fatal``: the error is logged (``fatal``) and the process stops the same
way, without lameduck, with exit status 1.

Process metrics: ``coredns_build_info{version,revision,goversion}``,
``coredns_reload_failed_total``, ``coredns_reload_version_info{hash="sha512",value}``,
``coredns_plugin_enabled{server,zone,view,name}`` and the server's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

import plugins as registry

from . import __version__, systemd
from .build import RUNTIME, build
from .config import Config, load, parse_blocks
from .corefile import CorefileError, fingerprint
from .http import Change, HttpListeners
from .memory import release_free_heap
from .metrics import Child, Registry, Staging
from .names import wire_to_text
from .server import Server

log = structlog.get_logger("dnsfw")

READY_POLL = 0.05  # seconds between readiness checks at start-up


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did (the admin API's reply to ``POST /v1/reload``)."""

    ok: bool
    reason: str  # what asked for it: "SIGHUP", "SIGUSR1", "reload", "api"
    at: float  # Unix time it started
    seconds: float
    error: str | None = None
    changed: bool = False  # the parsed Corefile (imports included) differs from the old one
    sha512: str = ""
    listeners: Change | None = None  # DNS listeners
    http: Change | None = None  # HTTP listeners (admin, health, ready, prometheus)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Runtime:
    """One ``dnsfw run`` process (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        dns_port: int = 53,
        max_inflight: int = 10000,
        max_inflight_per_client: int | None = None,
        tcp_max_connections: int = 1000,
        shutdown_grace: float = 5.0,
        text: str | None = None,
    ) -> None:
        self.path = path
        self.text = text  # the Corefile's text when it is read from no file (the default)
        self.dns_port = dns_port
        self.max_inflight = max_inflight
        self.max_inflight_per_client = max_inflight_per_client
        self.tcp_max_connections = tcp_max_connections
        self.shutdown_grace = shutdown_grace
        self.metrics = Registry()  # process-wide: counters survive reloads
        self.shared: dict[str, Any] = {}  # plugin state that survives reloads
        self.http = HttpListeners(self)
        self.lock = asyncio.Lock()
        self.server: Server | None = None
        self.sha512 = ""
        self.started = time.time()
        self.lameduck = False
        self.announced = False  # READY=1 sent: systemd tracks reloads from then on
        self.last_reload: ReloadResult | None = None
        self.reloads = 0
        self.stopping = asyncio.Event()
        self._watch_spec: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed_sha512 = ""  # a Corefile the watcher tried and failed: not retried
        self.exit_status = 0
        self._first: Config | None = None  # what run() starts with (configure())
        self._register_metrics()

    # --- configuration ----------------------------------------------------------------
    def load(self, *, reloading: bool = False) -> Config:
        """Parse and set up the Corefile (no socket). Raises CorefileError."""
        config = load(
            self.path,
            dns_port=self.dns_port,
            reloading=reloading,
            metrics=self.metrics.stage(),
            shared=self.shared,
            text=self.text,
        )
        config.app.fatal = self.fatal
        config.app.metrics.gauge_func(
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            ("server", "zone", "view", "name"),
            lambda: _plugins_enabled(config),
        )
        return config

    def _sha512(self) -> str:
        return fingerprint(parse_blocks(self.path, self.dns_port, self.text))

    @property
    def config(self) -> Config:
        assert self.server is not None, "the runtime has not started"
        return self.server.config

    def not_ready(self) -> list[str]:
        return self.server.not_ready() if self.server is not None else ["dnsfw"]

    # --- run --------------------------------------------------------------------------
    def configure(self) -> None:
        """Parse and set up the Corefile that :meth:`run` starts with. Raises CorefileError.

        What lives as long as the process (every module a Corefile may use) is frozen out of
        garbage collection first (:func:`tune_gc`), the configuration not: a reload replaces
        it, and its reference cycles must stay collectable.
        """
        for module in registry.IMPLEMENTED.values():
            importlib.import_module(module)
        tune_gc()
        self._first = self.load()

    async def run(self) -> int:
        """Serve the configuration :meth:`configure` loaded until SIGTERM/SIGINT (or
        :meth:`stop`); the exit status."""
        interval = systemd.watchdog_interval()
        pinger = asyncio.ensure_future(systemd.watchdog(interval)) if interval else None
        try:
            return await self._run()
        finally:
            if pinger is not None:
                pinger.cancel()

    async def _run(self) -> int:
        passed = systemd.SocketPool(systemd.listen_fds())
        if not await self._start(passed):
            return 1
        log.info(
            "started", version=__version__, conf=self.path, pid=os.getpid(), sha512=self.sha512
        )
        for unused in passed.unused():
            log.warning("listen_fd_unused", socket=unused.label, name=unused.name)
        self._install_signals()
        if await self._until_ready():
            self.announced = True
            systemd.notify("READY=1", status=self._status())
            log.info("ready")
        await self.stopping.wait()
        await self._shutdown()
        return self.exit_status

    async def _start(self, passed: systemd.SocketPool) -> bool:
        """Open the listeners of the first configuration; False (logged) when that failed.

        From here on only the server holds the configuration (no frame of :meth:`run` does),
        so the first reload can free it like any other.
        """
        config, self._first = self._first, None
        assert config is not None, "configure() first"
        server = Server(
            config,
            max_inflight=self.max_inflight,
            max_inflight_per_client=self.max_inflight_per_client,
            tcp_max_connections=self.tcp_max_connections,
            shutdown_grace=self.shutdown_grace,
            inherited=passed,
            metrics=self.metrics,
        )
        server.on_retired = self._retired
        self.sha512 = config.sha512
        try:
            opened = await self.http.prepare(config.app.http)
            try:
                await server.start()
            except BaseException:
                await self.http.abort(opened)
                raise
        except OSError as err:
            log.error("start_failed", error=str(err))
            return False
        self.server = server
        self._commit(config)
        await self.http.commit(config.app.http, opened)
        return True

    def _retired(self) -> None:
        """A replaced configuration's plugins stopped: freeze what it counted, and give back
        the memory its large parts held (its plugins let go of them when they stopped)."""
        self.metrics.settle()
        release_free_heap()

    def stop(self) -> None:
        self.stopping.set()

    def fatal(self, error: str) -> None:
        """Stop with exit status 1: a plugin found that the process cannot serve."""
        log.error("fatal", error=error)
        self.exit_status = 1
        self.stopping.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._spawn_reload, sig.name)

    def _spawn_reload(self, reason: str) -> None:
        task = asyncio.ensure_future(self.reload(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _until_ready(self) -> bool:
        """Wait until every plugin is ready (lists loaded); False when a stop came first.

        Queries are answered meanwhile; systemd (READY=1) holds back units ordered after dnsfw.
        """
        waiting: list[str] = []
        while not self.stopping.is_set():
            pending = self.not_ready()
            if not pending:
                return True
            if pending != waiting:
                waiting = pending
                log.info("waiting_for_plugins", plugins=",".join(pending))
                systemd.notify(status=f"waiting for plugins: {', '.join(pending)}")
            await asyncio.sleep(READY_POLL)
        return False

    async def _shutdown(self) -> None:
        server = self.server
        assert server is not None
        systemd.notify("STOPPING=1")
        lameduck = server.config.app.lameduck
        if lameduck > 0 and not self.exit_status:
            self.lameduck = True
            log.info("lameduck", seconds=lameduck)  # CoreDNS: "Going into lameduck mode for D"
            await asyncio.sleep(lameduck)
        log.info("stopping", inflight=server.inflight)
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await server.stop()
        await self.http.close()
        log.info("stopped")

    # --- reload -------------------------------------------------------------------------
    async def reload(self, reason: str) -> ReloadResult:
        """Replace the running configuration with the Corefile's, or change nothing."""
        async with self.lock:
            if self.announced:
                systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={systemd.monotonic_usec()}")
            result = await self._reload(reason)
            self.reloads += 1
            self.last_reload = result
            if result.ok:
                log.info("reloaded", conf=self.path, reason=reason, sha512=result.sha512)
                status = self._status()
            else:
                self.reload_failed.value += 1
                log.error("reload_failed", reason=reason, error=result.error)
                status = f"reload failed, previous configuration serving: {result.error}"
            if self.announced:
                systemd.notify("READY=1", status=status)
            return result

    async def _reload(self, reason: str) -> ReloadResult:
        server = self.server
        assert server is not None
        at = time.time()
        started = time.monotonic()
        try:
            new = self.load(reloading=True)
            sha512 = new.sha512
            opened = await self.http.prepare(new.app.http)
            old_keys = [str(k) for k in server.listeners]
            try:
                await server.reload(new)
            except BaseException:
                await self.http.abort(opened)
                raise
        except Exception as err:  # noqa: BLE001 - any failure keeps the old configuration
            return ReloadResult(False, reason, at, time.monotonic() - started, error=str(err))
        self._commit(new)
        http = await self.http.commit(new.app.http, opened)
        new_keys = [str(k) for k in server.listeners]
        changed = sha512 != self.sha512
        self.sha512 = sha512
        return ReloadResult(
            True,
            reason,
            at,
            time.monotonic() - started,
            changed=changed,
            sha512=sha512,
            listeners=Change(
                added=tuple(k for k in new_keys if k not in old_keys),
                removed=tuple(k for k in old_keys if k not in new_keys),
                kept=tuple(k for k in new_keys if k in old_keys),
            ),
            http=http,
        )

    def _commit(self, config: Config) -> None:
        """``config`` serves now: its metric collectors and its ``reload`` settings apply."""
        if isinstance(config.app.metrics, Staging):
            config.app.metrics.commit()
        self._watch(config.app.reload)

    def _status(self) -> str:
        assert self.server is not None
        return "serving " + " ".join(str(key) for key in self.server.listeners)

    # --- the `reload` stage: watch the Corefile -----------------------------------------
    def _watch(self, spec: Any) -> None:
        if spec == self._watch_spec:
            return
        self._watch_spec = spec
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if spec is not None:
            self._watcher = asyncio.ensure_future(self._watch_loop(spec.interval, spec.jitter))

    async def _watch_loop(self, interval: float, jitter: float) -> None:
        # as CoreDNS: one random offset in [-jitter/2, +jitter/2) per configuration
        period = interval + random.uniform(-jitter / 2, jitter / 2)
        failed_error = ""
        while True:
            await asyncio.sleep(period)
            try:
                sha512 = self._sha512()
            except (CorefileError, OSError) as err:
                if str(err) != failed_error:  # log and count each broken version once
                    failed_error = str(err)
                    self.reload_failed.value += 1
                    log.error("reload_failed", reason="reload", error=failed_error)
                continue
            failed_error = ""
            if sha512 in (self.sha512, self._failed_sha512):
                continue
            result = await self.reload("reload")
            self._failed_sha512 = "" if result.ok else sha512

    # --- metrics ------------------------------------------------------------------------
    def _register_metrics(self) -> None:
        metrics = self.metrics
        metrics.gauge_func(
            "coredns_build_info",
            "A metric with a constant '1' value labeled by version, revision, and goversion "
            "from which CoreDNS was built.",
            ("version", "revision", "goversion"),
            lambda: [((__version__, build(), RUNTIME), 1)],
        )
        self.reload_failed: Child = metrics.counter(
            "coredns_reload_failed_total", "Counter of the number of failed reload attempts."
        ).labels()  # type: ignore[assignment]
        metrics.gauge_func(
            "coredns_reload_version_info",
            "A metric with a constant '1' value labeled by hash, and value which type of hash "
            "generated.",
            ("hash", "value"),
            lambda: [(("sha512", self.sha512), 1)] if self.sha512 else [],
        )


def _plugins_enabled(config: Config) -> list[tuple[tuple[str, ...], float]]:
    samples: dict[tuple[str, ...], float] = {}
    for key, zones in config.listeners.items():
        for zone, block in zones.items():
            zone_text = wire_to_text(zone)
            for plugin in block.plugins:
                samples[(str(key), zone_text, "", plugin.name)] = 1
    return list(samples.items())


# Every query allocates a few short-lived objects (request, response, coroutines); a query log
# keeps some of them for up to its flush interval, long enough to survive young collections.
GC_YOUNG_THRESHOLD = 20000


def tune_gc() -> None:
    """Make garbage collection cheap for a long-running server.

    The objects alive before the first configuration is loaded (modules, the plugins' module
    tables) live as long as the process: ``gc.freeze()`` takes them out of every later
    collection, so full collections no longer walk them (helper measurements: p99.9 latency
    with a query log from 20-30 ms to 4-11 ms). A larger young-generation threshold means
    fewer, equally cheap, young collections under load. Reference counting still frees almost
    everything at once; a replaced configuration, full of reference cycles, is collected by a
    later full collection, and its plugins let go of their large parts (a firewall's lists)
    when they stop, so its memory does not wait for that. No collection is forced on a
    reload: with a warm cache a full one holds the event loop for 60-180 ms.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
