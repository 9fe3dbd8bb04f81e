"""In-process serving metrics of one model server, exposed in the Prometheus text format.

Cheap enough for the request path: a request adds to a few plain integers and two preallocated
bucket lists (a bisect each), on the event loop's thread, with no lock and no object made. The
Prometheus families (`registry`, for `/metrics`, the supervisor's pull and OpenTelemetry) are built
from those numbers only when read, with the same names, labels and samples `prometheus_client`'s
own Counter, Histogram and Gauge would give.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

#: scikit-learn answers in well under 5 ms, so the buckets start at 100 µs.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Tally:
    """A histogram's state: a count per bucket (the last one +Inf, not cumulative), and the sum.

    Meant for one thread (the event loop's); a reader in another thread sees each number whole."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count one value in the first bucket whose bound is at least `value` (Prometheus' `le`)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class Level:
    """A gauge of requests being answered now (plain integer, event loop's thread)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class ServingMetrics:
    """Requests by status code, latency, in-flight requests and rows per request of one version."""

    def __init__(self, model: str, version: int) -> None:
        self._labels = {"model": model, "version": str(version)}
        self._codes: dict[int, int] = {}
        self._code_created: dict[int, float] = {}
        self.latency = Tally(LATENCY_BUCKETS)
        self.rows = Tally(ROW_BUCKETS)
        self.batch_rows = Tally(ROW_BUCKETS)
        self.in_flight = Level()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def observe(self, code: int, seconds: float, rows: int) -> None:
        """Record one answered prediction request."""
        codes = self._codes
        if code in codes:
            codes[code] += 1
        else:
            self._code_created[code] = time.time()
            codes[code] = 1
        latency = self.latency
        latency.counts[bisect_left(latency.bounds, seconds)] += 1
        latency.sum += seconds
        if rows:
            self.rows.observe(rows)

    def families(self) -> Iterator[Metric]:
        """The metrics as Prometheus families (what `prometheus_client`'s own metrics would give)."""
        labels = self._labels
        requests = Metric("modeldeck_requests", "Prediction requests by HTTP status code.", "counter")
        for code, count in list(self._codes.items()):
            coded = {**labels, "code": str(code)}
            requests.add_sample("modeldeck_requests_total", coded, float(count))
            requests.add_sample("modeldeck_requests_created", coded, self._code_created[code])
        yield requests
        yield _histogram(
            "modeldeck_request_duration_seconds", "Time to answer a prediction request.", labels, self.latency
        )
        yield _histogram("modeldeck_request_rows", "Rows per prediction request.", labels, self.rows)
        yield _histogram(
            "modeldeck_model_call_rows",
            "Rows per call of the model (more than a request's when micro-batching joins requests).",
            labels,
            self.batch_rows,
        )
        gauge = Metric("modeldeck_requests_in_flight", "Prediction requests being answered now.", "gauge")
        gauge.add_sample("modeldeck_requests_in_flight", labels, float(self.in_flight.value))
        yield gauge

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counts for the supervisor's pull: requests by code, latency and row histograms
        (cumulative bucket counts, as Prometheus keeps them), in-flight requests."""
        result: dict[str, Any] = {
            "requests": {str(code): float(count) for code, count in list(self._codes.items())},
            "in_flight": float(self.in_flight.value),
        }
        tallies = (
            ("modeldeck_request_duration_seconds", self.latency),
            ("modeldeck_request_rows", self.rows),
            ("modeldeck_model_call_rows", self.batch_rows),
        )
        for name, tally in tallies:
            buckets, total = _cumulative(tally.counts)
            result[name] = {"buckets": buckets, "count": total, "sum": tally.sum}
        return result

    def exposition(self) -> bytes:
        """All metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _Collector:
    """Hands a `ServingMetrics`' families to its registry when read."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


def _cumulative(counts: list[int]) -> tuple[list[float], float]:
    """Cumulative bucket counts (the last is +Inf, the total) from per-bucket counts."""
    buckets, running = [], 0
    for count in list(counts):
        running += count
        buckets.append(float(running))
    return buckets, float(running)


def _histogram(name: str, documentation: str, labels: dict[str, str], tally: Tally) -> Metric:
    family = Metric(name, documentation, "histogram")
    buckets, total = _cumulative(tally.counts)
    for bound, count in zip((*tally.bounds, float("inf")), buckets, strict=True):
        family.add_sample(f"{name}_bucket", {**labels, "le": floatToGoString(bound)}, count)
    family.add_sample(f"{name}_count", labels, total)
    family.add_sample(f"{name}_sum", labels, tally.sum)
    family.add_sample(f"{name}_created", labels, tally.created)
    return family
