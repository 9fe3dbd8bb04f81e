"""A real OTLP/HTTP receiver for tests: accepts what OpenTelemetry exporters POST to `/v1/traces` and
`/v1/metrics`, and decodes it with the official `opentelemetry-proto` messages.

Import as `otlp_receiver` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_MESSAGES = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


@dataclass
class Span:
    """A received span with the attributes of its resource and its own, as plain dicts."""

    resource: dict[str, Any]
    attributes: dict[str, Any]
    message: Any


class Receiver:
    """An OTLP/HTTP (protobuf) receiver on a free loopback port, keeping every request it decoded."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Any]] = {path: [] for path in _MESSAGES}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                messages = _MESSAGES.get(self.path)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if messages is None or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404 if messages is None else 415)
                    self.end_headers()
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request = messages[0].FromString(body)
                with receiver._lock:
                    receiver.requests[self.path].append(request)
                answer = messages[1]().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[Span]:
        """Every span received so far."""
        with self._lock:
            requests = list(self.requests["/v1/traces"])
        return [
            Span(attributes(rs.resource.attributes), attributes(span.attributes), span)
            for request in requests
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def latest_metrics(self) -> dict[str, dict[str, Any]]:
        """Per worker (`service.instance.id`), its newest export: the resource's attributes under
        "resource" and each metric (the proto message) by name."""
        with self._lock:
            requests = list(self.requests["/v1/metrics"])
        latest: dict[str, dict[str, Any]] = {}
        for request in requests:
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                entry = {"resource": resource}
                entry.update((m.name, m) for sm in rm.scope_metrics for m in sm.metrics)
                latest[resource["service.instance.id"]] = entry
        return latest


class SilentCollector:
    """A collector on a free loopback port that accepts connections and never answers them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.connections.append(self.listener.accept()[0])
            except OSError:  # closed
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP KeyValue pairs as a dict of plain values."""
    return {kv.key: _value(kv.value) for kv in pairs}


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


def points(metric: Any) -> Iterator[Any]:
    """The data points of a metric message, whatever its kind (sum, gauge, histogram)."""
    yield from getattr(metric, metric.WhichOneof("data")).data_points
