"""OIP tensors through the real ASGI app, in-process: datatypes into columns, the outputs rule, and the
binary tensor data extension's edge cases (every malformed body a 400 naming the field, never a 500).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import numpy as np
import orjson
import pytest
from payload_models import IRIS_COLUMNS, AppClient, create_model_app, register_models
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from registry.serving import oip_binary, oip_types

HEADER = "Inference-Header-Content-Length"
TOKEN = "s3cret-token"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
SHOP = {"city": (["paris", "lyon"], "BYTES"), "basket": ([10.0, 30.5], "FP64"), "visits": ([2, 5], "INT64")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oip-payloads-home")
    register_models(path, only=("iris", "shop", "narrow", "tree", "multi"))
    return path


@pytest.fixture(scope="module")
def apps(home: Path) -> Iterator[dict[str, AppClient]]:
    clients = {
        name: AppClient(create_model_app(home, name)) for name in ("iris", "shop", "narrow", "tree", "multi")
    }
    clients["batched"] = AppClient(create_model_app(home, "iris", batching=True))
    clients["small"] = AppClient(create_model_app(home, "iris", max_body_bytes=200))
    clients["token"] = AppClient(create_model_app(home, "iris", token=TOKEN))
    yield clients
    for client in clients.values():
        client.close()


def infer(client: AppClient, model: str, body: dict[str, Any] | bytes, **headers: str) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(f"/v2/models/{model}/infer", content=content, headers=headers)


def matrix(datatype: str, rows: list[list[Any]] = ROWS, **extra: Any) -> dict[str, Any]:
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": datatype, "data": flat}], **extra}


def shop(**changes: tuple[list[Any], str]) -> dict[str, Any]:
    columns = {**SHOP, **changes}
    inputs = [{"name": n, "shape": [len(v)], "datatype": t, "data": v} for n, (v, t) in columns.items()]
    return {"inputs": inputs}


def error_of(response: Any, status: int, field: str) -> str:
    """The error's message, after checking its status, its protocol shape and that it names `field`."""
    assert response.status_code == status, response.text
    error = helpers.error_of(response)
    assert error["field"] == field and field in error["message"], error
    return error["message"]


def outputs(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


# ---------------------------------------------------------------------- datatypes
def test_metadata_declares_inputs_from_the_signature_dtypes(apps):
    shop_inputs = {i["name"]: i["datatype"] for i in apps["shop"].get("/v2/models/shop").json()["inputs"]}
    assert shop_inputs == {"city": "BYTES", "basket": "FP64", "visits": "INT64"}
    narrow = apps["narrow"].get("/v2/models/narrow").json()
    assert {i["datatype"] for i in narrow["inputs"]} == {"FP32"}
    assert {o["name"]: o["datatype"] for o in narrow["outputs"]} == {
        "predict": "INT64",
        "predict_proba": "FP64",
    }


def test_whole_numbers_in_any_numeric_datatype_predict_like_fp64(apps):
    whole = [[5.0, 3.0, 1.0, 0.0], [7.0, 3.0, 5.0, 2.0]]
    want = outputs(infer(apps["iris"], "iris", matrix("FP64", whole)))
    for datatype in ("FP32", "INT32", "INT64", "UINT8"):
        got = outputs(infer(apps["iris"], "iris", matrix(datatype, [[int(v) for v in r] for r in whole])))
        assert got == want, datatype
    assert outputs(infer(apps["shop"], "shop", shop(visits=([2.0, 5.0], "FP64")))) == outputs(
        infer(apps["shop"], "shop", shop())
    )


def test_bool_tensors_are_ones_and_zeros(apps):
    bools = [[True, False, True, False]]
    as_numbers = outputs(infer(apps["iris"], "iris", matrix("FP64", [[1.0, 0.0, 1.0, 0.0]])))
    assert outputs(infer(apps["iris"], "iris", matrix("BOOL", bools))) == as_numbers
    not_bools = infer(apps["iris"], "iris", matrix("BOOL", [[True, 1.5, True, False]]))
    assert "a number in a BOOL tensor" in error_of(not_bools, 422, IRIS_COLUMNS[1])


@pytest.mark.parametrize(
    ("model", "body", "field", "words"),
    [
        ("shop", shop(visits=([2, 2.5], "FP64")), "visits", "row 1: column 'visits' is not a whole number"),
        ("shop", shop(visits=([2, 2.5], "INT64")), "visits", "not a whole number"),
        ("iris", matrix("INT64", [[2**53 + 1, 1, 1, 1]]), IRIS_COLUMNS[0], "holds exactly"),
        ("narrow", matrix("INT64", [[2**24 + 1, 1, 1, 1]]), IRIS_COLUMNS[0], "float32 input holds exactly"),
        ("tree", matrix("INT64", [[1, 2**24 + 1, 1, 1]]), IRIS_COLUMNS[1], "float32 input holds exactly"),
        ("iris", matrix("BYTES", [["5.1", "3.5", "1.4", "0.2"]]), IRIS_COLUMNS[0], "sends it as BYTES"),
        ("shop", shop(basket=(["10", "30"], "BYTES")), "basket", "numeric"),
        ("shop", shop(city=(["paris", "lyon"], "FP64")), "city", "categorical"),
        ("shop", shop(city=([1, 2], "INT64")), "city", "not BYTES"),
    ],
    ids=[
        "fp-into-int",
        "int-tensor-fraction",
        "int-beyond-float64",
        "int-beyond-float32",
        "int-beyond-a-float32-model",
        "bytes-matrix",
        "bytes-column",
        "fp-into-text",
        "int-into-text",
    ],
)
def test_a_conversion_that_would_lose_or_guess_is_a_422_naming_the_column(apps, model, body, field, words):
    assert words in error_of(infer(apps[model], model, body), 422, field)


@pytest.mark.parametrize(
    ("output", "datatype"),
    [
        ({"kind": "classification", "classes": [0, 1, 2]}, "INT64"),
        ({"kind": "classification", "classes": ["no", "yes"]}, "BYTES"),
        ({"kind": "classification", "classes": [False, True]}, "BOOL"),
        ({"kind": "classification", "classes": [0.0, 1.5]}, "FP64"),
        ({"kind": "classification", "classes": [0, "other"]}, "BYTES"),
        ({"kind": "regression"}, "FP64"),
    ],
)
def test_predict_is_declared_as_the_classes_type(output, datatype):
    assert oip_types.predict_datatype(output) == datatype


@pytest.mark.parametrize(
    ("dtype", "kind", "datatype"),
    [
        ("int64", "numeric", "INT64"),
        ("int32", "numeric", "INT64"),
        ("Int64", "numeric", "INT64"),
        ("float64", "numeric", "FP64"),
        ("float32", "numeric", "FP32"),
        ("bool", "numeric", "BOOL"),
        ("object", "numeric", "FP64"),
        ("object", "categorical", "BYTES"),
        ("category", "categorical", "BYTES"),
    ],
)
def test_inputs_are_declared_from_the_signature_dtype(dtype, kind, datatype):
    assert oip_types.input_datatype({"name": "c", "dtype": dtype, "kind": kind}) == datatype


@pytest.mark.parametrize("datatype", ["FP128", "STRING", "fp64", None, 7])
def test_a_datatype_the_protocol_does_not_know_is_a_400_naming_it(apps, datatype):
    body = matrix("FP64")
    body["inputs"][0]["datatype"] = datatype
    assert "not a datatype" in error_of(infer(apps["iris"], "iris", body), 400, "inputs[0].datatype")


def test_a_shape_that_does_not_match_the_data_is_a_422_naming_it(apps):
    body = shop()
    body["inputs"][2]["shape"] = [3]
    assert "holds 3 value(s) but its data has 2" in error_of(
        infer(apps["shop"], "shop", body), 422, "inputs[2].shape"
    )
    body["inputs"][2]["shape"] = "2"
    error_of(infer(apps["shop"], "shop", body), 400, "inputs[2].shape")


def test_response_tensors_carry_the_declared_datatypes(apps):
    for model in ("iris", "shop", "narrow"):
        declared = {
            o["name"]: o["datatype"] for o in apps[model].get(f"/v2/models/{model}").json()["outputs"]
        }
        body = shop() if model == "shop" else matrix("FP64")
        sent = {name: o["datatype"] for name, o in outputs(infer(apps[model], model, body)).items()}
        assert sent == declared, model


# ---------------------------------------------------------------------- the outputs rule
def test_no_outputs_means_every_output_and_one_named_output_only_that(apps):
    answers = []
    for app in ("iris", "batched"):
        every = outputs(infer(apps[app], "iris", matrix("FP64")))
        assert list(every) == ["predict", "predict_proba"]
        assert every["predict_proba"]["shape"] == [3, 3]
        only = outputs(infer(apps[app], "iris", matrix("FP64", outputs=[{"name": "predict"}])))
        assert only == {"predict": every["predict"]}
        answers.append(every)
    assert answers[0] == answers[1]  # micro-batched: the same answers
    assert list(outputs(infer(apps["shop"], "shop", shop()))) == ["predict"]  # a regressor: predict only


# ---------------------------------------------------------------------- binary tensor data
def binary_request(header: dict[str, Any], *tensors: bytes) -> tuple[bytes, str]:
    text = orjson.dumps(header)
    return text + b"".join(tensors), str(len(text))


def binary_input(name: str, datatype: str, values: np.ndarray) -> tuple[dict[str, Any], bytes]:
    raw = serialize_byte_tensor(values).item() if datatype == "BYTES" else values.tobytes()
    shape = list(values.shape)
    return {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }, raw


def split_response(response: Any) -> tuple[dict[str, Any], bytes]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers[HEADER])
    return orjson.loads(response.content[:size]), response.content[size:]


def test_binary_inputs_predict_like_json_and_binary_outputs_decode_to_the_same(apps):
    tensor, raw = binary_input("x", "FP32", np.array(ROWS, dtype=np.float32))
    body, length = binary_request({"inputs": [tensor], "parameters": {"binary_data_output": True}}, raw)
    header, tail = split_response(infer(apps["iris"], "iris", body, **{HEADER: length}))
    json_rows = np.array(ROWS, dtype=np.float32).astype(np.float64).tolist()
    want = outputs(infer(apps["iris"], "iris", matrix("FP64", json_rows)))
    predict, proba = header["outputs"]
    assert "data" not in predict and predict["datatype"] == "INT64"
    cut = predict["parameters"]["binary_data_size"]
    assert np.frombuffer(tail[:cut], "<i8").tolist() == want["predict"]["data"]
    assert np.frombuffer(tail[cut:], "<f8").tolist() == want["predict_proba"]["data"]
    assert len(tail) == cut + proba["parameters"]["binary_data_size"]


def test_binary_bytes_int_and_float_columns_in_input_order(apps):
    parts = [
        binary_input("city", "BYTES", np.array(["paris", "lyon"], dtype=object)),
        binary_input("basket", "FP64", np.array([10.0, 30.5])),
        binary_input("visits", "INT64", np.array([2, 5])),
    ]
    body, length = binary_request({"inputs": [t for t, _ in parts]}, *(raw for _, raw in parts))
    assert outputs(infer(apps["shop"], "shop", body, **{HEADER: length})) == outputs(
        infer(apps["shop"], "shop", shop())
    )


def test_only_the_outputs_asked_as_binary_are_binary(apps):
    asked = [{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": True}}]
    header, tail = split_response(infer(apps["iris"], "iris", matrix("FP64", outputs=asked)))
    predict, proba = header["outputs"]
    assert "data" in predict and "data" not in proba
    assert np.frombuffer(tail, "<f8").reshape(3, 3).sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])


def test_bytes_outputs_are_length_prefixed(home):
    from registry.serving.oip_binary import encode

    tensor = {"name": "predict", "datatype": "BYTES", "shape": [3], "data": ["setosa", "", "virginica"]}
    raw = encode(tensor)
    assert tensor["parameters"]["binary_data_size"] == len(raw)
    assert deserialize_bytes_tensor(raw).tolist() == [b"setosa", b"", b"virginica"]


FP64_ROW = np.array([ROWS[0]], dtype=np.float64)
MALFORMED = {
    "header-beyond-body": (lambda t, raw: (orjson.dumps({"inputs": [t]}) + raw, "9999"), HEADER),
    "header-not-a-number": (lambda t, raw: (orjson.dumps({"inputs": [t]}) + raw, "12a"), HEADER),
    "header-cuts-the-json": (lambda t, raw: (orjson.dumps({"inputs": [t]}) + raw, "10"), HEADER),
    "bytes-left-over": (lambda t, raw: binary_request({"inputs": [t]}, raw, b"\0" * 8), HEADER),
    "size-beyond-body": (
        lambda t, raw: binary_request({"inputs": [t | {"parameters": {"binary_data_size": 64}}]}, raw),
        "inputs[0].parameters.binary_data_size",
    ),
    "size-not-shape": (
        lambda t, raw: binary_request({"inputs": [t | {"parameters": {"binary_data_size": 24}}]}, raw[:24]),
        "inputs[0].parameters.binary_data_size",
    ),
    "size-negative": (
        lambda t, raw: binary_request({"inputs": [t | {"parameters": {"binary_data_size": -1}}]}, raw),
        "inputs[0].parameters.binary_data_size",
    ),
    "shape-not-dtype": (
        lambda t, raw: binary_request({"inputs": [t | {"datatype": "FP32"}]}, raw),
        "inputs[0].parameters.binary_data_size",
    ),
}


def test_binary_data_without_the_header_or_beside_json_data_is_a_400(apps):
    tensor, raw = binary_input("x", "FP64", FP64_ROW)
    no_header = infer(apps["iris"], "iris", {"inputs": [tensor]})
    assert "no Inference-Header-Content-Length" in error_of(no_header, 400, HEADER)
    body, length = binary_request({"inputs": [tensor | {"data": ROWS[0]}]}, raw)
    field = "inputs[0].parameters.binary_data_size"
    assert "send one of them" in error_of(infer(apps["iris"], "iris", body, **{HEADER: length}), 400, field)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_binary_requests_are_a_400_naming_the_field(apps, case):
    make, field = MALFORMED[case]
    tensor, raw = binary_input("x", "FP64", FP64_ROW)
    body, length = make(tensor, raw)
    message = error_of(infer(apps["iris"], "iris", body, **{HEADER: length}), 400, field)
    assert "body is not valid JSON" not in message


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\x05\0\0\0paris\x09\0\0\0ly", "not 2 length-prefixed"),
        (b"\x05\0\0\0paris\x02\0\0\0ly\x00", "not 2 length-prefixed"),
        (b"\x05\0\0\0paris", "not 2 length-prefixed"),
        (b"\x05\0\0\0par\xffs\x02\0\0\0ly", "not UTF-8"),
    ],
    ids=["element-beyond", "trailing-byte", "too-few", "not-utf8"],
)
def test_malformed_binary_bytes_elements_are_a_400(apps, raw, words):
    tensor = {"name": "city", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    others = shop()["inputs"][1:]
    body, length = binary_request({"inputs": [tensor, *others]}, raw)
    field = "inputs[0].parameters.binary_data_size"
    assert words in error_of(infer(apps["shop"], "shop", body, **{HEADER: length}), 400, field)


def test_a_bool_byte_other_than_0_or_1_is_a_400(apps):
    tensor = {"name": "x", "shape": [1, 4], "datatype": "BOOL", "parameters": {"binary_data_size": 4}}
    body, length = binary_request({"inputs": [tensor]}, b"\x01\x00\x02\x01")
    error_of(
        infer(apps["iris"], "iris", body, **{HEADER: length}), 400, "inputs[0].parameters.binary_data_size"
    )


def test_binary_bodies_keep_to_the_body_limit(apps):
    tensor, raw = binary_input("x", "FP64", np.array(ROWS * 4, dtype=np.float64))
    body, length = binary_request({"inputs": [tensor]}, raw)
    assert infer(apps["small"], "iris", body, **{HEADER: length}).status_code == 413


def test_decode_round_trips_every_fixed_size_datatype():
    for datatype, layout in oip_binary.NUMPY_DTYPES.items():
        if layout is None:
            continue
        values = np.array([0, 1, 1, 0], dtype=layout)
        assert oip_binary.decode(values.tobytes(), datatype, 4, "f") == values.tolist(), datatype


# ---------------------------------------------------------------------- malformed tensors, shapes, extensions
@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("datatype", [], "inputs[0].datatype"),
        ("datatype", {"FP64": 1}, "inputs[0].datatype"),
        ("datatype", 1.5, "inputs[0].datatype"),
        ("shape", "1,4", "inputs[0].shape"),
        ("shape", [1.0, 4], "inputs[0].shape"),
        ("shape", [-1, 4], "inputs[0].shape"),
        ("shape", [[1], [4]], "inputs[0].shape"),
        ("shape", [True, 4], "inputs[0].shape"),
        ("name", 5, "inputs[0].name"),
        ("name", ["x"], "inputs[0].name"),
        ("parameters", [32], "inputs[0].parameters"),
        ("parameters", "binary", "inputs[0].parameters"),
    ],
)
def test_a_tensor_field_of_the_wrong_type_is_a_400_naming_it(apps, key, value, field):
    body = matrix("FP64", ROWS[:1])
    body["inputs"][0][key] = value
    for extra in ({}, {"outputs": [{"name": "predict"}]}, {"parameters": {"content_type": "pd"}}):
        error_of(infer(apps["iris"], "iris", {**body, **extra}), 400, field)


@pytest.mark.parametrize("shape", [[2, 2, 2], [2, 4, 1], [1, 2, 4]])
def test_a_tensor_of_more_than_two_dimensions_is_refused_not_read_as_rows(apps, shape):
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2] * 2}]}
    assert "dimensions" in error_of(infer(apps["iris"], "iris", body), 422, "inputs[0].shape")


def test_class_count_is_refused_not_answered_with_every_probability(apps):
    asked = {"name": "predict_proba", "parameters": {"classification": 2, "binary_data": False}}
    response = infer(apps["iris"], "iris", matrix("FP64", outputs=[asked]))
    assert "class_count" in error_of(response, 400, "outputs[0].parameters.classification")


def test_a_multi_output_regressor_declares_the_shape_it_answers(apps):
    declared = {o["name"]: o for o in apps["multi"].get("/v2/models/multi").json()["outputs"]}
    assert declared["predict"]["shape"] == [-1, 2]
    answered = outputs(infer(apps["multi"], "multi", matrix("FP64")))["predict"]
    assert answered["shape"] == [len(ROWS), 2] and len(answered["data"]) == 2 * len(ROWS)
    assert outputs(infer(apps["iris"], "iris", matrix("FP64")))["predict"]["shape"] == [len(ROWS)]
    assert apps["iris"].get("/v2/models/iris").json()["outputs"][0]["shape"] == [-1]


def test_ready_bodies_give_the_version_as_a_string_everywhere(apps):
    for path in ("/v2/health/ready", "/health/ready", "/v2/models/iris/ready"):
        assert apps["iris"].get(path).json()["version"] == "1", path


# ---------------------------------------------------------------------- the bearer scheme
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(apps, scheme):
    headers = {"authorization": f"{scheme} {TOKEN}"}
    assert outputs(infer(apps["token"], "iris", matrix("FP64"), **headers))["predict"]["data"]
    assert apps["token"].get("/v2", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "value", [f"Basic {TOKEN}", "Bearer wrong", f"Bearer{TOKEN}", TOKEN, f"bearer {TOKEN}x"]
)
def test_a_wrong_scheme_or_token_is_still_a_401(apps, value):
    error_of(infer(apps["token"], "iris", matrix("FP64"), authorization=value), 401, "Authorization")


# ---------------------------------------------------------------------- compressed request bodies
def compressed(body: bytes, encoding: str) -> bytes:
    return gzip.compress(body) if encoding == "gzip" else zlib.compress(body)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP"])
def test_gzip_and_deflate_bodies_are_decoded_on_both_protocols(apps, encoding):
    plain = orjson.dumps(matrix("FP64"))
    body = compressed(plain, encoding.lower())
    answer = outputs(infer(apps["iris"], "iris", body, **{"content-encoding": encoding}))
    assert answer["predict"]["data"] == outputs(infer(apps["iris"], "iris", plain))["predict"]["data"]
    mlflow = orjson.dumps({"inputs": ROWS})
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = apps["iris"].post(
        "/invocations", content=compressed(mlflow, encoding.lower()), headers=headers
    )
    assert response.status_code == 200 and response.json()["predictions"] == answer["predict"]["data"]


def test_a_binary_tensor_body_may_be_compressed_too(apps):
    tensor = np.array(ROWS)
    header = {
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "parameters": {"binary_data_size": 96}}]
    }
    raw = orjson.dumps(header)
    headers = {HEADER: str(len(raw)), "content-encoding": "gzip"}
    answer = outputs(infer(apps["iris"], "iris", gzip.compress(raw + tensor.tobytes()), **headers))
    assert (
        answer["predict"]["data"] == outputs(infer(apps["iris"], "iris", matrix("FP64")))["predict"]["data"]
    )


def test_a_compressed_body_is_bounded_by_the_limit_once_decompressed(apps):
    bomb = gzip.compress(b" " * 10_000_000)  # ~10 kB that inflate to 10 MB; the app's limit is 200 bytes
    error_of(infer(apps["small"], "iris", bomb, **{"content-encoding": "gzip"}), 413, "body")
    small = gzip.compress(orjson.dumps(matrix("FP64", ROWS[:1])))
    assert outputs(infer(apps["small"], "iris", small, **{"content-encoding": "gzip"}))


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b'{"inputs": []}')[:-12], "gzip", 400),  # cut short
        (gzip.compress(b"{}"), "deflate", 400),  # a gzip stream said to be deflate
        (b"{}", "br", 415),
        (b"{}", "gzip, br", 415),
    ],
    ids=["not-gzip", "cut-short", "gzip-said-deflate", "br", "gzip-then-br"],
)
def test_a_wrong_or_unknown_content_encoding_names_the_header(apps, body, encoding, status):
    for path in ("/v2/models/iris/infer", "/invocations"):
        headers = {"content-encoding": encoding, "content-type": "application/json"}
        error_of(apps["iris"].post(path, content=body, headers=headers), status, "Content-Encoding")
