"""A small metrics registry the core gives every plugin.

Plugins create counters, gauges and histograms here with CoreDNS's names (namespace
``coredns``, subsystem = plugin name) and bump them on the hot path with plain attribute
arithmetic (``child.value += 1``): no locks, no label lookups per query when the plugin keeps
the child it needs. The ``prometheus`` stage exposes the registry through prometheus-client
(:func:`exposition`: text format 0.0.4 or OpenMetrics, plus the ``process_*`` metrics CoreDNS's
dashboards read); the admin API reads values from it.

**Across reloads.** ``dnsfw run`` keeps one process-wide :class:`Registry` and sets up each
configuration against a :class:`Staging` view of it (:meth:`Registry.stage`). Families and
their labelled children live in the process registry, so a plugin of the new configuration
that asks for ``counter(NAME).labels(...)`` gets the very child the old one bumped: no reset.
Collectors (``gauge_func``) are held back by the view until :meth:`Staging.commit`, which the
runtime calls when the new configuration replaces the old one (a failed reload commits
nothing). At that moment a ``kind="counter"`` collector of the old configuration is *retired*:
it is still summed in, so the queries the old chain finishes keep counting, until
:meth:`Registry.settle` (after the old plugins stopped) folds its last values into a constant
base. A gauge collector is simply replaced. A counter collector that reads process-lifetime
totals must therefore be the same callable each time (a module-level function), else it would
be counted twice.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import exposition as prom_exposition
from prometheus_client import metrics_core as prom_core
from prometheus_client.registry import CollectorRegistry

Collect = Callable[[], Iterable[tuple[tuple[str, ...], float]]]

# CoreDNS's request-duration buckets: 0.25 ms * 2^k up to about 8 s
DURATION_BUCKETS = tuple(0.00025 * 2**k for k in range(16))


class Child:
    """One labelled time series of a counter or gauge."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def set(self, value: float) -> None:
        self.value = value


class HistogramChild:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1


class Metric:
    """A named family of series keyed by label values."""

    def __init__(
        self, kind: str, name: str, help: str, labels: tuple[str, ...], buckets=()
    ) -> None:
        self.kind = kind
        self.name = name
        self.help = help
        self.labelnames = labels
        self.buckets = tuple(buckets)
        self.series: dict[tuple[str, ...], Child | HistogramChild] = {}
        self.collect: Collect | None = None
        self.owner: Staging | None = None  # the configuration whose collector this is
        self.retired: list[Collect] = []  # counter collectors of replaced configurations
        self.carried: dict[tuple[str, ...], float] = {}  # their final values

    def labels(self, *values: str) -> Child | HistogramChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
        child = self.series.get(values)
        if child is None:
            child = HistogramChild(self.buckets) if self.kind == "histogram" else Child()
            self.series[values] = child
        return child

    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)  # type: ignore[union-attr]

    def set(self, value: float) -> None:
        self.labels().set(value)  # type: ignore[union-attr]

    def value(self, *values: str) -> float:
        """Current value of a counter/gauge series (0 when it never moved)."""
        if self.collect is not None or self.retired or self.carried:
            return dict(self.samples()).get(values, 0)  # type: ignore[return-value]
        child = self.series.get(values)
        return child.value if isinstance(child, Child) else 0

    def samples(self) -> Iterable[tuple[tuple[str, ...], Child | HistogramChild | float]]:
        if not (self.retired or self.carried):
            return list(self.collect()) if self.collect is not None else list(self.series.items())
        totals = dict(self.carried)
        for collect in (*self.retired, self.collect):
            for values, value in collect() if collect is not None else ():
                totals[values] = totals.get(values, 0) + value
        return list(totals.items())

    def install(self, collect: Collect | None, owner: Staging | None) -> None:
        """Read the series from ``collect`` from now on (see the module docstring)."""
        old = self.collect
        if self.kind == "counter" and old is not None and old is not collect:
            self.retired.append(old)
        self.collect = collect
        self.owner = owner

    def settle(self) -> None:
        """Fold the retired collectors' final values into the constant base."""
        for collect in self.retired:
            for values, value in collect():
                self.carried[values] = self.carried.get(values, 0) + value
        self.retired.clear()


class Registry:
    """All metrics of the process (``dnsfw run``) or of one configuration (``dnsfw check``, tests)."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def _get(self, kind: str, name: str, help: str, labels: Iterable[str], buckets=()) -> Metric:
        labels = tuple(labels)
        metric = self.metrics.get(name)
        if metric is None:
            metric = Metric(kind, name, help, labels, buckets)
            self.metrics[name] = metric
        elif metric.kind != kind or metric.labelnames != labels:
            raise ValueError(f"metric {name} registered twice with different shapes")
        return metric

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Metric:
        return self._get("counter", name, help, labels)

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Metric:
        return self._get("gauge", name, help, labels)

    def gauge_func(
        self,
        name: str,
        help: str,
        labels: Iterable[str],
        collect: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
        kind: str = "gauge",
    ) -> Metric:
        """A series read from ``collect()`` at scrape time (a cache's size, or a counter a
        plugin keeps as a plain int on its hot path: pass ``kind="counter"``)."""
        metric = self._get(kind, name, help, labels)
        metric.collect = collect
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labels: Iterable[str] = (),
        buckets: Iterable[float] = DURATION_BUCKETS,
    ) -> Metric:
        return self._get("histogram", name, help, labels, buckets)

    def stage(self) -> Staging:
        """A view for setting up one configuration against this registry."""
        return Staging(self)

    def settle(self) -> None:
        """After a replaced configuration's plugins stopped: freeze what they counted."""
        for metric in self.metrics.values():
            if metric.retired:
                metric.settle()

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        for metric in sorted(self.metrics.values(), key=lambda m: m.name):
            out.append(f"# HELP {metric.name} {metric.help}")
            out.append(f"# TYPE {metric.name} {metric.kind}")
            for values, child in metric.samples():
                labels = _labels(metric.labelnames, values)
                if isinstance(child, HistogramChild):
                    running = 0
                    for bound, count in zip(child.buckets, child.counts, strict=True):
                        running += count
                        le = _labels((*metric.labelnames, "le"), (*values, _num(bound)))
                        out.append(f"{metric.name}_bucket{le} {running}")
                    inf = _labels((*metric.labelnames, "le"), (*values, "+Inf"))
                    out.append(f"{metric.name}_bucket{inf} {child.count}")
                    out.append(f"{metric.name}_sum{labels} {_num(child.sum)}")
                    out.append(f"{metric.name}_count{labels} {child.count}")
                else:
                    value = child.value if isinstance(child, Child) else child
                    out.append(f"{metric.name}{labels} {_num(value)}")
        return "\n".join(out) + "\n"


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    body = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + body + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


class Staging(Registry):
    """One configuration's view of the process registry: families and children are the
    process registry's; ``gauge_func`` collectors wait for :meth:`commit`."""

    def __init__(self, base: Registry) -> None:
        self.base = base
        self.metrics = base.metrics
        self.pending: dict[str, tuple[Metric, Collect]] = {}

    def _get(self, kind: str, name: str, help: str, labels: Iterable[str], buckets=()) -> Metric:
        return self.base._get(kind, name, help, labels, buckets)

    def gauge_func(
        self,
        name: str,
        help: str,
        labels: Iterable[str],
        collect: Collect,
        kind: str = "gauge",
    ) -> Metric:
        metric = self._get(kind, name, help, labels)
        self.pending[name] = (metric, collect)  # the last registration wins, as in Registry
        return metric

    def commit(self) -> None:
        """This configuration now serves: its collectors replace the previous configuration's,
        whose collectors this one does not replace are retired (counters) or dropped (gauges)."""
        for metric in self.base.metrics.values():
            owner = metric.owner
            if owner is not None and owner is not self and metric.name not in self.pending:
                metric.install(None, None)
        for metric, collect in self.pending.values():
            metric.install(collect, self)


class _Bridge:
    """Presents a :class:`Registry` to prometheus-client as a collector."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[prom_core.Metric]:
        for metric in sorted(self.registry.metrics.values(), key=lambda m: m.name):
            family = _family(metric)
            for values, child in metric.samples():
                if isinstance(child, HistogramChild):
                    running = 0
                    buckets = []
                    for bound, count in zip(child.buckets, child.counts, strict=True):
                        running += count
                        buckets.append((_num(bound), running))
                    buckets.append(("+Inf", child.count))
                    family.add_metric(list(values), buckets, child.sum)  # type: ignore[call-arg]
                else:
                    value = child.value if isinstance(child, Child) else child
                    family.add_metric(list(values), value)  # type: ignore[call-arg]
            yield family


def _family(metric: Metric) -> prom_core.Metric:
    labels = list(metric.labelnames)
    if metric.kind == "histogram":
        return prom_core.HistogramMetricFamily(metric.name, metric.help, labels=labels)
    if metric.kind == "counter" and metric.name.endswith("_total"):
        # prometheus-client names the family without the suffix and adds it to the samples
        return prom_core.CounterMetricFamily(metric.name[:-6], metric.help, labels=labels)
    if metric.kind == "gauge":
        return prom_core.GaugeMetricFamily(metric.name, metric.help, labels=labels)
    return prom_core.UnknownMetricFamily(metric.name, metric.help, labels=labels)


def exposition_registry(registry: Registry) -> CollectorRegistry:
    """A prometheus-client registry with ``registry`` and the process collectors
    (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ... as CoreDNS has)."""
    from prometheus_client import gc_collector, platform_collector, process_collector

    exposed = CollectorRegistry(auto_describe=False)
    exposed.register(_Bridge(registry))  # type: ignore[arg-type]
    process_collector.ProcessCollector(registry=exposed)
    platform_collector.PlatformCollector(registry=exposed)
    gc_collector.GCCollector(registry=exposed)
    return exposed


def exposition(exposed: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type for a request's ``Accept`` header."""
    encoder, content_type = prom_exposition.choose_encoder(accept or "")
    return encoder(exposed), content_type
