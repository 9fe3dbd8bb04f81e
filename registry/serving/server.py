"""The ASGI app of one deployed version: MLflow scoring, Open Inference Protocol v2, health, metrics.

Run by uvicorn. Every prediction request is validated against the version's signature before the
model sees it; bad input gets a 4xx JSON error naming the field, in the shape of the protocol it was
asked in (`registry.serving.error_bodies`), and nothing a client sends can crash the worker.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from registry.monitoring.metrics import CONTENT_TYPE, ServingMetrics
from registry.monitoring.sampling import InputSampler
from registry.outcomes import (
    MAX_LABELS_PER_REQUEST,
    LabelError,
    PredictionRecorder,
    TooManyLabels,
    parse_labels,
    request_id,
)
from registry.serving import encodings, oip_binary, oip_types, payloads
from registry.serving.batching import MicroBatcher
from registry.serving.calls import ModelCaller
from registry.serving.error_bodies import error_body, input_error_body
from registry.serving.predictor import Predictor
from registry.serving.split import SHADOW, Split
from registry.signature import InputError

if TYPE_CHECKING:
    from registry.serving.otel_export import Telemetry

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
#: What `GET /v2` (OIP server metadata) says: the server's name and the protocol extensions it has.
SERVER_NAME = "modeldeck"
EXTENSIONS = ("binary_tensor_data",)
Handler = Callable[[Request], Awaitable[Response]]
_UNAUTHORIZED = InputError(
    401,
    "unauthorized",
    "missing or wrong bearer token in the Authorization header",
    field="Authorization",
)

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
    outcomes: PredictionRecorder | None = None,
    store_error: str | None = None,
    no_store: str = "deployed with --no-prediction-store",
) -> Starlette:
    """The app serving `predictor`. With `token`, prediction, metadata and metrics endpoints require
    `Authorization: Bearer <token>`; health checks (live, ready, OIP's model ready) never do.
    `batching` turns micro-batching of concurrent requests on or off; None decides from the model's
    measured cost per call. `monitoring` off leaves out the metrics and the input sample (for
    measuring their cost). Model calls run off the event loop (`registry.serving.calls`); one over
    `predict_timeout` seconds answers 503. Errors take each route's protocol shape (`error_bodies`).
    `telemetry` (`registry.serving.telemetry.start`) exports a span per request and the metrics.
    Every prediction response carries `X-Request-ID` (the client's, if sane); with `outcomes` each
    prediction is queued for the prediction store and `POST /feedback` takes labels for them; without,
    `/feedback` answers 503 naming `store_error` (the store could not be opened: may pass) or else
    409 naming `no_store` (why this server keeps no predictions: permanent)."""
    info = predictor.info
    metrics = metrics or ServingMetrics(info.name, info.version)
    if telemetry is not None and monitoring:
        telemetry.watch(metrics.registry)
    headers = {"x-model-name": info.name, "x-model-version": str(info.version)}
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    expected_token = token.encode() if token else None
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

    def answer(status: int, body: Any, extra_headers: Mapping[str, str] | None = None) -> Response:
        if extra_headers is None:
            return JSONBytes(orjson.dumps(body), status, raw_headers)
        return Response(
            orjson.dumps(body),
            status,
            headers={**headers, **extra_headers} if extra_headers else headers,
            media_type="application/json",
        )

    def refuse(request: Request, error: InputError) -> Response:
        return answer(error.status, input_error_body(request.url.path, error))

    def guarded(handler: Handler) -> Handler:
        if expected_token is None:
            return handler

        async def check(request: Request) -> Response:
            if expected_token is not None and not bearer_matches(
                request.headers.get("authorization", ""), expected_token
            ):
                return refuse(request, _UNAUTHORIZED)
            return await handler(request)

        return check

    def predicting(handler: Callable[[Request, bytes, str], Awaitable[tuple[int, Any, int]]]) -> Handler:
        """Read the body within the limit, run `handler`, turn failures into JSON errors, count it;
        the response (error or not) carries the request id."""

        async def respond(request: Request) -> tuple[Response, int, str]:
            """The response, its row count and its outcome ("ok" or the error's code)."""
            rid = request_id(request.headers.get("x-request-id"))
            response, rows, outcome = await answered(request, rid)
            given = request.scope.get("state", {}).get("request_id", rid)  # infer's, from the body
            response.raw_headers.append((b"x-request-id", given.encode("latin-1")))
            return response, rows, outcome

        async def answered(request: Request, rid: str) -> tuple[Response, int, str]:
            try:
                body = await read_body(request, max_body_bytes)
                status, result, rows = await handler(request, body, rid)
                return (result if isinstance(result, Response) else answer(status, result)), rows, "ok"
            except InputError as exc:
                return refuse(request, exc), 0, exc.code
            except Exception as exc:  # the model raised: the worker lives on, the log says why
                reason = _reason(exc, predictor.redact)
                log.warning("500 on %s: %s", request.url.path, reason)
                return (
                    answer(500, error_body(request.url.path, 500, reason, "prediction_failed")),
                    0,
                    "prediction_failed",
                )

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

        checked = guarded(run if monitoring else unmonitored)

        async def stamped(request: Request) -> Response:
            """A refusal before the handler (401) carries a request id too."""
            response = await checked(request)
            if "x-request-id" not in response.headers:
                response.headers["x-request-id"] = request_id(request.headers.get("x-request-id"))
            return response

        return stamped if expected_token is not None else checked

    async def invocations(request: Request, body: bytes, rid: str) -> tuple[int, Any, int]:
        rows = payloads.invocation_rows(body, request.headers.get("content-type", ""), predictor.schema)
        predictions = await call(payloads.PREDICT, rows)
        if outcomes is not None:
            outcomes.record(rid, predictions)
        return 200, {"predictions": predictions}, len(rows)

    datatypes = {payloads.PREDICT: oip_types.predict_datatype(info.output), payloads.PREDICT_PROBA: "FP64"}

    classes = info.output.get("classes") or []

    def record(rid: str, outputs: list[str], results: list[list[Any]]) -> None:
        """Queue the predictions (a predict_proba-only request's as the likeliest classes)."""
        by_name = dict(zip(outputs, results, strict=True))
        probabilities = by_name.get(payloads.PREDICT_PROBA)
        predictions = by_name.get(payloads.PREDICT)
        if predictions is None and probabilities is not None and classes:
            predictions = [classes[max(range(len(p)), key=p.__getitem__)] for p in probabilities]
        if predictions is not None and outcomes is not None:
            outcomes.record(rid, predictions, probabilities)

    async def infer(request: Request, body: bytes, given_id: str) -> tuple[int, Any, int]:
        _check_model(request, info)
        header_length = request.headers.get(oip_binary.HEADER)
        parsed = payloads.v2_request(body, predictor.schema, predictor.can_proba, header_length)
        if len(parsed.outputs) == 1:  # the fast path: one model call
            results = [await call(parsed.outputs[0], parsed.rows)]
        else:
            results = await asyncio.gather(*(call(name, parsed.rows) for name in parsed.outputs))
        # The header's id, else the body's (what OIP clients set), keys the stored predictions;
        # the body's `id` echoes the request's, as OIP says.
        rid = given_id if request.headers.get("x-request-id") == given_id else request_id(parsed.id)
        request.state.request_id = rid
        if outcomes is not None:
            record(rid, parsed.outputs, results)
        result = {
            "model_name": info.name,
            "model_version": str(info.version),
            "id": parsed.id or rid,
            "outputs": [
                oip_types.response_tensor(name, values, datatypes[name])
                for name, values in zip(parsed.outputs, results, strict=True)
            ],
        }
        if not parsed.binary:
            return 200, result, len(parsed.rows)
        content, header_size = oip_binary.response_body(result, parsed.binary)
        binary_headers = {**headers, oip_binary.HEADER: str(header_size)}
        return (
            200,
            Response(content, 200, headers=binary_headers, media_type=oip_binary.MEDIA_TYPE),
            len(parsed.rows),
        )

    numeric_labels = info.output.get("kind") != "classification"  # a regressor's labels are numbers

    async def feedback(request: Request) -> Response:
        """Labels for earlier predictions, by request id (see `registry.outcomes`)."""
        try:
            if outcomes is None and store_error is not None:
                raise InputError(503, "store_unavailable", f"prediction store unavailable: {store_error}")
            if outcomes is None:
                raise InputError(
                    409, "no_prediction_store", f"this deployment keeps no predictions: {no_store}"
                )
            body = await read_body(request, max_body_bytes)
            try:
                labels = parse_labels(
                    orjson.loads(body), limit=MAX_LABELS_PER_REQUEST, numeric=numeric_labels
                )
            except orjson.JSONDecodeError as exc:
                raise InputError(400, "invalid_json", f"the body is not JSON: {exc}", field="body") from None
            except TooManyLabels as exc:
                raise InputError(413, "too_many_labels", str(exc), field="body") from None
            except LabelError as exc:
                raise InputError(422, "invalid_feedback", f"{exc.field}: {exc}", field=exc.field) from None
            return answer(200, await asyncio.to_thread(outcomes.add_labels, labels))
        except sqlite3.Error as exc:  # locked past its timeout, disk full: the client may retry
            log.warning("could not store labels: %s", exc)
            return refuse(request, InputError(503, "store_unavailable", f"labels not stored, retry: {exc}"))
        except InputError as exc:
            return refuse(request, exc)

    async def model_metadata(request: Request) -> Response:
        try:
            _check_model(request, info)
        except InputError as exc:
            return refuse(request, exc)
        return answer(200, v2_metadata(predictor))

    async def model_ready(request: Request) -> Response:
        """OIP model readiness: 200 once this model (and version) is loaded and warmed up."""
        try:
            _check_model(request, info)
        except InputError as exc:
            return refuse(request, exc)
        if not predictor.ready:
            return not_ready(request)
        return answer(200, {"name": info.name, "version": str(info.version), "ready": True})

    async def server_metadata(_: Request) -> Response:
        return answer(200, {"name": SERVER_NAME, "version": release(), "extensions": list(EXTENSIONS)})

    async def live(_: Request) -> Response:
        return answer(200, {"live": True, "status": "live"})

    async def ready(request: Request) -> Response:
        if not predictor.ready:
            return not_ready(request)
        return answer(
            200, {"ready": True, "status": "ready", "model": info.name, "version": str(info.version)}
        )

    def not_ready(request: Request) -> Response:
        """503 while the version loads or warms up: an error in the route's shape, with `ready` false."""
        message = f"model {info.name} version {info.version} is not ready yet (loading or warming up)"
        state: dict[str, Any] = {
            "ready": False,
            "status": "loading",
            "model": info.name,
            "version": str(info.version),
        }
        return answer(503, error_body(request.url.path, 503, message, "not_ready", **state))

    async def version(_: Request) -> Response:
        return Response(release(), headers=headers, media_type="text/plain")

    async def no_route(request: Request, exc: HTTPException) -> Response:
        """Starlette's 404 (no such path) and 405 (method not allowed) in the route's error shape."""
        path = request.url.path
        if exc.status_code == 405:
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
            message = f"method {request.method} is not allowed on {path}; use {allowed}"
            code = "method_not_allowed"
        else:
            message, code = f"no endpoint {request.method} {path} on this server", "not_found"
        return answer(exc.status_code, error_body(path, exc.status_code, message, code), exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        """A fault outside the prediction path (a bug): a 500 in the route's shape, logged."""
        reason = _reason(exc, predictor.redact)
        log.error("500 on %s: %s", request.url.path, reason)
        return answer(500, error_body(request.url.path, 500, reason, "internal_error"))

    async def prometheus(_: Request) -> Response:
        return Response(metrics.exposition(), headers={"content-type": CONTENT_TYPE})

    hot = [
        Route("/invocations", predicting(invocations), methods=["POST"]),
        Route("/v2/models/{name}/infer", predicting(infer), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", predicting(infer), methods=["POST"]),
    ]
    routes = [
        *hot,
        Route("/feedback", guarded(feedback), methods=["POST"]),
        Route("/v2", guarded(server_metadata), methods=["GET"]),
        Route("/v2/models/{name}", guarded(model_metadata), methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", guarded(model_metadata), methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/health/live", live),
        Route("/v2/health/live", live),
        Route("/health/ready", ready),
        Route("/v2/health/ready", ready),
        Route("/ping", ready),
        Route("/health", ready),
        Route("/version", version),
        Route("/metrics", guarded(prometheus)),
    ]
    app = ModelServer(
        routes=routes,
        exception_handlers={HTTPException: no_route, Exception: server_error},
        hot=hot,
        on_error=server_error,
    )
    app.state.metrics = metrics
    app.state.sampler = sampler
    # For estimated performance: the class probabilities of sampled rows, computed when the supervisor
    # pulls them (never on a request's path); None when there is no sample or no predict_proba.
    app.state.predict_proba = predictor.predict_proba if sampler is not None and predictor.can_proba else None
    # For a canary's agreement: predictions of rows the supervisor sends (off every request's path).
    app.state.predict = predictor.predict
    app.state.max_body_bytes = max_body_bytes
    app.state.batchers = batchers
    app.state.caller = caller
    app.state.outcomes = outcomes
    return app


class JSONBytes(Response):
    """A response of ready JSON bytes with pre-encoded headers: what `Response(body, status, headers,
    media_type="application/json")` sends, without encoding the same headers again per request."""

    media_type = "application/json"

    def __init__(self, content: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.body = content
        self.background = None
        self.raw_headers = [
            *raw_headers,
            (b"content-length", str(len(content)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]


class ModelServer(Starlette):
    """Starlette with a short way for prediction requests.

    A `POST` to one of the `hot` routes (`/invocations` and OIP's infer paths), matched exactly as
    Starlette's router would, goes straight to its endpoint: no scan of the route list, no middleware
    stack. Its endpoint turns every failure into an error response itself; anything that still escapes
    gets the `on_error` 500 and is raised again, as Starlette's error middleware does. Every other
    request, and any variant of these paths (a trailing slash, a `root_path`), takes Starlette's way."""

    def __init__(
        self,
        *,
        routes: list[Route],
        exception_handlers: dict[Any, Any],
        hot: list[Route],
        on_error: Callable[[Request, Exception], Awaitable[Response]],
    ) -> None:
        super().__init__(routes=routes, exception_handlers=exception_handlers)
        self._invocations, self._infer, self._infer_version = hot
        self._on_error = on_error
        #: A canary's or shadow's share of the prediction requests (`registry.serving.split`), set by
        #: the supervisor; None: this worker answers all of them.
        self.split: Split | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._hot(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await super().__call__(scope, receive, send)
            return
        split = self.split
        if split is not None and route is not self._infer_version:
            if split.take():
                replay = await split.forward(scope, receive, send)
                if replay is None:  # the candidate answered
                    return
                receive = replay
            elif split.mode == SHADOW:
                receive, body = split.capture(receive)
                await self._answer(route, scope, receive, send)
                split.mirror(scope, body)
                return
        await self._answer(route, scope, receive, send)

    async def _answer(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            await (await self._on_error(request, exc))(scope, receive, send)
            raise
        await response(scope, receive, send)

    def _hot(self, scope: Scope) -> Route | None:
        """The hot route `scope` is for (its path parameters set), or None."""
        path = scope["path"]
        if path == "/invocations":
            route = self._invocations
        elif path.startswith("/v2/models/") and path.endswith("/infer"):
            parts = path.split("/")  # "", "v2", "models", name, ["versions", version,] "infer"
            if len(parts) == 5 and parts[3]:
                route, params = self._infer, {"name": parts[3]}
            elif len(parts) == 7 and parts[3] and parts[4] == "versions" and parts[5]:
                route, params = self._infer_version, {"name": parts[3], "version": parts[5]}
            else:
                return None
            scope["path_params"] = {**scope.get("path_params", {}), **params}
        else:
            return None
        return None if scope.get("root_path") else route


def bearer_matches(header: str, token: bytes) -> bool:
    """True when an Authorization header is `Bearer <token>`: the scheme in any case (RFC 9110
    11.1), the token compared in constant time."""
    scheme, _, credentials = header.partition(" ")
    given = credentials.lstrip(" ").encode()
    return hmac.compare_digest(given, token) and scheme.lower() == "bearer"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes (decompressed,
    for a `Content-Encoding: gzip` or `deflate` body; another encoding is a 415)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    decoder = encodings.decoder(request.headers.get("content-encoding"), limit)
    chunks, size = [], 0
    receive = request.receive
    while True:  # the ASGI messages themselves: Request.stream's generator costs more than a read
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":  # gone, or cut off by the body deadline (408): not a 500
            raise InputError(408, "request_timeout", "the request body did not arrive", field="body")
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if decoder is not None:
            chunk = decoder.feed(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if decoder is not None:
        decoder.finish()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _reason(exc: Exception, redact: bool) -> str:
    """What failed, for the 500 body and the log; redacted deployments leave out the exception's text,
    which may quote input values (a model's messages often do)."""
    if redact:
        return f"{type(exc).__name__} (details withheld: this deployment redacts input values)"
    return f"{type(exc).__name__}: {exc}"


@cache
def release() -> str:
    """modeldeck's version, as `/version` and `GET /v2` give it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modeldeck")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


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


def v2_metadata(predictor: Predictor) -> dict[str, Any]:
    """OIP model metadata from the stored signature: the datatypes responses carry and inputs take."""
    info, schema = predictor.info, predictor.schema
    predict = oip_types.predict_datatype(info.output)
    outputs = [{"name": payloads.PREDICT, "datatype": predict, "shape": predictor.predict_shape}]
    if predictor.can_proba:
        classes = len(info.output.get("classes", []))
        outputs.append({"name": payloads.PREDICT_PROBA, "datatype": "FP64", "shape": [-1, classes]})
    return {
        "name": info.name,
        "versions": [str(info.version)],
        "platform": "scikit-learn",
        "inputs": [
            {"name": c["name"], "datatype": oip_types.input_datatype(c), "shape": [-1]}
            for c in schema.columns
        ],
        "outputs": outputs,
        "parameters": {
            "estimator": info.estimator_class,
            "named_columns": schema.named,
            "classes": info.output.get("classes"),
        },
    }
