"""In-process serving metrics of one model server, exposed in the Prometheus text format.

Cheap enough for the request path: label children are created once and cached, so a request
costs a few counter increments and one histogram observation.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: scikit-learn answers in well under 5 ms, so the buckets start at 100 µs.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Requests by status code, latency, in-flight requests and rows per request of one version."""

    def __init__(self, model: str, version: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"model": model, "version": str(version)}
        self._requests = Counter(
            "modeldeck_requests",
            "Prediction requests by HTTP status code.",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self._labels = labels
        self._by_code: dict[int, Counter] = {}
        self.latency = Histogram(
            "modeldeck_request_duration_seconds",
            "Time to answer a prediction request.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.rows = Histogram(
            "modeldeck_request_rows",
            "Rows per prediction request.",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.batch_rows = Histogram(
            "modeldeck_model_call_rows",
            "Rows per call of the model (more than a request's when micro-batching joins requests).",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.in_flight = Gauge(
            "modeldeck_requests_in_flight",
            "Prediction requests being answered now.",
            ["model", "version"],
            registry=self.registry,
        ).labels(**labels)

    def observe(self, code: int, seconds: float, rows: int) -> None:
        """Record one answered prediction request."""
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._requests.labels(**self._labels, code=str(code))
        counter.inc()
        self.latency.observe(seconds)
        if rows:
            self.rows.observe(rows)

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counts for the supervisor's pull: requests by code, latency and row histograms
        (cumulative bucket counts, as Prometheus keeps them), in-flight requests."""
        result: dict[str, Any] = {"requests": {}, "in_flight": 0.0}
        for family in self.registry.collect():
            for sample in family.samples:
                name, value = sample.name, sample.value
                if name == "modeldeck_requests_total":
                    result["requests"][sample.labels["code"]] = value
                elif name == "modeldeck_requests_in_flight":
                    result["in_flight"] = value
                elif name.endswith("_bucket"):
                    result.setdefault(name[: -len("_bucket")], {}).setdefault("buckets", []).append(value)
                elif name.endswith(("_sum", "_count")) and not name.endswith("_created"):
                    stem, _, part = name.rpartition("_")
                    result.setdefault(stem, {})[part] = value
        return result

    def exposition(self) -> bytes:
        """All metrics in the Prometheus text format."""
        return generate_latest(self.registry)
