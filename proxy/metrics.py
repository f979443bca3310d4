"""A small metrics registry the core gives every plugin.

Plugins create counters, gauges and histograms here with CoreDNS's names (namespace
``coredns``, subsystem = plugin name) and bump them on the hot path with plain attribute
arithmetic (``child.value += 1``): no locks, no label lookups per query when the plugin keeps
the child it needs. The ``prometheus`` stage renders the registry in the Prometheus text
format; the admin API reads values from it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

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
        self.collect: Callable[[], Iterable[tuple[tuple[str, ...], float]]] | None = None

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
        if self.collect is not None:
            return dict(self.collect()).get(values, 0)
        child = self.series.get(values)
        return child.value if isinstance(child, Child) else 0

    def samples(self) -> Iterable[tuple[tuple[str, ...], Child | HistogramChild | float]]:
        if self.collect is not None:
            return list(self.collect())
        return list(self.series.items())


class Registry:
    """All metrics of one running configuration, by name."""

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
