"""Model servers as clients see them: real `modeldeck serve` processes (uvicorn), real HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
from helpers import error_of
from oip_servers import IRIS_COLUMNS, Server, register, serving, start_server, wait_ready

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    """A home with iris (named columns), a pipeline with categorical and nullable columns, and an
    array model; the fitted estimators to compare against."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    home = tmp_path_factory.mktemp("serving-home")
    X, y = load_iris(return_X_y=True, as_frame=True)
    iris = LogisticRegression(max_iter=1000).fit(X, y)
    shop = pd.DataFrame(
        {
            "city": ["paris", "lyon", "nice", "paris", "lyon", "nice"] * 5,
            "basket": [10.0, 25.5, np.nan, 40.0, 5.0, 12.5] * 5,
            "visits": [1, 4, 2, 8, 1, 3] * 5,
        }
    )
    spend = shop["visits"] * 3.0 + (shop["city"] == "paris") * 10
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                        ("numbers", make_pipeline(SimpleImputer(), "passthrough"), ["basket", "visits"]),
                    ]
                ),
            ),
            ("fit", Ridge()),
        ]
    ).fit(shop, spend)
    rng = np.random.default_rng(1)
    A = rng.normal(size=(50, 3))
    array_model = Ridge().fit(A, A @ [1.0, 2.0, 3.0])
    env = register(home, {"iris": (iris, X), "shop": (pipeline, shop), "plain": (array_model, A)})
    return {
        "home": home,
        "env": env,
        "iris": iris,
        "shop": pipeline,
        "plain": array_model,
        "shop_frame": shop,
    }


@pytest.fixture(scope="module")
def servers(models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    options = {"iris": ["iris"], "shop": ["shop", "--redact"], "plain": ["plain", "--max-body-mb", "0.001"]}
    with serving(models["env"], tmp_path_factory.mktemp("serving-logs"), options) as started:
        yield started


def post(server: Server, path: str, body: object = None, **kwargs) -> httpx.Response:
    with server.client() as client:
        return client.post(path, json=body, **kwargs) if body is not None else client.post(path, **kwargs)


def iris_expected(models, rows=ROWS) -> list[int]:
    return models["iris"].predict(pd.DataFrame(rows, columns=IRIS_COLUMNS)).tolist()


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": IRIS_COLUMNS, "data": ROWS}},
        {"dataframe_split": {"data": ROWS}},
        {"dataframe_split": {"columns": IRIS_COLUMNS[::-1], "data": [r[::-1] for r in ROWS]}},
        {"dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in ROWS]},
        {"instances": ROWS},
        {"instances": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in ROWS]},
        {"inputs": ROWS},
        {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(IRIS_COLUMNS)}},
    ],
    ids=[
        "split",
        "split-no-columns",
        "split-reordered",
        "records",
        "instances",
        "instances-records",
        "inputs-rows",
        "inputs-columns",
    ],
)
def test_every_mlflow_payload_form_predicts_like_the_model(servers, models, body):
    response = post(servers["iris"], "/invocations", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": iris_expected(models)}
    assert response.headers["x-model-name"] == "iris" and response.headers["x-model-version"] == "1"


def test_ints_are_safely_coerced_to_floats(servers, models):
    rows = [[5, 3, 1, 0], [7, 3, 5, 2]]
    assert post(servers["iris"], "/invocations", {"inputs": rows}).json() == {
        "predictions": iris_expected(models, rows)
    }


def test_csv_bodies_are_accepted(servers, models):
    text = ",".join(IRIS_COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n"
    response = post(servers["iris"], "/invocations", content=text, headers={"content-type": "text/csv"})
    assert response.json() == {"predictions": iris_expected(models)}


def test_categorical_and_nullable_columns_go_through_a_dataframe(servers, models):
    records = [{"city": "paris", "basket": None, "visits": 2}, {"city": "lyon", "basket": 30.0, "visits": 5}]
    response = post(servers["shop"], "/invocations", {"dataframe_records": records})
    assert response.status_code == 200, response.text
    expected = models["shop"].predict(pd.DataFrame(records).astype({"basket": float}))
    assert np.allclose(response.json()["predictions"], expected)


def test_array_models_answer_instances(servers, models):
    rows = [[0.1, 0.2, 0.3]]
    response = post(servers["plain"], "/invocations", {"instances": rows})
    assert np.allclose(response.json()["predictions"], models["plain"].predict(np.array(rows)))


def test_open_inference_protocol(servers, models):
    iris = servers["iris"]
    flat = [v for r in ROWS for v in r]
    body = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": flat}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    answer = post(iris, "/v2/models/iris/infer", body).json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "1", "r1")
    predict, proba = answer["outputs"]
    assert predict["data"] == iris_expected(models) and predict["shape"] == [3]
    assert proba["shape"] == [3, 3] and abs(sum(proba["data"][:3]) - 1) < 1e-9
    per_column = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "shape": [3], "datatype": "FP64", "data": [r[i] for r in ROWS]}
            for i, c in enumerate(IRIS_COLUMNS)
        ],
    }
    assert post(iris, "/v2/models/iris/infer", per_column).json()["outputs"][0]["data"] == iris_expected(
        models
    )
    with iris.client() as client:
        meta = client.get("/v2/models/iris").json()
        assert [i["name"] for i in meta["inputs"]] == IRIS_COLUMNS
        assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}
        assert client.get("/v2/models/other").status_code == 404
        assert client.get("/v2/health/ready").status_code == 200
    assert post(iris, "/v2/models/iris/versions/7/infer", body).status_code == 404


@pytest.mark.parametrize(
    ("body", "kwargs", "status", "field", "words"),
    [
        (
            None,
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            None,
            "not valid JSON",
        ),
        ({"columns": IRIS_COLUMNS}, {}, 400, None, "exactly one of"),
        ({"inputs": ROWS, "instances": ROWS}, {}, 400, None, "exactly one of"),
        (
            None,
            {"content": b"a=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "Content-Type",
            "not supported",
        ),
        (
            {"dataframe_split": {"columns": IRIS_COLUMNS[:3], "data": [r[:3] for r in ROWS]}},
            {},
            422,
            "petal width (cm)",
            "missing",
        ),
        (
            {"dataframe_split": {"columns": [*IRIS_COLUMNS, "colour"], "data": [[*r, 1] for r in ROWS]}},
            {},
            422,
            "colour",
            "unexpected",
        ),
        (
            {"inputs": [[5.1, "wide", 1.4, 0.2]]},
            {},
            422,
            "sepal width (cm)",
            "expected a number, got str 'wide'",
        ),
        ({"inputs": [[5.1, None, 1.4, 0.2]]}, {}, 422, "sepal width (cm)", "null"),
        ({"inputs": [[5.1, True, 1.4, 0.2]]}, {}, 422, "sepal width (cm)", "got bool"),
        ({"inputs": [[5.1, 3.5, 1.4]]}, {}, 422, None, "3 values"),
        ({"inputs": []}, {}, 400, "inputs", "non-empty"),
    ],
    ids=[
        "bad-json",
        "no-key",
        "two-keys",
        "content-type",
        "missing",
        "extra",
        "type",
        "null",
        "bool",
        "width",
        "empty",
    ],
)
def test_bad_input_gets_a_4xx_that_names_the_field(servers, body, kwargs, status, field, words):
    response = post(servers["iris"], "/invocations", body, **kwargs)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert words in error["message"]
    assert error["field"] == field
    assert error["error_code"] == ("INVALID_PARAMETER_VALUE" if status == 422 else "BAD_REQUEST")
    if field is not None:
        assert field in error["message"], error


def test_a_real_server_refuses_repeated_columns_and_non_finite_values_naming_column_and_row(servers):
    iris = servers["iris"]
    extra_copy = {"dataframe_split": {"columns": [*IRIS_COLUMNS, IRIS_COLUMNS[0]], "data": [[*ROWS[0], 7.9]]}}
    response = post(iris, "/invocations", extra_copy)
    assert response.status_code == 422 and error_of(response)["field"] == IRIS_COLUMNS[0]
    text = ",".join(IRIS_COLUMNS) + "\n5.1,3.5,1.4,0.2\n6.7,3.0,1e400,2.3\n"
    response = post(iris, "/invocations", content=text, headers={"content-type": "text/csv"})
    error = error_of(response)
    assert response.status_code == 422 and (error["field"], error["row"]) == (IRIS_COLUMNS[2], 1)
    oip = b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, NaN, 1.4, 0.2]}]}'
    response = post(iris, "/v2/models/iris/infer", content=oip, headers={"content-type": "application/json"})
    error = error_of(response)
    assert response.status_code == 422 and (error["field"], error["row"]) == (IRIS_COLUMNS[1], 0)
    assert f"column {IRIS_COLUMNS[1]!r}" in error["error"] and "row 0" in error["error"]


def test_redacted_servers_leave_values_out_of_errors(servers):
    response = post(
        servers["shop"],
        "/invocations",
        {"dataframe_records": [{"city": "paris", "basket": "secret-4111", "visits": 1}]},
    )
    assert response.status_code == 422
    assert "secret-4111" not in response.text and "basket" in response.text


def test_too_large_bodies_get_413(servers):
    response = post(servers["plain"], "/invocations", {"instances": [[0.1, 0.2, 0.3]] * 200})
    assert response.status_code == 413 and error_of(response)["field"] == "body"


def test_nothing_a_client_sends_stops_the_worker(servers, models):
    iris = servers["iris"]
    junk = [b"\xff\xfe", b"[]", b"null", b'{"inputs": {"a": 1}}', b'{"instances": [[[1]]]}', b"1e999999"]
    with iris.client() as client:
        for body in junk:
            assert (
                400
                <= client.post(
                    "/invocations", content=body, headers={"content-type": "application/json"}
                ).status_code
                < 500
            )
        assert client.get("/health/ready").status_code == 200
    assert post(iris, "/invocations", {"inputs": ROWS}).json() == {"predictions": iris_expected(models)}


def test_metrics_count_requests_by_status(servers):
    iris = servers["iris"]
    post(iris, "/invocations", {"inputs": ROWS})
    post(iris, "/invocations", {"inputs": [[1.0]]})
    with iris.client() as client:
        text = client.get("/metrics").text
    assert 'modeldeck_requests_total{code="200",model="iris",version="1"}' in text
    assert 'modeldeck_requests_total{code="422",model="iris",version="1"}' in text
    assert 'modeldeck_request_duration_seconds_bucket{le="0.0001",model="iris",version="1"}' in text


def test_mlflow_health_endpoints(servers):
    with servers["iris"].client() as client:
        assert client.get("/ping").status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/version").text


def test_a_port_in_use_is_one_clear_line(models, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "console.cli", "serve", "iris", "--port", str(port)],
            env=models["env"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_beyond_loopback_predictions_need_the_token(models, tmp_path):
    server = start_server(models["env"], tmp_path / "open.log", "plain", host="0.0.0.0")
    try:
        wait_ready(server)
        token = (models["home"] / "serving-token").read_text().strip()
        assert oct((models["home"] / "serving-token").stat().st_mode & 0o777) == "0o600"
        body = {"instances": [[0.1, 0.2, 0.3]]}
        assert post(server, "/invocations", body).status_code == 401
        assert post(server, "/invocations", body, headers={"authorization": "Bearer nope"}).status_code == 401
        assert (
            post(server, "/invocations", body, headers={"authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
    finally:
        server.stop()


def test_numeric_models_fitted_on_frames_take_arrays_without_warnings(models, recwarn):
    from registry import Registry
    from registry.serving.worker import load_predictor

    with Registry(home=models["home"], db_url=f"sqlite:///{models['home'] / 'registry.db'}") as reg:
        iris = load_predictor(reg, "iris")
        shop = load_predictor(reg, "shop")
    assert (iris.input_kind, shop.input_kind) == ("array", "frame")
    # the warm-up on the reference sample's rows measured a call and each further row (calls.py)
    assert iris.single_row_seconds is not None and iris.row_seconds is not None and iris.row_seconds >= 0
    recwarn.clear()
    assert iris.predict(ROWS) == iris_expected(models)
    assert not [w for w in recwarn if "feature names" in str(w.message)]


def test_listening_sockets_disable_nagle_so_responses_are_not_held_for_delayed_acks():
    from registry.serving.worker import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted.close()
        client.close()
    finally:
        sock.close()


def test_regressors_fitted_on_frames_take_the_array_path_within_rounding(tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    from registry import Registry
    from registry.serving.worker import load_predictor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = Ridge(alpha=0.5).fit(X, y)
    home = tmp_path / "home"
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        reg.register(model, "diabetes", reference=X)
        predictor = load_predictor(reg, "diabetes")
    assert predictor.input_kind == "array"
    rows = X.iloc[:50].to_numpy().tolist()
    expected = model.predict(X.iloc[:50])
    assert np.allclose(predictor.predict(rows), expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(
    ("allowed", "seen"), [(None, ("127.0.0.1", "http")), ("127.0.0.1", ("203.0.113.9", "https"))]
)
def test_forwarded_headers_are_believed_only_from_the_addresses_the_user_names(
    allowed: str | None, seen: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn believes X-Forwarded-For/-Proto from 127.0.0.1 by default, where any local user could
    write any client address into the access log. A worker believes them only when FORWARDED_ALLOW_IPS
    (uvicorn's setting, for a proxy on this host) names the sender."""
    import asyncio
    from types import SimpleNamespace

    from registry.serving.worker import server_config

    if allowed is None:
        monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    else:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", allowed)
    reached: list[tuple[str, str]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        reached.append((scope["client"][0], scope["scheme"]))

    nullable = SimpleNamespace(schema=SimpleNamespace(any_nullable=True))  # leaves sklearn's config be
    config = server_config(nullable, app, 0, log_config=None)
    config.load()
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    scope = {"type": "http", "client": ("127.0.0.1", 40000), "scheme": "http", "headers": headers}
    asyncio.run(config.loaded_app(scope, None, None))
    assert reached == [seen]
