"""Request bodies through the real ASGI app of registered models (in-process): what is refused, and how.

Repeated columns, non-finite numbers, numbers a float32 model cannot hold, unknown categories, 0-row
columns and malformed OIP parameters are each a 4xx naming the field (and the row where there is one),
in both protocols; none of them reaches the model or the drift window.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import error_of
from payload_models import IRIS_COLUMNS, AppClient, create_model_app, register_models

A, B, C, D = IRIS_COLUMNS
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
MODELS = ("iris", "shop", "hidden", "tree", "narrow")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payloads-home")
    register_models(path)
    return path


@pytest.fixture(scope="module")
def apps(home: Path) -> Iterator[dict[str, AppClient]]:
    clients = {name: AppClient(create_model_app(home, name)) for name in MODELS}
    yield clients
    for client in clients.values():
        client.close()


def mlflow(client: AppClient, body: Any, content_type: str = "application/json") -> Any:
    content = body if isinstance(body, bytes) else None
    kwargs = {"content": content} if content is not None else {"json": body}
    return client.post("/invocations", headers={"content-type": content_type}, **kwargs)


def oip(client: AppClient, name: str, body: Any) -> Any:
    if isinstance(body, bytes):
        return client.post(f"/v2/models/{name}/infer", content=body)
    return client.post(f"/v2/models/{name}/infer", json=body)


def csv(header: list[str], *rows: list[str]) -> bytes:
    return "\n".join(",".join(cells) for cells in [header, *rows]).encode() + b"\n"


def tensor(data: list[Any], rows: int = 1) -> dict[str, Any]:
    return {"name": "x", "shape": [rows, len(data) // rows], "datatype": "FP64", "data": data}


def per_column(columns: dict[str, list[Any]] | list[tuple[str, list[Any]]]) -> dict[str, Any]:
    pairs = columns.items() if isinstance(columns, dict) else columns
    inputs = [{"name": n, "shape": [len(v)], "datatype": _datatype(v), "data": v} for n, v in pairs]
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def _datatype(values: list[Any]) -> str:
    """BYTES for a column of text, FP64 otherwise (what a client sends for the column)."""
    return "BYTES" if values and all(isinstance(v, str) for v in values) else "FP64"


def assert_names(response: Any, status: int, field: str | None, row: int | None = None) -> dict[str, Any]:
    """The error answers `status` and names `field` (and `row`) in its keys and its message."""
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["field"] == field, error
    assert error.get("row") == row, error
    if field is not None:  # the message alone says what to fix (clients may show only the message)
        assert repr(field) in error["message"] or field in error["message"], error
    if row is not None:
        assert f"row {row}" in error["message"], error
    return error


# ---------------------------------------------------------------------- item 15: repeated columns
REPEATED = [
    (
        "split-extra-copy",
        lambda c: mlflow(c, {"dataframe_split": {"columns": [A, B, C, D, A], "data": [[*ROWS[0], 7.9]]}}),
        (422, A, None),
    ),
    (
        "split-copy-for-missing",
        lambda c: mlflow(c, {"dataframe_split": {"columns": [C, C, A, B], "data": [[1.4, 9.9, 5.1, 3.5]]}}),
        (422, C, None),
    ),
    (
        "csv-header",
        lambda c: mlflow(c, csv([A, B, C, D, D], ["5.1", "3.5", "1.4", "0.2", "2.5"]), "text/csv"),
        (422, D, None),
    ),
    (
        "records-key",
        lambda c: mlflow(
            c,
            b'{"dataframe_records": [{"%s": 5.1, "%s": 3.5, "%s": 1.4, "%s": 0.2},'
            b' {"%s": 6.7, "%s": 3.0, "%s": 5.2, "%s": 2.3, "%s": 0.1}]}'
            % tuple(n.encode() for n in [A, B, C, D, A, B, C, D, D]),
        ),
        (422, D, 1),
    ),
    (
        "columns-object-key",
        lambda c: mlflow(
            c,
            b'{"inputs": {"%s": [1], "%s": [2], "%s": [3], "%s": [4], "%s": [5]}}'
            % tuple(n.encode() for n in [A, B, C, D, B]),
        ),
        (422, B, None),
    ),
    (
        "body-key",
        lambda c: mlflow(c, b'{"inputs": [[5.1, 3.5, 1.4, 0.2]], "inputs": [[1, 1, 1, 1]]}'),
        (400, "inputs", None),
    ),
    (
        "oip-input-name",
        lambda c: oip(c, "iris", per_column([(A, [5.1]), (B, [3.5]), (C, [1.4]), (D, [0.2]), (A, [9.0])])),
        (422, A, None),
    ),
    (
        "oip-tensor-key",
        lambda c: oip(
            c,
            "iris",
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",'
            b' "data": [5.1, 3.5, 1.4, 0.2], "data": [1, 1, 1, 1]}]}',
        ),
        (400, "inputs[0].data", None),
    ),
]


@pytest.mark.parametrize(("send", "expected"), [c[1:] for c in REPEATED], ids=[c[0] for c in REPEATED])
def test_repeated_columns_and_keys_are_refused_never_dropped(apps, send, expected):
    status, field, row = expected
    assert_names(send(apps["iris"]), status, field, row)


def test_the_issue_case_an_extra_copy_no_longer_answers_200(apps):
    body = {"dataframe_split": {"columns": [C, D, A, B, D], "data": [[5.2, 2.3, 6.7, 3.0, 0.1]]}}
    assert mlflow(apps["iris"], body).status_code == 422


# ---------------------------------------------------------------------- item 15: non-finite numbers
NON_FINITE_CSV = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e999"]
NON_FINITE_JSON = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400]


@pytest.mark.parametrize("text", NON_FINITE_CSV)
def test_non_finite_csv_cells_name_column_and_row(apps, text):
    body = csv(IRIS_COLUMNS, ["5.1", "3.5", "1.4", "0.2"], ["6.7", text, "5.2", "2.3"])
    assert_names(mlflow(apps["iris"], body, "text/csv"), 422, B, 1)


def with_token(body: Any, token: bytes) -> bytes:
    """`body` as JSON text with the string "BAD" replaced by the raw number `token`."""
    return json.dumps(body).replace('"BAD"', token.decode()).encode()


NON_FINITE_FORMS = {
    "instances": {"instances": [ROWS[0], [6.7, 3.0, "BAD", 2.3]]},
    "split": {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [ROWS[0], [6.7, 3.0, "BAD", 2.3]]}},
    "records": {
        "dataframe_records": [dict(zip(IRIS_COLUMNS, r, strict=True)) for r in [ROWS[0], [1, 2, "BAD", 4]]]
    },
    "columns": {"inputs": {A: [1, 2], B: [1, 2], C: [1, "BAD"], D: [1, 2]}},
    "oip-tensor": {"inputs": [tensor([*ROWS[0], 6.7, 3.0, "BAD", 2.3], rows=2)]},
    "oip-columns": per_column({A: [1, 2], B: [1, 2], C: [1, "BAD"], D: [1, 2]}),
}


@pytest.mark.parametrize("token", NON_FINITE_JSON, ids=lambda t: t[:8].decode())
@pytest.mark.parametrize("form", list(NON_FINITE_FORMS))
def test_non_finite_json_numbers_name_column_and_row(apps, form, token):
    body = with_token(NON_FINITE_FORMS[form], token)
    client = apps["iris"]
    response = oip(client, "iris", body) if form.startswith("oip") else mlflow(client, body)
    assert_names(response, 422, C, 1)


@pytest.mark.parametrize(("model", "status"), [("tree", 422), ("narrow", 422), ("iris", 200)])
def test_numbers_beyond_float32_are_refused_for_models_that_take_float32(apps, model, status):
    body = {"instances": [ROWS[0], [6.7, 3.0, 5.2, 1e39]]}
    response = mlflow(apps[model], body)
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        error = assert_names(response, 422, D, 1)
        assert "float32" in error["message"]
    response = oip(apps[model], model, {"inputs": [tensor([*ROWS[0], 6.7, 3.0, 5.2, -1e39], rows=2)]})
    assert response.status_code == status, response.text


def test_a_nullable_column_takes_nan_as_missing_but_never_infinity(apps):
    shop = apps["shop"]
    missing = b'{"dataframe_records": [{"city": "paris", "basket": NaN, "visits": 2}]}'
    assert mlflow(shop, missing).status_code == 200
    assert (
        mlflow(shop, csv(["city", "basket", "visits"], ["paris", "nan", "2"]), "text/csv").status_code == 200
    )
    records = {
        "dataframe_records": [{"city": "paris", "basket": 1, "visits": 2}, {"city": "lyon", "basket": "BAD"}]
    }
    for body in (
        with_token(records, b"Infinity"),
        csv(["city", "basket", "visits"], ["paris", "1", "2"], ["lyon", "inf", "2"]),
    ):
        kind = "text/csv" if not body.startswith(b"{") else "application/json"
        assert_names(mlflow(shop, body, kind), 422, "basket", 1)
    assert_names(mlflow(shop, b'{"instances": [["paris", 1.0, NaN]]}'), 422, "visits", 0)


def test_refused_values_never_reach_the_drift_sample(home):
    client = AppClient(create_model_app(home, "shop"))
    try:
        refused = [
            b'{"dataframe_records": [{"city": "lyon", "basket": Infinity, "visits": 2}]}',
            b'{"dataframe_records": [{"city": "lyon", "basket": 1e400, "visits": 2}]}',
            b'{"dataframe_records": [{"city": "atlantis", "basket": 1, "visits": 2}]}',
            b'{"dataframe_records": [{"city": "lyon", "basket": 1, "visits": 2, "visits": 3}]}',
        ]
        for body in refused:
            assert mlflow(client, body).status_code == 422
        assert client.app.state.sampler.since(0)[1] == []
        assert (
            mlflow(client, {"dataframe_records": [{"city": "lyon", "basket": 1.5, "visits": 2}]}).status_code
            == 200
        )
        assert client.app.state.sampler.since(0)[1] == [["lyon", 1.5, 2]]
    finally:
        client.close()


# ---------------------------------------------------------------------- item 16: client mistakes
ZERO_ROWS = [
    ("inputs-columns", lambda c: mlflow(c, {"inputs": {n: [] for n in IRIS_COLUMNS}}), "inputs"),
    ("instances-columns", lambda c: mlflow(c, {"instances": {n: [] for n in IRIS_COLUMNS}}), "instances"),
    ("oip-columns", lambda c: oip(c, "iris", per_column({n: [] for n in IRIS_COLUMNS})), "inputs"),
    (
        "split",
        lambda c: mlflow(c, {"dataframe_split": {"columns": IRIS_COLUMNS, "data": []}}),
        "dataframe_split.data",
    ),
    (
        "oip-tensor",
        lambda c: oip(c, "iris", {"inputs": [tensor([]) | {"shape": [0, 4]}]}),
        "inputs[0].data",
    ),
]


@pytest.mark.parametrize(("send", "field"), [c[1:] for c in ZERO_ROWS], ids=[c[0] for c in ZERO_ROWS])
def test_zero_rows_are_a_400_naming_the_field(apps, send, field):
    assert_names(send(apps["iris"]), 400, field)


@pytest.mark.parametrize("parameters", [[], "pd", 3, True])
def test_oip_parameters_must_be_an_object(apps, parameters):
    body = {"inputs": [tensor(ROWS[0])], "parameters": parameters}
    assert_names(oip(apps["iris"], "iris", body), 400, "parameters")


@pytest.mark.parametrize("protocol", ["mlflow", "csv", "oip"])
def test_an_unknown_category_of_a_strict_encoder_is_a_422_naming_column_and_row(apps, protocol):
    rows = [["paris", 10.0, 1], ["atlantis", 5.0, 2]]
    shop = apps["shop"]
    if protocol == "mlflow":
        response = mlflow(shop, {"dataframe_split": {"columns": ["city", "basket", "visits"], "data": rows}})
    elif protocol == "csv":
        response = mlflow(
            shop, csv(["city", "basket", "visits"], *[[str(v) for v in r] for r in rows]), "text/csv"
        )
    else:
        columns = {"city": ["paris", "atlantis"], "basket": [10.0, 5.0], "visits": [1, 2]}
        response = oip(shop, "shop", per_column(columns))
    error = assert_names(response, 422, "city", 1)
    assert "atlantis" in error["message"] and error["details"][0]["problem"] == "unknown_category"


def test_an_encoder_the_schema_cannot_see_still_answers_422_not_500(apps):
    response = mlflow(
        apps["hidden"], {"dataframe_records": [{"city": "atlantis", "basket": 1.0, "visits": 2}]}
    )
    error = assert_names(response, 422, None)
    assert "not fitted on" in error["message"]
    assert (
        mlflow(
            apps["hidden"], {"dataframe_records": [{"city": "nice", "basket": 1.0, "visits": 2}]}
        ).status_code
        == 200
    )


# ---------------------------------------------------------------------- item 4: redaction
SECRET = "SECRET-VALUE-123"


class Exploding:
    """A stand-in model whose error message quotes its input, as many models' messages do."""

    def predict(self, X: Any) -> Any:
        raise RuntimeError(f"cannot score {X[0][0]!r} for {SECRET}")


@pytest.mark.parametrize("redact", [True, False])
def test_500_bodies_and_log_lines_leave_input_values_out_when_redacting(home, caplog, redact):
    from registry import Registry
    from registry.serving.predictor import Predictor
    from registry.serving.server import create_app

    with Registry(home=home, db_url=f"sqlite:///{home / 'registry.db'}") as reg:
        info = reg.get("iris")
    predictor = Predictor(Exploding(), info, redact=redact)
    predictor.ready = True
    client = AppClient(create_app(predictor, batching=False))
    try:
        with caplog.at_level(logging.INFO):
            response = mlflow(client, {"instances": [[5.123456, 3.5, 1.4, 0.2]]})
            v2 = oip(client, "iris", {"inputs": [tensor([5.123456, 3.5, 1.4, 0.2])]})
    finally:
        client.close()
    assert response.status_code == v2.status_code == 500, v2.text
    error = error_of(response)
    assert error["error_code"] == "INTERNAL_ERROR" and error["message"].startswith("RuntimeError")
    assert error_of(v2)["error"].startswith("RuntimeError") and error_of(v2)["code"] == "prediction_failed"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "500 on /invocations: RuntimeError" in logged and "500 on /v2/models/iris/infer" in logged
    for text in (response.text, v2.text, logged):
        assert (SECRET in text) is not redact and ("5.123456" in text) is not redact


def test_redacted_4xx_bodies_leave_input_values_out(home):
    client = AppClient(create_model_app(home, "hidden", redact=True))
    shop = AppClient(create_model_app(home, "shop", redact=True))
    try:
        bodies = [
            {"dataframe_records": [{"city": SECRET, "basket": 1.0, "visits": 2}]},
            {"dataframe_records": [{"city": "paris", "basket": SECRET, "visits": 2}]},
            {"instances": [["paris", 1.0, 2], ["nice", 1.0, SECRET]]},
        ]
        for target in (client, shop):
            for body in bodies:
                response = mlflow(target, body)
                assert response.status_code == 422 and SECRET not in response.text, response.text
        infinite = mlflow(shop, b'{"instances": [["paris", Infinity, 2]]}')
        assert infinite.status_code == 422 and "inf" not in infinite.text.lower().replace("finite", "")
    finally:
        client.close()
        shop.close()
