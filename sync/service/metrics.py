"""A tiny Prometheus registry: counters, gauges and histograms with labels, rendered in the
text exposition format (version 0.0.4) by ``GET /metrics``.

Other components increment the shared metrics of :data:`REGISTRY` directly, e.g.
``metrics.PUSHES.inc(destination="hubspot", status="applied")``; they are process-wide and
thread-safe. Gauges that describe the store (inbox depth, lag) are set by the app just before
rendering. ``segsync serve`` runs its HTTP front end in a process of its own
(:mod:`sync.service.front`): the front end counts deliveries and acknowledgements, the main
process everything else, and ``GET /metrics`` shows both — the front end asks the main process
for its :meth:`Registry.snapshot` and renders it with its own samples
(:meth:`Registry.render` ``extra``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence

__all__ = ["REGISTRY", "Counter", "Gauge", "Histogram", "Registry"]

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def _label_text(self, key: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = [*zip(self.labelnames, key, strict=True), *extra]
        if not pairs:
            return ""
        return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in pairs) + "}"

    def samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self.samples()]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._label_text(k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(_Metric):
    kind = "histogram"
    DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = (*sorted(buckets), math.inf)
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            counts = self._counts.get(self._key(labels))
        return counts[-1] if counts else 0

    def samples(self) -> list[str]:
        out: list[str] = []
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            for bound, n in zip(self.buckets, counts, strict=True):
                out.append(f"{self.name}_bucket{self._label_text(key, (('le', _number(bound)),))} {n}")
            out.append(f"{self.name}_sum{self._label_text(key)} {_number(total)}")
            out.append(f"{self.name}_count{self._label_text(key)} {counts[-1]}")
        return out


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _Metric) -> None:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help_text, labelnames)
        self._add(metric)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help_text, labelnames)
        self._add(metric)
        return metric

    def histogram(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> Histogram:
        metric = Histogram(name, help_text, labelnames, buckets)
        self._add(metric)
        return metric

    def snapshot(self) -> dict[str, list[str]]:
        """Every metric's sample lines (for another process's :meth:`render`)."""
        with self._lock:
            metrics = list(self._metrics.values())
        return {m.name: m.samples() for m in metrics}

    def render(self, extra: Mapping[str, Sequence[str]] | None = None) -> str:
        """The exposition text; ``extra`` adds sample lines (another process's snapshot) to
        the metrics of the same name."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines += m.render()
            lines += (extra or {}).get(m.name, ())
        return "\n".join(lines) + "\n"


REGISTRY = Registry()

DELIVERIES = REGISTRY.counter(
    "segsync_deliveries_total", "requests received, by source and outcome "
    "(accepted, rejected_signature, rejected_auth, malformed, too_large, unavailable)",
    ("source", "status"))
INBOX_ITEMS = REGISTRY.counter(
    "segsync_inbox_items_total", "items of accepted requests, by source and result (new, duplicate)",
    ("source", "result"))
ACK_SECONDS = REGISTRY.histogram(
    "segsync_ack_seconds", "time from request received to acknowledgement (after commit)", ("source",))
PROCESSED = REGISTRY.counter(
    "segsync_inbox_processed_total", "inbox items applied to the store, by source and outcome",
    ("source", "outcome"))
QUEUE_DEPTH = REGISTRY.gauge("segsync_inbox_queue_depth", "inbox items not applied yet")
LAG_SECONDS = REGISTRY.gauge("segsync_inbox_lag_seconds", "age of the oldest inbox item not applied yet")
PUSHES = REGISTRY.counter("segsync_pushes_total", "changes pushed, by destination and status",
                          ("destination", "status"))
RETRIES = REGISTRY.counter("segsync_push_retries_total", "push attempts that were retries",
                           ("destination",))
RATE_LIMITED = REGISTRY.counter("segsync_rate_limited_total", "429 responses received",
                                ("destination",))
SEGMENT_SIZE = REGISTRY.gauge("segsync_segment_size", "members per segment at the last evaluation",
                              ("segment",))
