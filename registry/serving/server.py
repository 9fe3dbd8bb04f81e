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
from typing import TYPE_CHECKING, Any, cast

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
from registry.serving import oip_binary, oip_types, payloads
from registry.serving.batching import MicroBatcher
from registry.serving.calls import ModelCaller
from registry.serving.error_bodies import error_body, input_error_body
from registry.serving.exchange import Asked, RawHeaders, first_headers, read_body, send_json
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
#: A prediction route's work: the status, the result (to send as JSON, or a ready Response), the rows.
PredictHandler = Callable[[Asked, bytes], Awaitable[tuple[int, Any, int]]]
#: An answer to send: the status, the body (JSON bytes, or a ready Response) and the request id.
Reply = tuple[int, "bytes | Response", str]
#: OIP's binary extension header, as `Asked.header` takes names.
_BINARY_HEADER = oip_binary.HEADER.lower().encode("latin-1")
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
    caller = ModelCaller(predictor.single_row_seconds, predict_timeout, row_seconds=predictor.row_seconds)
    batchers = (
        {
            payloads.PREDICT: MicroBatcher(
                predictor.predict, on_call=on_call, run=caller.threaded, run_alone=caller.run_alone
            ),
            payloads.PREDICT_PROBA: MicroBatcher(
                predictor.predict_proba, on_call=on_call, run=caller.threaded, run_alone=caller.run_alone
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
            if caller.takes_inline(rows):  # no coroutine for the common case: every request's path
                result = caller.run_inline(method, rows)
            else:
                result = await caller.threaded(method, rows)
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

    def predicting(handler: PredictHandler) -> PredictionEndpoint:
        """The endpoint of a prediction route: check the token, read the body within the limit, run
        `handler`, turn failures into JSON errors, count the answer. Every answer, an error too,
        carries the request id."""

        async def reply(scope: Scope, receive: Receive) -> Reply:
            asked = Asked(scope)
            if expected_token is not None and not bearer_matches(
                asked.header(b"authorization") or "", expected_token
            ):
                return 401, orjson.dumps(input_error_body(path_of(scope), _UNAUTHORIZED)), asked.request_id
            start = time.perf_counter()
            if monitoring:
                metrics.in_flight.inc()
            try:
                body = await read_body(asked.headers, receive, max_body_bytes)
                status, result, rows = await handler(asked, body)
                content = result if isinstance(result, Response) else orjson.dumps(result)
                outcome = "ok"
            except InputError as exc:
                status, rows, outcome = exc.status, 0, exc.code
                content = orjson.dumps(input_error_body(path_of(scope), exc))
            except Exception as exc:  # the model raised: the worker lives on, the log says why
                reason, path = _reason(exc, predictor.redact), path_of(scope)
                log.warning("500 on %s: %s", path, reason)
                status, rows, outcome = 500, 0, "prediction_failed"
                content = orjson.dumps(error_body(path, 500, reason, outcome))
            finally:
                if monitoring:
                    metrics.in_flight.dec()
            if monitoring:
                metrics.observe(status, time.perf_counter() - start, rows)
                if telemetry is not None:
                    telemetry.record(Request(scope), status, rows, outcome, start)
            return status, content, asked.request_id

        return PredictionEndpoint(reply, raw_headers)

    async def invocations(asked: Asked, body: bytes) -> tuple[int, Any, int]:
        rows = payloads.invocation_rows(body, asked.header(b"content-type") or "", predictor.schema)
        predictions = await call(payloads.PREDICT, rows)
        if outcomes is not None:
            outcomes.record(asked.request_id, predictions)
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

    async def infer(asked: Asked, body: bytes) -> tuple[int, Any, int]:
        _check_model(asked.path_params, info)
        parsed = payloads.v2_request(
            body, predictor.schema, predictor.can_proba, asked.header(_BINARY_HEADER)
        )
        if len(parsed.outputs) == 1:  # the fast path: one model call
            results = [await call(parsed.outputs[0], parsed.rows)]
        else:
            results = await asyncio.gather(*(call(name, parsed.rows) for name in parsed.outputs))
        # The header's id, else the body's (what OIP clients set), keys the stored predictions and is
        # the answer's; the body's `id` echoes the request's, as OIP says.
        if asked.header(b"x-request-id") != asked.request_id:
            asked.request_id = request_id(parsed.id)
        rid = asked.request_id
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
            body = await read_body(first_headers(request.scope), request.receive, max_body_bytes)
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
            _check_model(request.path_params, info)
        except InputError as exc:
            return refuse(request, exc)
        return answer(200, v2_metadata(predictor))

    async def model_ready(request: Request) -> Response:
        """OIP model readiness: 200 once this model (and version) is loaded and warmed up."""
        try:
            _check_model(request.path_params, info)
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


class PredictionEndpoint:
    """A prediction route's endpoint on plain ASGI: `reply` makes the answer, `send` sends it.

    Starlette's router takes an instance as an ASGI app as it is (a function it would wrap as a request
    handler). `ModelServer`'s short way calls the two halves itself, so that a fault in `reply` still
    gets its 500 before anything was sent."""

    __slots__ = ("_headers", "reply")

    def __init__(self, reply: Callable[[Scope, Receive], Awaitable[Reply]], headers: RawHeaders) -> None:
        self.reply = reply
        self._headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.send(scope, receive, send, await self.reply(scope, receive))

    async def send(self, scope: Scope, receive: Receive, send: Send, answer: Reply) -> None:
        status, content, rid = answer
        if isinstance(content, Response):
            content.raw_headers.append((b"x-request-id", rid.encode("latin-1")))
            await content(scope, receive, send)
        else:
            await send_json(send, status, content, self._headers, rid)


def path_of(scope: Scope) -> str:
    """The request's path as Starlette gives it (`request.url.path`), for error bodies."""
    return Request(scope).url.path


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
        endpoint = cast(PredictionEndpoint, route.endpoint)
        scope["endpoint"] = endpoint
        try:
            answer = await endpoint.reply(scope, receive)
        except Exception as exc:
            await (await self._on_error(Request(scope, receive, send), exc))(scope, receive, send)
            raise
        await endpoint.send(scope, receive, send, answer)

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


def _check_model(path_params: Mapping[str, str], info: Any) -> None:
    """404 unless the path names the model (and version, if given) this server serves."""
    asked = path_params.get("name")
    if asked != info.name:
        raise InputError(
            404, "model_not_found", f"this server serves model {info.name!r}, not {asked!r}", field="name"
        )
    wanted = path_params.get("version")
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
