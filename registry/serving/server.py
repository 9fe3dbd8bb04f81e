"""The ASGI app of one deployed version: MLflow scoring, Open Inference Protocol v2, health, metrics.

Run by uvicorn. Every prediction request is validated against the version's signature before the
model sees it; bad input gets a 4xx JSON error naming the field, and nothing a client sends can
crash the worker.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from registry.monitoring.metrics import CONTENT_TYPE, ServingMetrics
from registry.monitoring.sampling import InputSampler
from registry.serving import payloads
from registry.serving.batching import MicroBatcher
from registry.serving.calls import ModelCaller
from registry.serving.predictor import Predictor
from registry.signature import InputError

if TYPE_CHECKING:
    from registry.serving.otel_export import Telemetry

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
_OIP_DATATYPES = {"float": "FP64", "int": "INT64", "str": "BYTES", "bool": "BOOL"}
Handler = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("modeldeck.worker")


def create_app(
    predictor: Predictor,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    token: str | None = None,
    metrics: ServingMetrics | None = None,
    batching: bool | None = None,
    monitoring: bool = True,
    predict_timeout: float | None = None,
    telemetry: Telemetry | None = None,
) -> Starlette:
    """The app serving `predictor`. With `token`, prediction and metadata endpoints require
    `Authorization: Bearer <token>` (health checks never do). `batching` turns micro-batching of
    concurrent requests on or off; None decides from the model's measured cost per call. `monitoring`
    off leaves out the metrics and the input sample (for measuring their cost). Model calls run off
    the event loop (`registry.serving.calls`); one over `predict_timeout` seconds answers 503.
    `telemetry` (`registry.serving.telemetry.start`) exports a span per request and the metrics."""
    info = predictor.info
    metrics = metrics or ServingMetrics(info.name, info.version)
    if telemetry is not None and monitoring:
        telemetry.watch(metrics.registry)
    headers = {"x-model-name": info.name, "x-model-version": str(info.version)}
    expected_auth = f"Bearer {token}".encode() if token else None
    if batching is None:
        batching = predictor.worth_batching
    sampler = InputSampler() if monitoring else None
    on_call = metrics.batch_rows.observe if monitoring else None
    caller = ModelCaller(predictor.single_row_seconds, predict_timeout)
    batchers = (
        {
            payloads.PREDICT: MicroBatcher(predictor.predict, on_call=on_call, run=caller.threaded),
            payloads.PREDICT_PROBA: MicroBatcher(
                predictor.predict_proba, on_call=on_call, run=caller.threaded
            ),
        }
        if batching
        else {}
    )

    async def call(output: str, rows: list[list[Any]]) -> list[Any]:
        batcher = batchers.get(output)
        if batcher is not None:
            result = await batcher.submit(rows)
        else:
            method = predictor.predict_proba if output == payloads.PREDICT_PROBA else predictor.predict
            result = await caller(method, rows)
            if on_call is not None:
                on_call(len(rows))
        if sampler is not None and output == payloads.PREDICT:
            sampler.add(rows, result)
        return result

    def answer(status: int, body: Any) -> Response:
        return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")

    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            if expected_auth is not None:
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected_auth):
                    return answer(
                        401,
                        {
                            "error": {
                                "code": "unauthorized",
                                "field": "Authorization",
                                "message": "missing or wrong bearer token",
                            }
                        },
                    )
            return await handler(request)

        return check

    def predicting(handler: Callable[[Request, bytes], Awaitable[tuple[int, Any, int]]]) -> Handler:
        """Read the body within the limit, run `handler`, turn failures into JSON errors, count it."""

        async def respond(request: Request) -> tuple[Response, int, str]:
            """The response, its row count and its outcome ("ok" or the error's code)."""
            try:
                body = await read_body(request, max_body_bytes)
                status, result, rows = await handler(request, body)
                return answer(status, result), rows, "ok"
            except InputError as exc:
                return answer(exc.status, exc.body()), 0, exc.code
            except Exception as exc:  # the model raised: the worker lives on, the log says why
                reason = _reason(exc, predictor.redact)
                log.warning("500 on %s: %s", request.url.path, reason)
                return answer(500, _failure(reason)), 0, "prediction_failed"

        async def unmonitored(request: Request) -> Response:
            return (await respond(request))[0]

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            metrics.in_flight.inc()
            try:
                response, rows, outcome = await respond(request)
            finally:
                metrics.in_flight.dec()
            metrics.observe(response.status_code, time.perf_counter() - start, rows)
            if telemetry is not None:
                telemetry.record(request, response.status_code, rows, outcome, start)
            return response

        return guarded(run if monitoring else unmonitored)

    async def invocations(request: Request, body: bytes) -> tuple[int, Any, int]:
        rows = payloads.invocation_rows(body, request.headers.get("content-type", ""), predictor.schema)
        return 200, {"predictions": await call(payloads.PREDICT, rows)}, len(rows)

    async def infer(request: Request, body: bytes) -> tuple[int, Any, int]:
        _check_model(request, info)
        parsed = payloads.v2_request(body, predictor.schema, predictor.can_proba)
        outputs = [_tensor(name, await call(name, parsed.rows)) for name in parsed.outputs]
        result = {
            "model_name": info.name,
            "model_version": str(info.version),
            "id": parsed.id or str(uuid.uuid4()),
            "outputs": outputs,
        }
        return 200, result, len(parsed.rows)

    async def model_metadata(request: Request) -> Response:
        try:
            _check_model(request, info)
        except InputError as exc:
            return answer(exc.status, exc.body())
        return answer(200, v2_metadata(predictor))

    async def live(_: Request) -> Response:
        return answer(200, {"status": "live"})

    async def ready(_: Request) -> Response:
        if predictor.ready:
            return answer(200, {"status": "ready", "model": info.name, "version": info.version})
        return answer(503, {"status": "loading", "model": info.name, "version": info.version})

    async def version(_: Request) -> Response:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            release = package_version("modeldeck")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            release = "unknown"
        return Response(release, headers=headers, media_type="text/plain")

    async def prometheus(_: Request) -> Response:
        return Response(metrics.exposition(), headers={"content-type": CONTENT_TYPE})

    routes = [
        Route("/invocations", predicting(invocations), methods=["POST"]),
        Route("/v2/models/{name}/infer", predicting(infer), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", predicting(infer), methods=["POST"]),
        Route("/v2/models/{name}", guarded(model_metadata), methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", guarded(model_metadata), methods=["GET"]),
        Route("/health/live", live),
        Route("/v2/health/live", live),
        Route("/health/ready", ready),
        Route("/v2/health/ready", ready),
        Route("/ping", ready),
        Route("/health", ready),
        Route("/version", version),
        Route("/metrics", guarded(prometheus)),
    ]
    app = Starlette(routes=routes)
    app.state.metrics = metrics
    app.state.sampler = sampler
    app.state.batchers = batchers
    app.state.caller = caller
    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut off by the body deadline (408): a client's doing, not a 500
        raise InputError(408, "request_timeout", "the request body did not arrive", field="body") from None
    return b"".join(chunks)


def _reason(exc: Exception, redact: bool) -> str:
    """What failed, for the 500 body and the log; redacted deployments leave out the exception's text,
    which may quote input values (a model's messages often do)."""
    if redact:
        return f"{type(exc).__name__} (details withheld: this deployment redacts input values)"
    return f"{type(exc).__name__}: {exc}"


def _failure(reason: str) -> dict[str, Any]:
    return {"error": {"code": "prediction_failed", "field": None, "message": reason}}


def _too_large(limit: int) -> InputError:
    return InputError(
        413, "payload_too_large", f"request body over the limit of {limit:,} bytes", field="body"
    )


def _check_model(request: Request, info: Any) -> None:
    """404 unless the path names the model (and version, if given) this server serves."""
    asked = request.path_params.get("name")
    if asked != info.name:
        raise InputError(
            404, "model_not_found", f"this server serves model {info.name!r}, not {asked!r}", field="name"
        )
    wanted = request.path_params.get("version")
    if wanted is not None and wanted != str(info.version):
        raise InputError(
            404,
            "version_not_found",
            f"this server serves {info.name} version {info.version}, not {wanted}",
            field="version",
        )


def _tensor(name: str, values: list[Any]) -> dict[str, Any]:
    first = values[0] if values else 0.0
    width = len(first) if isinstance(first, list) else None
    flat = [v for row in values for v in row] if width is not None else values
    sample = flat[0] if flat else 0.0
    return {
        "name": name,
        "shape": [len(values), width] if width is not None else [len(values)],
        "datatype": _OIP_DATATYPES.get(type(sample).__name__, "BYTES"),
        "data": flat,
    }


def v2_metadata(predictor: Predictor) -> dict[str, Any]:
    """OIP model metadata from the stored signature."""
    info, schema = predictor.info, predictor.schema
    columns = info.signature.get("columns", [])
    outputs = [
        {"name": payloads.PREDICT, "datatype": "BYTES" if _text_classes(info) else "FP64", "shape": [-1]}
    ]
    if predictor.can_proba:
        classes = len(info.output.get("classes", []))
        outputs.append({"name": payloads.PREDICT_PROBA, "datatype": "FP64", "shape": [-1, classes]})
    return {
        "name": info.name,
        "versions": [str(info.version)],
        "platform": "scikit-learn",
        "inputs": [
            {"name": c["name"], "datatype": "FP64" if c["kind"] == "numeric" else "BYTES", "shape": [-1]}
            for c in columns
        ],
        "outputs": outputs,
        "parameters": {
            "estimator": info.estimator_class,
            "named_columns": schema.named,
            "classes": info.output.get("classes"),
        },
    }


def _text_classes(info: Any) -> bool:
    return any(isinstance(c, str) for c in info.output.get("classes", []))
