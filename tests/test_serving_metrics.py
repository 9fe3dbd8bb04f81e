"""The request path's metrics (plain counters and bucket lists) against prometheus_client's own
Counter, Histogram and Gauge fed the same observations: the same exposition and snapshot."""

from __future__ import annotations

import random
import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from registry.monitoring.metrics import LATENCY_BUCKETS, ROW_BUCKETS, ServingMetrics
from registry.monitoring.sampling import InputSampler


class Reference:
    """What ServingMetrics kept before: prometheus_client's metrics, one label child each."""

    def __init__(self, model: str, version: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"model": model, "version": str(version)}
        self.requests = Counter(
            "modeldeck_requests",
            "Prediction requests by HTTP status code.",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.labels = labels

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            family = Histogram(name, doc, ["model", "version"], buckets=buckets, registry=self.registry)
            return family.labels(**labels)

        self.latency = histogram(
            "modeldeck_request_duration_seconds", "Time to answer a prediction request.", LATENCY_BUCKETS
        )
        self.rows = histogram("modeldeck_request_rows", "Rows per prediction request.", ROW_BUCKETS)
        self.batch_rows = histogram(
            "modeldeck_model_call_rows",
            "Rows per call of the model (more than a request's when micro-batching joins requests).",
            ROW_BUCKETS,
        )
        self.in_flight = Gauge(
            "modeldeck_requests_in_flight",
            "Prediction requests being answered now.",
            ["model", "version"],
            registry=self.registry,
        ).labels(**labels)

    def observe(self, code: int, seconds: float, rows: int) -> None:
        self.requests.labels(**self.labels, code=str(code)).inc()
        self.latency.observe(seconds)
        if rows:
            self.rows.observe(rows)


def _timeless(text: bytes) -> str:
    """The exposition with the `_created` timestamps blanked (they are clock readings)."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text.decode())


def test_metrics_match_prometheus_client_on_bucket_edges_and_random_values() -> None:
    ours, reference = ServingMetrics("iris", 3), Reference("iris", 3)
    rng = random.Random(7)
    edges = [*LATENCY_BUCKETS, 0.0, 3.0, 1e-9]
    for i in range(3000):
        code = rng.choice([200, 200, 200, 400, 422, 500, 503])
        seconds = edges[i % len(edges)] if i % 3 == 0 else rng.random() * rng.choice([0.001, 0.1, 5.0])
        rows = rng.choice([0, 1, 2, 5, 6, 100, 10000, 10001])
        for metrics in (ours, reference):
            metrics.observe(code, seconds, rows)
            metrics.batch_rows.observe(rows + 1)
            metrics.in_flight.inc()
        if i % 2:
            ours.in_flight.dec()
            reference.in_flight.dec()
    assert _timeless(ours.exposition()) == _timeless(generate_latest(reference.registry))
    assert ours.snapshot() == _registry_snapshot(reference.registry)


def test_fresh_metrics_have_empty_histograms_and_no_request_counts() -> None:
    ours, reference = ServingMetrics("m", 1), Reference("m", 1)
    assert _timeless(ours.exposition()) == _timeless(generate_latest(reference.registry))
    snapshot = ours.snapshot()
    assert snapshot["requests"] == {} and snapshot["in_flight"] == 0.0
    assert snapshot["modeldeck_request_duration_seconds"]["buckets"] == [0.0] * (len(LATENCY_BUCKETS) + 1)


def _registry_snapshot(registry: CollectorRegistry) -> dict:
    """The supervisor's snapshot read the way ServingMetrics read it from prometheus_client."""
    result: dict = {"requests": {}, "in_flight": 0.0}
    for family in registry.collect():
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


def test_sampler_keeps_single_rows_and_at_most_per_request_of_a_batch_in_order() -> None:
    sampler = InputSampler(capacity=100, per_request=3, seed=1)
    sampler.add([[1.0]], ["a"])
    sampler.add([[2.0], [3.0]], ["b", "c"])
    sampler.add([[float(i)] for i in range(10, 20)], list(range(10, 20)))
    cursor, rows, predictions = sampler.since(0)
    assert cursor == 6
    assert rows[:3] == [[1.0], [2.0], [3.0]] and predictions[:3] == ["a", "b", "c"]
    batch = predictions[3:]
    assert len(batch) == 3 and batch == sorted(batch) and all(10 <= p < 20 for p in batch)
    assert [[float(p)] for p in batch] == rows[3:]
