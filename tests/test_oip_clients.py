"""Third-party clients against a real model server: readiness, metadata and errors as they see them.

Triton's (`tritonclient.http`) and KServe's (`kserve.InferenceRESTClient`) Open Inference Protocol
clients, and MLflow's own scoring client and REST error handling, each against `modeldeck serve`.
Inference itself (datatypes, binary tensors) is tested in test_oip_inference.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from helpers import error_of, wait_until
from oip_servers import IRIS_COLUMNS, Server, iris, register, serving

from registry.serving.server import release

ROW = [5.1, 3.5, 1.4, 0.2]


def triton(server: Server) -> Any:
    import tritonclient.http as triton_http

    return triton_http.InferenceServerClient(url=server.host_port)


def per_column(names: list[str], row: list[float] = ROW) -> list[Any]:
    """One FP64 input per column, sent as JSON (no binary tensor data)."""
    import numpy as np
    import tritonclient.http as triton_http

    inputs = []
    for name, value in zip(names, row, strict=True):
        tensor = triton_http.InferInput(name, [1], "FP64")
        tensor.set_data_from_numpy(np.array([value]), binary_data=False)
        inputs.append(tensor)
    return inputs


def kserve_call(method: str, *args: Any, **kwargs: Any) -> Any:
    """`InferenceRESTClient(protocol v2).<method>(*args)`, run to completion."""
    from kserve import InferenceRESTClient, RESTConfig

    async def run() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        try:
            return await getattr(client, method)(*args, **kwargs)
        finally:
            await client.close()

    return asyncio.run(run())


# ---------------------------------------------------------------------- readiness and metadata
def test_triton_client_sees_a_live_ready_server_and_its_model(iris_server: Server) -> None:
    client = triton(iris_server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
        assert not client.is_model_ready("iris", "2") and not client.is_model_ready("other")
        assert client.get_server_metadata() == {
            "name": "modeldeck",
            "version": release(),
            "extensions": ["binary_tensor_data"],
        }
        for metadata in (client.get_model_metadata("iris"), client.get_model_metadata("iris", "1")):
            assert metadata["name"] == "iris" and metadata["versions"] == ["1"]
            assert [i["name"] for i in metadata["inputs"]] == IRIS_COLUMNS
            assert {o["name"] for o in metadata["outputs"]} == {"predict", "predict_proba"}
    finally:
        client.close()


def test_kserve_client_sees_a_live_ready_server_and_its_model(iris_server: Server) -> None:
    url = iris_server.url
    assert kserve_call("is_server_live", url) is True
    assert kserve_call("is_server_ready", url) is True
    assert kserve_call("is_model_ready", url, "iris") is True
    assert kserve_call("is_model_ready", url, "other") is False
    # KServe's REST client has no server or model metadata call: its users read them with plain HTTP
    with iris_server.client() as http:
        assert http.get("/v2").json()["extensions"] == ["binary_tensor_data"]


def test_health_bodies_carry_the_protocols_live_and_ready_keys(iris_server: Server) -> None:
    with iris_server.client() as http:
        for path in ("/v2/health/live", "/health/live"):
            assert http.get(path).json() == {"live": True, "status": "live"}
        for path in ("/v2/health/ready", "/health/ready", "/ping", "/health"):
            answer = http.get(path)
            assert answer.status_code == 200
            assert answer.json() == {"ready": True, "status": "ready", "model": "iris", "version": "1"}
        assert http.get("/v2/models/iris/ready").json() == {"name": "iris", "version": "1", "ready": True}


# ---------------------------------------------------------------------- errors as clients show them
def test_triton_client_errors_are_strings_naming_the_field(iris_server: Server) -> None:
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    client = triton(iris_server)
    try:
        with pytest.raises(InferenceServerException) as unknown_model:
            client.get_model_metadata("other")
        assert str(unknown_model.value) == "[404] this server serves model 'iris', not 'other'"
        assert unknown_model.value.status() == "404"

        columns = [*IRIS_COLUMNS[:3], "colour"]
        wanted = [triton_http.InferRequestedOutput("predict", binary_data=False)]
        with pytest.raises(InferenceServerException) as wrong_column:
            client.infer("iris", per_column(columns), outputs=wanted)
        said = str(wrong_column.value)
        assert said.startswith("[422] missing column(s) ['petal width (cm)']"), said
        assert "unexpected column(s) ['colour']" in said

        text = per_column(IRIS_COLUMNS)
        text[1] = triton_http.InferInput(IRIS_COLUMNS[1], [1], "BYTES")
        text[1].set_data_from_numpy(pd.Series(["wide"], dtype=object).to_numpy(), binary_data=False)
        with pytest.raises(InferenceServerException) as wrong_type:
            client.infer("iris", text, outputs=wanted)
        said = str(wrong_type.value)
        assert said.startswith("[422] column 'sepal width (cm)' is numeric"), said
        assert "sends it as BYTES" in said
    finally:
        client.close()


def test_kserve_client_errors_carry_the_message(iris_server: Server) -> None:
    body = {
        "inputs": [
            {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
            for name, value in zip([*IRIS_COLUMNS[:3], "colour"], ROW, strict=True)
        ]
    }
    with pytest.raises(httpx.HTTPStatusError) as wrong_column:
        kserve_call("infer", iris_server.url, body, model_name="iris")
    said = str(wrong_column.value)
    assert said.startswith("missing column(s) ['petal width (cm)']; unexpected column(s) ['colour']"), said
    assert "'422 Unprocessable Entity'" in said and wrong_column.value.response.status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "words"),
    [
        ("GET", "/nope", 404, "ENDPOINT_NOT_FOUND", "no endpoint GET /nope"),
        ("GET", "/v2/nope", 404, None, "no endpoint GET /v2/nope"),
        ("GET", "/invocations", 405, "BAD_REQUEST", "method GET is not allowed on /invocations; use POST"),
        ("POST", "/v2/models/iris", 405, None, "method POST is not allowed on /v2/models/iris"),
        ("GET", "/v2/models/other/ready", 404, None, "not 'other'"),
        ("GET", "/v2/models/iris/versions/2/ready", 404, None, "version 1, not 2"),
        ("GET", "/v2/models/iris/versions/2", 404, None, "version 1, not 2"),
        ("POST", "/v2/models/iris/infer", 400, None, "body is not valid JSON"),
        ("POST", "/invocations", 415, "BAD_REQUEST", "Content-Type 'text/plain' is not supported"),
    ],
)
def test_every_route_answers_errors_in_its_protocols_shape(
    iris_server: Server, method: str, path: str, status: int, code: str | None, words: str
) -> None:
    with iris_server.client() as http:
        answer = http.request(method, path, content=b"{", headers={"content-type": "text/plain"})
    assert answer.status_code == status, answer.text
    error = error_of(answer)  # OIP's {"error": "..."} on /v2 routes, MLflow's shape elsewhere
    assert words in error["message"] and error.get("error_code") == code, error
    if status == 405:
        assert answer.headers["allow"]


# ---------------------------------------------------------------------- the bearer token
@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """iris served beyond loopback (0.0.0.0), so it requires the bearer token; the token. Its access
    log is on."""
    home = tmp_path_factory.mktemp("oip-guarded-home")
    env = register(home, {"iris": iris()})
    logs = tmp_path_factory.mktemp("oip-guarded-logs")
    with serving(env, logs, {"iris": ["iris", "--access-log"]}, host="0.0.0.0") as up:
        yield up["iris"], (home / "serving-token").read_text().strip()


def test_the_access_log_names_who_connected_and_no_header_names_the_server_software(
    guarded_server: tuple[Server, str],
) -> None:
    """`--access-log` logs every request (uvicorn would give its access log the server's warning level,
    and log nothing). The address is the one that connected: any local user can send X-Forwarded-For,
    so it is not believed, not even from 127.0.0.1. No `Server` header advertises uvicorn."""
    server, token = guarded_server
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with server.client() as http:
        answer = http.post(
            "/invocations",
            json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
            headers={"Authorization": f"Bearer {token}", **spoofed},
        )
    assert answer.status_code == 200, answer.text
    assert "server" not in answer.headers
    line = wait_until(
        lambda: next((x for x in server.log.read_text().splitlines() if "POST /invocations" in x), None),
        timeout=10,
        what="the access log's line",
    )
    assert "127.0.0.1:" in line and '"POST /invocations HTTP/1.1" 200' in line, line
    assert "203.0.113.9" not in server.log.read_text()


def test_trailing_whitespace_is_no_part_of_a_header_value(guarded_server: tuple[Server, str]) -> None:
    """RFC 9110 5.5: the token and the request id still match with spaces or a tab after them (the
    worker parses headers itself, to bound them: it trims them as uvicorn does)."""
    server, token = guarded_server
    body = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {token} \t\r\n"
        f"X-Request-ID: kept-1  \r\nContent-Type: application/json \r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(head.encode() + body)
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"\r\nx-request-id: kept-1\r\n" in answer and answer.endswith(b'{"predictions":[0]}')


def test_health_checks_need_no_token_but_metadata_and_predictions_do(
    guarded_server: tuple[Server, str],
) -> None:
    from tritonclient.utils import InferenceServerException

    server, token = guarded_server
    client = triton(server)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris", "1")
        for call in (client.get_server_metadata, lambda: client.get_model_metadata("iris")):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert str(refused.value) == "[401] missing or wrong bearer token in the Authorization header"
        authorized = {"Authorization": f"Bearer {token}"}
        assert client.get_server_metadata(headers=authorized)["name"] == "modeldeck"
        assert client.get_model_metadata("iris", headers=authorized)["versions"] == ["1"]
        lower = {"Authorization": f"bearer {token}"}  # the scheme is case-insensitive (RFC 9110 11.1)
        assert client.get_server_metadata(headers=lower)["name"] == "modeldeck"
    finally:
        client.close()
    assert kserve_call("is_model_ready", server.url, "iris") is True
    mlflow = httpx.post(f"{server.url}/invocations", json={"inputs": [ROW]}, timeout=10)
    assert mlflow.status_code == 401
    assert (
        error_of(mlflow)["error_code"] == "UNAUTHENTICATED" and error_of(mlflow)["field"] == "Authorization"
    )


def test_triton_class_count_is_refused_naming_the_parameter(iris_server: Server) -> None:
    """The classification extension is not offered: `class_count` is a 400, not every probability."""
    import numpy as np
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    tensor = triton_http.InferInput("x", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    client = triton(iris_server)
    try:
        for binary in (False, True):
            asked = triton_http.InferRequestedOutput("predict_proba", binary_data=binary, class_count=2)
            with pytest.raises(InferenceServerException) as refused:
                client.infer("iris", [tensor], outputs=[asked])
            assert str(refused.value).startswith("[400] outputs[0].parameters.classification")
        assert "classification" not in client.get_server_metadata()["extensions"]
    finally:
        client.close()


@pytest.mark.parametrize("headers", [{"X-Big": "a" * 70_000}, {f"X-H{k}": "1" for k in range(120)}])
def test_triton_client_reads_the_http_layers_431_as_an_error_message(
    iris_server: Server, headers: dict[str, str]
) -> None:
    """Headers over the limit are refused before any route, in the route's protocol shape (the client
    decodes the body; plain text made it fail 'while decoding the response')."""
    import numpy as np
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    tensor = triton_http.InferInput("x", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    client = triton(iris_server)
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.infer("iris", [tensor], headers=dict(headers))  # it adds its own to the dict
    finally:
        client.close()
    assert str(refused.value).startswith("[431] ") and "request headers" in str(refused.value)
    with iris_server.client() as http:  # MLflow's shape elsewhere
        answer = http.get("/health/live", headers=headers)
        assert answer.status_code == 431 and error_of(answer)["field"] == "headers"
        oip = http.get("/v2/health/live", headers=headers)
        assert oip.status_code == 431 and error_of(oip)["code"] == "request_headers_too_large"


# ---------------------------------------------------------------------- not ready yet (in-process)
def test_a_model_not_warmed_up_yet_is_not_ready(tmp_path) -> None:
    """Workers warm up before they listen, so a real server is never seen loading: the app is."""
    from payload_models import AppClient

    from registry import Registry
    from registry.serving.predictor import Predictor
    from registry.serving.server import create_app

    register(tmp_path, {"iris": iris()})
    with Registry(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        predictor = Predictor(iris()[0], reg.get("iris"))
    client = AppClient(create_app(predictor, batching=False, max_body_bytes=1000))
    try:
        for path in ("/v2/models/iris/versions/1/ready", "/v2/health/ready", "/health/ready", "/ping"):
            loading = client.get(path)
            error = error_of(loading)  # the route's shape: OIP's on /v2, MLflow's on the others
            assert loading.status_code == 503 and error["ready"] is False and error["code"] == "not_ready"
            assert error["message"] == "model iris version 1 is not ready yet (loading or warming up)"
        assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"

        predictor.warm_up(None)
        assert client.get("/v2/models/iris/ready").status_code == 200
        huge = {"inputs": [{"name": "x", "shape": [100, 4], "datatype": "FP64", "data": ROW * 100}]}
        for path in ("/v2/models/iris/infer", "/invocations"):
            too_large = client.post(path, json=huge)
            error = error_of(too_large)
            assert too_large.status_code == 413 and error["field"] == "body"
            assert error["message"] == "request body over the limit of 1,000 bytes"
    finally:
        client.close()


# ---------------------------------------------------------------------- MLflow's own clients
def test_mlflow_clients_show_the_servers_error_message(iris_server: Server) -> None:
    from mlflow.exceptions import RestException
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

    model, frame = iris()
    scoring = ScoringServerClient("127.0.0.1", iris_server.port)
    scoring.ping()
    assert scoring.get_version() == release()
    predictions = scoring.invoke(frame.head(3)).get_predictions(predictions_format="ndarray")
    assert predictions.tolist() == model.predict(frame.head(3)).tolist()

    wrong = frame.head(1).rename(columns={IRIS_COLUMNS[3]: "colour"})
    with pytest.raises(Exception, match=r"missing column\(s\) \['petal width \(cm\)'\]"):
        scoring.invoke(wrong)

    answer = http_request(
        MlflowHostCreds(iris_server.url), "/invocations", "POST", json={"dataframe_records": [{"a": 1}]}
    )
    with pytest.raises(RestException) as refused:
        verify_rest_response(answer, "/invocations")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert str(refused.value).startswith("INVALID_PARAMETER_VALUE: missing column(s) ['sepal length (cm)'")


# ---------------------------------------------------------------------- request ids and labels
def test_each_client_gets_a_request_id_it_can_send_labels_by(iris_server: Server) -> None:
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    triton_answer = triton(iris_server).infer("iris", per_column(IRIS_COLUMNS), request_id="triton-1")
    assert triton_answer.get_response()["id"] == "triton-1"  # OIP: the request's id comes back
    body = {"id": "kserve-1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    assert kserve_call("infer", iris_server.url, body, model_name="iris").id == "kserve-1"
    mlflow_answer = http_request(
        MlflowHostCreds(iris_server.url), "/invocations", "POST", json={"inputs": [ROW]}
    )
    mlflow_id = mlflow_answer.headers["X-Request-ID"]
    assert mlflow_answer.status_code == 200 and len(mlflow_id) == 32
    labels = [{"request_id": rid, "label": 0} for rid in ("triton-1", "kserve-1", mlflow_id)]
    with iris_server.client() as http:
        assert http.post("/feedback", json=labels).json() == {"accepted": 3, "duplicates": 0, "unknown": 0}
