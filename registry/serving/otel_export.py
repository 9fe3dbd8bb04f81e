"""OpenTelemetry export of one model server over OTLP/HTTP: a span per prediction request, and the
server's Prometheus metrics as OTLP metrics.

Imported only when export is on (`registry.serving.telemetry.start`). Spans go through the SDK's
batch processor and metrics through a thread of their own, so a slow or dead collector never
touches the request path. The metrics are read from the server's own `ServingMetrics` registry
when exported: a request is counted once, for Prometheus and OTLP alike.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from registry.serving.telemetry import Targets

SCOPE = "modeldeck.serving"
OK = "ok"
CUMULATIVE = AggregationTemporality.CUMULATIVE
log = logging.getLogger("modeldeck.worker")
#: At exit, how long what is left may take to export, both signals together (a dead or silent collector
#: must not hold a worker's exit up).
EXIT_MILLIS = 2000


class Telemetry:
    """The spans and metrics exporters of one model server (one worker process)."""

    def __init__(self, targets: Targets, *, deployment: str, model: str, version: int) -> None:
        self.resource = server_resource(deployment, model, version)
        self._common = {
            "modeldeck.deployment": deployment,
            "modeldeck.model": model,
            "modeldeck.version": version,
        }
        self._provider: TracerProvider | None = None
        self._tracer: Any = None
        if targets.traces is not None:
            self._provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
            self._span_exporter = OTLPSpanExporter(endpoint=targets.traces or None)
            self._provider.add_span_processor(BatchSpanProcessor(self._span_exporter))
            self._tracer = self._provider.get_tracer(SCOPE, _release())
        self._metrics_endpoint = targets.metrics
        self._bridge: MetricsBridge | None = None
        atexit.register(self.shutdown)

    def watch(self, registry: CollectorRegistry) -> None:
        """Export the metrics of `registry` (the server's Prometheus registry) periodically."""
        if self._metrics_endpoint is not None and self._bridge is None:
            exporter = OTLPMetricExporter(endpoint=self._metrics_endpoint or None)
            self._bridge = MetricsBridge(registry, exporter, self.resource)

    def record(self, request: Request, status: int, rows: int, outcome: str, start: float) -> None:
        """One SERVER span for an answered prediction request that started at `start`
        (`time.perf_counter()`), continuing the caller's trace if it sent a `traceparent`."""
        if self._tracer is None:
            return
        end = time.time_ns()
        scope = request.scope
        path = scope["path"]
        route = getattr(scope.get("route"), "path", path)
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "url.scheme": scope.get("scheme", "http"),
            "http.response.status_code": status,
            **self._common,
            "modeldeck.rows": rows,
            "modeldeck.validation": outcome,
        }
        if status >= 500:
            attributes["error.type"] = outcome if outcome != OK else str(status)
        span = self._tracer.start_span(
            f"{method} {route}",
            context=extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=end - int((time.perf_counter() - start) * 1e9),
        )
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Export what is left and stop, returning after EXIT_MILLIS at most: the export goes on in a
        daemon thread, which the process's exit ends (an HTTP POST in flight is not interruptible, and
        the SDK's own shutdown waits for its timeout and every retry)."""
        bridge, provider = self._bridge, self._provider
        self._bridge = self._provider = None
        if bridge is None and provider is None:
            return

        def finish() -> None:
            if bridge is not None:
                bridge.shutdown()
            if provider is not None:
                provider.shutdown()

        last = threading.Thread(target=finish, name="modeldeck-otlp-shutdown", daemon=True)
        last.start()
        last.join(EXIT_MILLIS / 1000)
        if last.is_alive():
            log.warning("OpenTelemetry: what was left unexported after %d ms is dropped", EXIT_MILLIS)


class MetricsBridge:
    """Exports a Prometheus registry as OTLP metrics every `OTEL_METRIC_EXPORT_INTERVAL` ms (cumulative,
    the same names, labels and histogram buckets as `/metrics`), from a thread of its own."""

    def __init__(self, registry: CollectorRegistry, exporter: OTLPMetricExporter, resource: Resource) -> None:
        self.registry, self.exporter, self.resource = registry, exporter, resource
        self.interval = _env_millis(OTEL_METRIC_EXPORT_INTERVAL, 60_000) / 1000
        self.timeout = _env_millis(OTEL_METRIC_EXPORT_TIMEOUT, 30_000)
        self.started = time.time_ns()
        self.scope = InstrumentationScope(SCOPE, _release())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modeldeck-otlp-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stopped = False
        while not stopped:
            stopped = self._stop.wait(self.interval)
            try:
                self.export()  # the last round too, once stopped
            except Exception:  # never let one bad export end the exports
                log.exception("OTLP metrics export failed")

    def export(self) -> None:
        """Send the registry's current values once."""
        metrics = list(otlp_metrics(self.registry, self.started, time.time_ns()))
        if metrics:
            scope_metrics = ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")
            data = MetricsData([ResourceMetrics(self.resource, [scope_metrics], schema_url="")])
            self.exporter.export(data, timeout_millis=self.timeout)

    def shutdown(self) -> None:
        """Stop after a last export (as long as it takes: `Telemetry.shutdown` bounds it)."""
        self._stop.set()
        self._thread.join()
        self.exporter.shutdown()


def otlp_metrics(registry: CollectorRegistry, started: int, now: int) -> Iterator[Metric]:
    """The registry's counters, gauges and histograms as OTLP metrics (cumulative since their
    `_created` time, else since `started`; time in ns)."""
    for family in registry.collect():
        created = {_key(s.labels): int(s.value * 1e9) for s in family.samples if s.name.endswith("_created")}
        unit = "s" if family.name.endswith("_seconds") else ""
        data: Any
        if family.type == "counter":
            points = [
                NumberDataPoint(s.labels, created.get(_key(s.labels), started), now, s.value)
                for s in family.samples
                if s.name == family.name + "_total"
            ]
            data = Sum(points, CUMULATIVE, is_monotonic=True)
        elif family.type == "gauge":
            data = Gauge([NumberDataPoint(s.labels, started, now, s.value) for s in family.samples])
        elif family.type == "histogram":
            data = Histogram(list(_histogram_points(family.samples, created, started, now)), CUMULATIVE)
        else:
            continue
        if data.data_points:
            yield Metric(family.name, family.documentation, unit, data)


def _histogram_points(
    samples: list[Any], created: dict[tuple[Any, ...], int], started: int, now: int
) -> Iterator[HistogramDataPoint]:
    """One point per label set: Prometheus' cumulative `le` buckets turned into OTLP's per-bucket counts."""
    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(_key(labels), {"labels": labels, "buckets": [], "count": 0, "sum": 0.0})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = int(s.value)
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    for key, entry in series.items():
        buckets = sorted(entry["buckets"])
        cumulative = [int(count) for _, count in buckets]
        counts = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
        yield HistogramDataPoint(
            attributes=entry["labels"],
            start_time_unix_nano=created.get(key, started),
            time_unix_nano=now,
            count=entry["count"],
            sum=entry["sum"],
            bucket_counts=counts,
            explicit_bounds=[bound for bound, _ in buckets if bound != float("inf")],
            # Prometheus keeps no min or max: left out of the message (optional fields; the hints say float).
            min=None,  # type: ignore[arg-type]
            max=None,  # type: ignore[arg-type]
        )


def server_resource(deployment: str, model: str, version: int) -> Resource:
    """service.name (the deployment), service.instance.id (this worker), service.version (the model
    version) and the model; what `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` set wins."""
    host, pid = socket.gethostname(), os.getpid()
    ours: dict[str, str | int] = {
        "service.name": deployment,
        "service.instance.id": f"{deployment}@{host}:{pid}",
        "service.version": str(version),
        "modeldeck.deployment": deployment,
        "modeldeck.model": model,
        "host.name": host,
        "process.pid": pid,
    }
    given = OTELResourceDetector().detect().attributes
    return Resource.create({key: value for key, value in ours.items() if key not in given})


def _key(labels: dict[str, str]) -> tuple[Any, ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _env_millis(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def _release() -> str:
    try:
        return package_version("modeldeck")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"
