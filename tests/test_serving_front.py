"""The model server's short way for prediction POSTs (`ModelServer`) against Starlette's own routing
and middleware: for every kind of request, the same status, headers, body and counted metrics."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from payload_models import AppClient, create_model_app, register_models
from starlette.applications import Starlette

ROW = [5.1, 3.5, 1.4, 0.2]
NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("front-home")
    register_models(path, only=("iris", "shop"))
    return path


def routed(app: Any) -> Any:
    """`app` reached only through Starlette's router and middleware (the way every other route takes)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await Starlette.__call__(app, scope, receive, send)

    asgi.state = app.state  # type: ignore[attr-defined]
    return asgi


@pytest.fixture
def pair(home: Path, request: pytest.FixtureRequest) -> Iterator[tuple[AppClient, AppClient, Any, Any]]:
    model, options = request.param
    fast, slow = create_model_app(home, model, **options), create_model_app(home, model, **options)
    clients = AppClient(fast), AppClient(routed(slow))
    yield clients[0], clients[1], fast, slow
    for client in clients:
        client.close()


def tensor(rows: list[list[float]]) -> dict[str, Any]:
    return {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}


IRIS_REQUESTS: list[tuple[str, dict[str, str], bytes]] = [
    ("/invocations", JSON, json.dumps({"dataframe_split": {"columns": NAMES, "data": [ROW]}}).encode()),
    (
        "/invocations",
        JSON,
        json.dumps({"dataframe_records": [dict(zip(NAMES, ROW, strict=True))] * 3}).encode(),
    ),
    ("/invocations", JSON, json.dumps({"instances": [ROW] * 100}).encode()),
    (
        "/invocations",
        JSON,
        json.dumps({"inputs": {n: [v, v] for n, v in zip(NAMES, ROW, strict=True)}}).encode(),
    ),
    ("/invocations", {"content-type": "text/csv"}, (",".join(NAMES) + "\n5.1,3.5,1.4,0.2\n").encode()),
    ("/invocations", JSON, b'{"instances": [[1, 2, 3]]}'),  # width: 422
    ("/invocations", JSON, b'{"instances": [[1, 2, 3, "x"]]}'),  # type: 422 naming the column
    ("/invocations", JSON, b'{"instances": [[1, 2, 3, NaN]]}'),  # not finite
    ("/invocations", JSON, b'{"instances": '),  # broken JSON: 400
    ("/invocations", JSON, b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}'),  # two keys: 400
    ("/invocations", {"content-type": "text/plain"}, b"1,2,3,4"),  # 415
    ("/invocations", {**JSON, "content-encoding": "gzip"}, gzip.compress(b'{"instances": [[1, 2, 3, 4]]}')),
    ("/invocations", {**JSON, "content-encoding": "br"}, b"x"),  # 415
    ("/invocations", JSON, b'{"instances": [' + b"[1, 2, 3, 4]," * 400 + b"[1, 2, 3, 4]]}"),  # 413
    ("/invocations/", JSON, b'{"instances": [[1, 2, 3, 4]]}'),  # a variant: Starlette's redirect
    ("/v2/models/iris/infer", JSON, json.dumps({"inputs": [tensor([ROW])], "id": "r1"}).encode()),
    ("/v2/models/iris/infer", JSON, json.dumps({"inputs": [tensor([ROW, ROW])]}).encode()),
    ("/v2/models/iris/versions/1/infer", JSON, json.dumps({"inputs": [tensor([ROW])]}).encode()),
    ("/v2/models/iris/versions/7/infer", JSON, json.dumps({"inputs": [tensor([ROW])]}).encode()),  # 404
    ("/v2/models/other/infer", JSON, json.dumps({"inputs": [tensor([ROW])]}).encode()),  # 404 name
    ("/v2/models//infer", JSON, b"{}"),  # no name: no route
    ("/v2/models/iris/versions//infer", JSON, b"{}"),
    ("/v2/models/iris/extra/infer", JSON, b"{}"),
    ("/v2/models/iris/infer", JSON, b'{"inputs": []}'),  # 400 naming inputs
    ("/v2/models/iris/infer", JSON, json.dumps({"inputs": [tensor([[1.0, 2.0]])]}).encode()),  # shape
]


def _compare(fast: AppClient, slow: AppClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    one, other = fast.request(method, path, **kwargs), slow.request(method, path, **kwargs)
    assert (one.status_code, one.content) == (other.status_code, other.content), path
    skip = {"date"}
    assert [h for h in one.headers.multi_items() if h[0] not in skip] == [
        h for h in other.headers.multi_items() if h[0] not in skip
    ], path
    return one


@pytest.mark.parametrize("pair", [("iris", {"max_body_bytes": 4096})], indirect=True)
def test_prediction_requests_answer_as_through_starlettes_router(pair: Any) -> None:
    fast, slow, fast_app, slow_app = pair
    statuses = set()
    for number, (path, headers, body) in enumerate(IRIS_REQUESTS):
        given = {**headers, "x-request-id": f"req-{number}"}
        statuses.add(_compare(fast, slow, "POST", path, headers=given, content=body).status_code)
    for path in ("/invocations", "/v2/models/iris/infer", "/health/ready", "/v2/models/iris"):
        _compare(fast, slow, "GET", path)  # other methods: Starlette's way on both (405 / 200)
    assert {200, 307, 400, 404, 413, 415, 422} <= statuses
    counted, expected = fast_app.state.metrics.snapshot(), slow_app.state.metrics.snapshot()
    latency = "modeldeck_request_duration_seconds"
    assert counted.pop(latency)["count"] == expected.pop(latency)["count"]  # durations: clock readings
    assert counted == expected
    assert fast_app.state.sampler.since(0)[1:] == slow_app.state.sampler.since(0)[1:]


@pytest.mark.parametrize("pair", [("iris", {"token": "s3cret"})], indirect=True)
def test_token_refusals_and_request_ids_match_starlettes_router(pair: Any) -> None:
    fast, slow, _, _ = pair
    body = json.dumps({"instances": [ROW]}).encode()
    refused = _compare(
        fast, slow, "POST", "/invocations", headers={**JSON, "x-request-id": "a"}, content=body
    )
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "a"
    authorized = {**JSON, "authorization": "Bearer s3cret", "x-request-id": "b"}
    assert _compare(fast, slow, "POST", "/invocations", headers=authorized, content=body).status_code == 200
    infer = json.dumps({"inputs": [tensor([ROW])], "id": "from-body"}).encode()
    answered = fast.post(
        "/v2/models/iris/infer", headers={**JSON, "authorization": "Bearer s3cret"}, content=infer
    )
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "from-body"
    assert len(fast.post("/invocations", headers=JSON, content=body).headers["x-request-id"]) == 32


@pytest.mark.parametrize("pair", [("shop", {})], indirect=True)
def test_dataframe_model_answers_and_refusals_match_starlettes_router(pair: Any) -> None:
    fast, slow, _, _ = pair
    records = [
        [{"city": "paris", "basket": 12.5, "visits": 3}, {"city": "nice", "basket": None, "visits": 1}],
        [{"city": "berlin", "basket": 1.0, "visits": 1}],  # unknown category: 422 naming the column
        [{"city": "paris", "basket": "x", "visits": 1}],
    ]
    statuses = [
        _compare(
            fast,
            slow,
            "POST",
            "/invocations",
            headers={**JSON, "x-request-id": f"s{i}"},
            content=json.dumps({"dataframe_records": r}).encode(),
        ).status_code
        for i, r in enumerate(records)
    ]
    assert statuses == [200, 422, 422]


def test_the_short_way_sets_the_route_and_path_parameters_telemetry_reads(home: Path) -> None:
    app = create_model_app(home, "iris")
    body = json.dumps({"inputs": [tensor([ROW])]}).encode()
    sent: list[dict[str, Any]] = []
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v2/models/iris/versions/1/infer",
        "raw_path": b"/v2/models/iris/versions/1/infer",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert scope["route"].path == "/v2/models/{name}/versions/{version}/infer"
    assert scope["path_params"] == {"name": "iris", "version": "1"}
