"""OpenTelemetry export (opt-in) as a collector sees it: real model servers (`modeldeck serve`, and a
supervised deployment with two workers) exporting over OTLP/HTTP to a real receiver that decodes
what arrives with the official `opentelemetry-proto` messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import free_port, stop_supervisor, wait_until
from oip_servers import start_server, wait_ready
from otlp_receiver import Receiver, SilentCollector, points
from payload_models import AppClient, create_model_app, register_models

from registry.monitoring.metrics import LATENCY_BUCKETS
from registry.serving.client import SupervisorClient

ROW = [5.1, 3.5, 1.4, 0.2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
#: Export every 50 ms (spans) and 200 ms (metrics), so the test waits little.
FAST = {"OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "200"}
SERVER = 2  # Span.SpanKind.SPAN_KIND_SERVER
ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("otel")
    register_models(home, only=("iris",))
    return home


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("MODELDECK_DB_URL", None)
    return {**env, "MODELDECK_HOME": str(home), **FAST, **extra}


def _send(url: str) -> dict[str, int]:
    """Three good requests (one continuing a trace, one over OIP v2) and one with a bad row; the
    number of answers by status code."""
    parent = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    answers = [
        httpx.post(f"{url}/invocations", json={"inputs": [ROW, ROW]}, timeout=10),
        httpx.post(f"{url}/invocations", json={"inputs": [ROW]}, headers=parent, timeout=10),
        httpx.post(
            f"{url}/v2/models/iris/infer",
            json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]},
            timeout=10,
        ),
        httpx.post(f"{url}/invocations", json={"inputs": [[1.0, 2.0]]}, timeout=10),
    ]
    codes: dict[str, int] = {}
    for answer in answers:
        codes[str(answer.status_code)] = codes.get(str(answer.status_code), 0) + 1
    return codes


def test_serve_exports_a_span_per_request_continuing_the_callers_trace(
    home: Path, receiver: Receiver
) -> None:
    env = _env(
        home,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,  # the standard variable alone turns export on
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test",
    )
    server = start_server(env, home / "serve.log", "iris")
    try:
        wait_ready(server)
        assert _send(server.url) == {"200": 3, "422": 1}
        spans = wait_until(lambda: len(receiver.spans()) >= 4 and receiver.spans(), what="4 spans")
    finally:
        server.process.terminate()
        server.process.wait(30)
    assert len(spans) == 4
    by_path = sorted(spans, key=lambda s: (s.attributes["url.path"], s.attributes["modeldeck.rows"]))
    bad, one, two, v2 = by_path
    for span in spans:
        assert span.message.kind == SERVER
        assert span.attributes["http.request.method"] == "POST"
        assert span.attributes["modeldeck.deployment"] == "iris"
        assert span.attributes["modeldeck.model"] == "iris"
        assert span.attributes["modeldeck.version"] == 1
        assert span.message.end_time_unix_nano > span.message.start_time_unix_nano
        assert span.resource["service.name"] == "iris"
        assert span.resource["service.version"] == "1"
        assert span.resource["modeldeck.model"] == "iris"
        assert span.resource["deployment.environment.name"] == "test"
    assert (one.attributes["modeldeck.rows"], two.attributes["modeldeck.rows"]) == (1, 2)
    assert one.message.trace_id.hex() == TRACE_ID and one.message.parent_span_id.hex() == PARENT_ID
    assert two.message.trace_id.hex() != TRACE_ID and not two.message.parent_span_id
    assert one.message.name == "POST /invocations"
    assert v2.message.name == "POST /v2/models/{name}/infer"
    assert v2.attributes["http.route"] == "/v2/models/{name}/infer"
    assert v2.attributes["url.path"] == "/v2/models/iris/infer"
    assert [s.attributes["modeldeck.validation"] for s in (one, two, v2)] == ["ok"] * 3
    assert [s.attributes["http.response.status_code"] for s in (one, two, v2)] == [200] * 3
    assert bad.attributes["http.response.status_code"] == 422
    assert bad.attributes["modeldeck.validation"] == "schema_mismatch"
    assert bad.attributes["modeldeck.rows"] == 0
    assert bad.message.status.code != ERROR  # a client's mistake is not a server error


@pytest.mark.slow
def test_a_supervised_deployment_exports_each_workers_metrics(home: Path, receiver: Receiver) -> None:
    env = _env(home)
    client = SupervisorClient(home)
    port, quiet = free_port(), free_port()

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "console.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        assert f"OpenTelemetry: {receiver.url}" in cli("supervisor", "start", "--otlp", receiver.url)
        cli("deploy", "iris", "--name", "iris-otel", "--port", str(port), "--workers", "2")
        cli("deploy", "iris", "--name", "iris-quiet", "--port", str(quiet), "--otlp", "off")
        assert _send(f"http://127.0.0.1:{quiet}") == {"200": 3, "422": 1}
        url = f"http://127.0.0.1:{port}"
        sent = {"200": 0, "422": 0}
        workers: set[str] = set()
        while len(workers) < 2:  # new connections spread over both workers (SO_REUSEPORT)
            for code, count in _send(url).items():
                sent[code] += count
            workers = {s.resource["service.instance.id"] for s in receiver.spans()}
            assert sum(sent.values()) < 400, "every request went to one worker"

        answered, good_rows = sum(sent.values()), 4 * sent["200"] // 3  # 2 + 1 + 1 rows per three good

        def exported(latest: dict, name: str) -> list:
            return [p for w in latest.values() for p in points(w[name])]

        def settled() -> dict | None:
            latest = receiver.latest_metrics()
            counted: dict[str, int] = {}
            for worker in latest.values():
                for point in points(worker["modeldeck_requests"]) if "modeldeck_requests" in worker else ():
                    code = next(a.value.string_value for a in point.attributes if a.key == "code")
                    counted[code] = counted.get(code, 0) + int(point.as_double or point.as_int)
            if len(latest) != 2 or counted != sent:
                return None
            # a request is counted, then its latency and rows, while the export thread may read them
            durations = exported(latest, "modeldeck_request_duration_seconds")
            rows = exported(latest, "modeldeck_request_rows")
            whole = sum(p.count for p in durations) == answered and sum(p.sum for p in rows) == good_rows
            return latest if whole else None

        latest = wait_until(settled, what=f"OTLP request counts and latencies equal to those sent ({sent})")
    finally:
        stop_supervisor(client, home)
    assert {w["resource"]["service.name"] for w in latest.values()} == {"iris-otel"}  # not iris-quiet
    assert {s.resource["service.name"] for s in receiver.spans()} == {"iris-otel"}
    assert {w["resource"]["service.version"] for w in latest.values()} == {"1"}
    assert len({w["resource"]["process.pid"] for w in latest.values()}) == 2
    durations = exported(latest, "modeldeck_request_duration_seconds")
    assert sum(p.count for p in durations) == answered
    assert all(list(p.explicit_bounds) == list(LATENCY_BUCKETS) for p in durations)
    assert all(sum(p.bucket_counts) == p.count for p in durations)
    assert sum(p.sum for p in exported(latest, "modeldeck_request_rows")) == good_rows
    in_flight = exported(latest, "modeldeck_requests_in_flight")
    assert [p.as_double for p in in_flight] == [0.0, 0.0]
    assert len(workers) == 2


class Broken:
    """A model that fails on every call (a fault of the model, not of the request)."""

    def predict(self, X: object) -> object:
        raise RuntimeError("the model is broken")


def test_a_failed_prediction_is_an_error_span(home: Path, receiver: Receiver) -> None:
    from registry import Registry
    from registry.serving.predictor import Predictor
    from registry.serving.server import create_app
    from registry.serving.telemetry import start

    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        predictor = Predictor(Broken(), reg.get("iris"))
    predictor.ready = True
    telemetry = start(receiver.url, deployment="broken", model="iris", version=1)
    assert telemetry is not None
    client = AppClient(create_app(predictor, batching=False, telemetry=telemetry))
    try:
        answer = client.post("/invocations", json={"inputs": [ROW]})
    finally:
        client.close()
        telemetry.shutdown()  # exports what is left
    assert answer.status_code == 500
    (span,) = receiver.spans()
    assert span.message.status.code == ERROR
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == span.attributes["modeldeck.validation"] == "prediction_failed"
    assert span.resource["service.name"] == "broken"


def test_a_dead_collector_neither_slows_nor_fails_requests(home: Path) -> None:
    from registry.serving.telemetry import start

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in FAST.items():
            patch.setenv(key, value)
        telemetry = start(closed, deployment="iris", model="iris", version=1)
    assert telemetry is not None
    client = AppClient(create_model_app(home, "iris", telemetry=telemetry))
    try:
        answers = [client.post("/invocations", json={"inputs": [ROW]}) for _ in range(300)]
    finally:
        client.close()
    assert [a.status_code for a in answers] == [200] * 300
    telemetry.shutdown()  # bounded: returns although nothing could be delivered


def test_a_collector_that_never_answers_holds_a_servers_exit_up_2_s_at_most(home: Path) -> None:
    # A timing bound with a wide margin (2 s of export plus the server's own exit, under 6 s on a loaded
    # machine); the exporter's own timeout (1000 s here) would hold the exit up for minutes.
    collector = SilentCollector()
    env = _env(home, OTEL_EXPORTER_OTLP_TIMEOUT="1000", OTEL_METRIC_EXPORT_TIMEOUT="1000000")
    server = start_server(env, home / "silent.log", "iris", "--otlp", collector.url)
    try:
        wait_ready(server)
        answer = httpx.post(f"{server.url}/invocations", json={"inputs": [ROW]}, timeout=10)
        assert answer.status_code == 200
        # the span and the metrics are sent, and hang: the point of the test
        wait_until(lambda: len(collector.connections) >= 2, what="two exports in flight")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(60)
        took = time.monotonic() - started
    finally:
        server.process.kill()
        server.process.wait()
        collector.close()
    assert took < 6, f"exit took {took:.1f} s"
    assert "unexported after 2000 ms is dropped" in server.log.read_text()


@pytest.mark.slow
def test_a_collector_that_never_answers_holds_a_supervised_workers_stop_up_2_s_at_most(
    tmp_path: Path,
) -> None:
    # A timing bound with a wide margin, as above: `modeldeck stop` drains and stops the worker (about
    # 3 s here without export); the worker's last export may add 2 s, not the exporter's 1000 s timeout.
    register_models(tmp_path, only=("iris",))
    collector = SilentCollector()
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT="1000")
    client = SupervisorClient(tmp_path)
    port = free_port()

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "console.cli", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr

    try:
        cli("supervisor", "start", "--otlp", collector.url)
        cli("deploy", "iris", "--port", str(port))
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": [ROW]}, timeout=10)
        assert answer.status_code == 200
        wait_until(lambda: len(collector.connections) >= 2, what="two exports in flight")
        started = time.monotonic()
        cli("stop", "iris")
        took = time.monotonic() - started
    finally:
        stop_supervisor(client, tmp_path)
        collector.close()
    assert took < 15, f"modeldeck stop took {took:.1f} s"
    assert "unexported after 2000 ms is dropped" in (tmp_path / "logs" / "iris.log").read_text()


def test_off_imports_no_opentelemetry(home: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import registry.serving.server
        from payload_models import AppClient, create_model_app
        from registry.serving.telemetry import start
        assert start(None, deployment="iris", model="iris", version=1) is None
        client = AppClient(create_model_app(Path({str(home)!r}), "iris"))
        assert client.post("/invocations", json={{"inputs": [{ROW}]}}).status_code == 200
        client.close()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    env = _env(home)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


GRPC = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["serve", "iris", "--otlp", "collector:4318"],
            {},
            "--otlp must be the base URL http(s)://HOST:PORT",
        ),
        (
            ["deploy", "iris", "--otlp", "ftp://collector"],
            {},
            "--otlp must be the base URL http(s)://HOST:PORT",
        ),
        (["supervisor", "start", "--otlp", "http://collector:x"], {}, "--otlp must be the base URL"),
        (  # a signal's path would be doubled: /v1/traces/v1/traces
            ["serve", "iris", "--otlp", "http://127.0.0.1:14318/v1/traces"],
            {},
            "--otlp must be the base URL http(s)://HOST:PORT of an OTLP receiver",
        ),
        (["serve", "iris", "--otlp", "http://127.0.0.1:4318"], {}, "pip install 'modeldeck[otel]'"),
        (  # only OTLP/HTTP protobuf is sent: another protocol is refused, not silently replaced
            ["serve", "iris"],
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", **GRPC},
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: modeldeck exports OTLP as http/protobuf only",
        ),
        (
            ["deploy", "iris", "--otlp", "http://127.0.0.1:4318"],
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json is not supported",
        ),
        (
            ["supervisor", "start", "--otlp", "http://127.0.0.1:4318"],
            {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc is not supported",
        ),
    ],
)
def test_a_bad_or_unusable_otlp_flag_is_one_line(
    home: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    # the `pip install` case runs as if the `otel` extra were not installed
    missing = "sys.modules['opentelemetry.sdk'] = None; " if "pip install" in message else ""
    code = f"import sys; {missing}from console.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=_env(home, **env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_worker_finding_another_protocol_serves_without_export(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.serving.telemetry import start

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        assert start(receiver.url, deployment="iris", model="iris", version=1) is None
    assert "OpenTelemetry export is off: OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported" in caplog.text


URL = "http://collector:4318"
TRACES, METRICS = f"{URL}/v1/traces", f"{URL}/v1/metrics"


@pytest.mark.parametrize(
    ("otlp", "env", "expected"),
    [
        (None, {}, None),  # off unless asked for
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": URL}, ("", "")),  # "": the exporter reads OTEL_*
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": TRACES}, ("", None)),
        (URL, {}, (TRACES, METRICS)),
        (URL, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere:4318"}, (TRACES, METRICS)),
        ("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": URL}, None),  # a deployment's --otlp off wins
        (URL, {"OTEL_SDK_DISABLED": "true"}, None),
        (URL, {"OTEL_METRICS_EXPORTER": "none"}, (TRACES, None)),
    ],
)
def test_where_to_export_follows_the_flag_then_the_otel_variables(
    otlp: str | None, env: dict[str, str], expected: tuple[str | None, str | None] | None
) -> None:
    from registry.serving.telemetry import targets

    found = targets(otlp, env)
    assert (found and (found.traces, found.metrics)) == expected


def test_serves_help_says_what_serve_exports_to_by_default(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "serve", "--help"],
        env={**_env(home), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    help_text = " ".join(done.stdout.split())
    assert "(default: as the OTEL_EXPORTER_OTLP_* variables say)" in help_text
    assert "supervisor" not in help_text
