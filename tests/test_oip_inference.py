"""Open Inference Protocol inference as the real clients do it: Triton's `tritonclient.http` (JSON and
binary tensor data) and KServe's `InferenceRESTClient`, against real `modeldeck serve` processes.

Four models: integer classes on float columns (iris), text classes (species), a regressor (price) and
a classifier on a text, an integer, a float and a boolean column (shop). Every answer must equal
scikit-learn's in-process predict / predict_proba on the same rows, and every response tensor must
carry the datatype the model metadata declares.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from oip_servers import Server, start_server, wait_ready

ROWS = 6
#: What each model's metadata must declare: input datatypes by column, then predict's datatype.
DECLARED = {
    "iris": ({"sepal length (cm)": "FP64", "petal width (cm)": "FP64"}, "INT64"),
    "species": ({"petal length (cm)": "FP64"}, "BYTES"),
    "price": ({"petal width (cm)": "FP64"}, "FP64"),
    "shop": ({"city": "BYTES", "visits": "INT64", "basket": "FP64", "member": "BOOL"}, "INT64"),
}
#: How each numpy column goes over the wire.
WIRE_TYPES = {"object": "BYTES", "int64": "INT64", "float64": "FP64", "float32": "FP32", "bool": "BOOL"}


def shop_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    count = 60
    return pd.DataFrame(
        {
            "city": rng.choice(["paris", "lyon", "nice"], count),
            "visits": rng.integers(0, 12, count),
            "basket": rng.uniform(5.0, 80.0, count).round(2),
            "member": rng.random(count) < 0.4,
        }
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The four models registered in a fresh home, with their reference frames."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from registry import Registry

    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    shop = shop_frame()
    bought = ((shop["visits"] > 5) ^ shop["member"]).astype(int)
    prepare = ColumnTransformer(
        [("city", OneHotEncoder(), ["city"])], remainder="passthrough", verbose_feature_names_out=False
    )
    widths = X.drop(columns="sepal length (cm)")
    models = {
        "iris": (LogisticRegression(max_iter=1000).fit(X, y), X),
        "species": (LogisticRegression(max_iter=1000).fit(X, names), X),
        "price": (Ridge().fit(widths, X["sepal length (cm)"]), widths),
        "shop": (Pipeline([("prepare", prepare), ("fit", LogisticRegression())]).fit(shop, bought), shop),
    }
    home = tmp_path_factory.mktemp("oip-home")
    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        for name, (model, reference) in models.items():
            reg.register(model, name, reference=reference)
    env = {**os.environ, "MODELDECK_HOME": str(home)}
    env.pop("MODELDECK_DB_URL", None)
    return {
        "env": env,
        "models": {name: model for name, (model, _) in models.items()},
        "frames": {name: frame for name, (_, frame) in models.items()},
    }


@pytest.fixture(scope="module")
def servers(fitted, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    logs = tmp_path_factory.mktemp("oip-logs")
    started = {name: start_server(fitted["env"], logs / f"{name}.log", name) for name in DECLARED}
    try:
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():
            server.process.terminate()
        for server in started.values():
            server.process.wait(timeout=15)


def triton_client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def sent_rows(fitted: dict[str, Any], name: str, floats: str) -> pd.DataFrame:
    """The rows a test sends, float columns as `floats` (float64, float32, or int64: whole numbers)."""
    frame = fitted["frames"][name].iloc[:: max(1, len(fitted["frames"][name]) // ROWS)][:ROWS].copy()
    for column in frame.columns:
        if frame[column].dtype == np.float64 and floats != "float64":
            frame[column] = frame[column].round() if floats == "int64" else frame[column]
            frame[column] = frame[column].astype(floats)
    return frame


def expected(fitted: dict[str, Any], name: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """scikit-learn's own answers on `frame` (numbers as float64, as the server calls the model)."""
    model = fitted["models"][name]
    data = frame.astype({c: np.float64 for c in frame.columns if frame[c].dtype.kind in "fi"})
    answers = {"predict": model.predict(data)}
    if hasattr(model, "predict_proba"):
        answers["predict_proba"] = model.predict_proba(data)
    return answers


def columns_of(frame: pd.DataFrame) -> list[tuple[str, np.ndarray, str]]:
    """Each column as (name, values, OIP datatype), text as numpy objects (what the clients take)."""
    return [(c, frame[c].to_numpy(), WIRE_TYPES[str(frame[c].dtype)]) for c in frame.columns]


def assert_answers(name: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    predicted = got["predict"]
    if predicted.dtype == object:  # BYTES: bytes in binary mode, text in JSON mode
        predicted = np.array([v.decode() if isinstance(v, bytes) else v for v in predicted])
    if DECLARED[name][1] == "FP64":
        np.testing.assert_allclose(predicted, want["predict"], rtol=1e-9)
    else:
        assert predicted.tolist() == want["predict"].tolist()
    if "predict_proba" in want:
        np.testing.assert_allclose(got["predict_proba"], want["predict_proba"], rtol=1e-9, atol=1e-12)


def declared_outputs(server: Server, name: str) -> dict[str, str]:
    """The output datatypes the model metadata declares."""
    with triton_client(server) as client:
        return {o["name"]: o["datatype"] for o in client.get_model_metadata(name)["outputs"]}


# ---------------------------------------------------------------------- metadata
@pytest.mark.parametrize("name", list(DECLARED))
def test_metadata_declares_the_datatypes_of_the_signature_and_the_classes(servers, name):
    inputs, predict = DECLARED[name]
    with triton_client(servers[name]) as client:
        metadata = client.get_model_metadata(name)
    declared = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    assert {column: declared[column] for column in inputs} == inputs
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
    assert outputs["predict"] == (predict, [-1])
    if name != "price":
        assert outputs["predict_proba"] == ("FP64", [-1, len(metadata["parameters"]["classes"])])


# ---------------------------------------------------------------------- tritonclient
CASES = [
    ("iris", "float64", "matrix"),
    ("iris", "float32", "columns"),
    ("iris", "int64", "matrix"),
    ("species", "float64", "columns"),
    ("species", "float32", "matrix"),
    ("price", "float64", "matrix"),
    ("price", "int64", "columns"),
    ("shop", "float64", "columns"),
]


def triton_inputs(frame: pd.DataFrame, form: str, binary: bool) -> list[triton.InferInput]:
    if form == "matrix":
        values = frame.to_numpy()
        tensor = triton.InferInput("x", list(values.shape), WIRE_TYPES[str(values.dtype)])
        tensor.set_data_from_numpy(values, binary_data=binary)
        return [tensor]
    inputs = []
    for column, values, datatype in columns_of(frame):
        tensor = triton.InferInput(column, [len(values)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("name", "floats", "form"), CASES, ids=["-".join(c) for c in CASES])
def test_tritonclient_answers_equal_scikit_learns(servers, fitted, name, floats, form, binary):
    server = servers[name]
    frame = sent_rows(fitted, name, floats)
    want = expected(fitted, name, frame)
    outputs = [triton.InferRequestedOutput(output, binary_data=binary) for output in want]
    with triton_client(server) as client:
        result = client.infer(name, triton_inputs(frame, form, binary), outputs=outputs)
    got = {output: result.as_numpy(output) for output in want}
    assert_answers(name, got, want)
    sent = result.get_response()["outputs"]
    assert {o["name"]: o["datatype"] for o in sent} == declared_outputs(server, name)
    assert all(("binary_data_size" in o.get("parameters", {})) == binary for o in sent)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_compressed_requests_answer_like_plain_ones(servers, fitted, compression, binary):
    """`request_compression_algorithm` (Content-Encoding gzip / deflate), and the response compression
    a client may ask for (answered uncompressed, which the client reads as such)."""
    frame = sent_rows(fitted, "iris", "float64")
    want = expected(fitted, "iris", frame)
    outputs = [triton.InferRequestedOutput(output, binary_data=binary) for output in want]
    with triton_client(servers["iris"]) as client:
        result = client.infer(
            "iris",
            triton_inputs(frame, "matrix", binary),
            outputs=outputs,
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,
        )
    assert_answers("iris", {output: result.as_numpy(output) for output in want}, want)


@pytest.mark.parametrize("name", ["iris", "species", "shop"])
def test_tritonclient_without_outputs_gets_every_output_in_binary(servers, fitted, name):
    """Triton's default: no outputs named, so all of them, as binary data (`binary_data_output`)."""
    frame = sent_rows(fitted, name, "float64")
    with triton_client(servers[name]) as client:
        result = client.infer(name, triton_inputs(frame, "columns", binary=True))
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["predict", "predict_proba"]
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    want = expected(fitted, name, frame)
    assert_answers(name, {o: result.as_numpy(o) for o in want}, want)


# ---------------------------------------------------------------------- KServe
def kserve_infer(
    server: Server, name: str, frame: pd.DataFrame, binary: bool, outputs: list[str] | None
) -> Any:
    inputs = []
    for column, values, datatype in columns_of(frame):
        tensor = InferInput(column, [len(values)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    requested = [RequestedOutput(o, {"binary_data": binary}) for o in outputs] if outputs else None
    request = InferRequest(name, inputs, request_outputs=requested)

    async def run() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            return await client.infer(server.url, request, model_name=name)
        finally:
            await client._client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", list(DECLARED))
def test_kserve_client_answers_equal_scikit_learns(servers, fitted, name, binary):
    frame = sent_rows(fitted, name, "float64")
    want = expected(fitted, name, frame)
    response = kserve_infer(servers[name], name, frame, binary, outputs=None if not binary else list(want))
    got = {o.name: np.asarray(o.as_numpy()) for o in response.outputs}
    assert_answers(name, got, want)
    assert {o.name: o.datatype for o in response.outputs} == declared_outputs(servers[name], name)
