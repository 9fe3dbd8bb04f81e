"""Request bodies to rows: MLflow scoring formats, CSV and the Open Inference Protocol (v2).

Every parser returns rows (lists in the signature's column order) already checked by the
version's InputSchema, or raises InputError with the status and the field at fault. Nothing is
deserialized beyond JSON and CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import orjson

from registry.signature import InputError, InputSchema

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PREDICT, PREDICT_PROBA = "predict", "predict_proba"


def bad_request(message: str, field: str | None = None) -> InputError:
    return InputError(400, "bad_request", message, field=field)


def load_json(body: bytes) -> Any:
    """The parsed body (orjson: ~10x the standard library on 100-row bodies)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None


def invocation_rows(body: bytes, content_type: str, schema: InputSchema) -> list[list[Any]]:
    """Rows of a `POST /invocations` body (JSON in one of MLflow's four forms, or CSV)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return csv_rows(body, schema)
    if media != "application/json":
        raise InputError(
            415,
            "unsupported_media_type",
            f"content type {media or '(none)'!r} is not supported; send application/json or text/csv",
            field="Content-Type",
        )
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise bad_request(f"the JSON body must be an object with one of {list(MLFLOW_KEYS)}")
    present = [k for k in MLFLOW_KEYS if k in payload]
    if len(present) != 1:
        found = present or sorted(payload)[:5]
        raise bad_request(f"the body must have exactly one of {list(MLFLOW_KEYS)}; found {found}")
    key = present[0]
    value = payload[key]
    if key == "dataframe_split":
        return split_rows(value, schema, key)
    if key == "dataframe_records":
        return record_rows(value, schema, key)
    return tensor_rows(value, schema, key)


def split_rows(value: Any, schema: InputSchema, key: str) -> list[list[Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise bad_request(f"{key} must be an object with 'columns' and 'data' (a list of rows)", key)
    rows = value["data"]
    _check_row_lists(rows, key)
    columns = value.get("columns")
    if columns is None:
        return schema.check_rows(rows)
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad_request(f"{key}.columns must be a list of column names", f"{key}.columns")
    order = schema.check_names(columns)
    if order == list(range(len(columns))):
        return schema.check_rows(rows)
    return schema.check_rows([[row[i] for i in order] if len(row) == len(columns) else row for row in rows])


def record_rows(value: Any, schema: InputSchema, key: str) -> list[list[Any]]:
    if not isinstance(value, list) or not value or not all(isinstance(r, dict) for r in value):
        raise bad_request(f"{key} must be a non-empty list of objects (one per row)", key)
    seen = list(dict.fromkeys(name for record in value for name in record))
    schema.check_names(seen)
    names = schema.names
    return schema.check_rows([[record.get(n) for n in names] for record in value])  # absent: null


def tensor_rows(value: Any, schema: InputSchema, key: str) -> list[list[Any]]:
    """`instances` / `inputs`: rows as lists, rows as objects, or columns as an object of lists."""
    if isinstance(value, dict):
        return column_rows(value, schema, key)
    if not isinstance(value, list) or not value:
        raise bad_request(f"{key} must be a non-empty list of rows or an object of columns", key)
    if all(isinstance(r, dict) for r in value):
        return record_rows(value, schema, key)
    if all(isinstance(r, list) for r in value):
        return schema.check_rows(value)
    if schema.width == 1 and not any(isinstance(r, (list, dict)) for r in value):
        return schema.check_rows([[v] for v in value])
    raise bad_request(f"{key} must be a list of rows (lists) or of objects, not a mix", key)


def column_rows(columns: dict[str, Any], schema: InputSchema, key: str) -> list[list[Any]]:
    schema.check_names(list(columns))
    lengths = {name: len(v) if isinstance(v, list) else -1 for name, v in columns.items()}
    if any(n < 0 for n in lengths.values()) or len(set(lengths.values())) != 1:
        raise bad_request(f"{key}: every column must be a list, all of the same length; got {lengths}", key)
    ordered = [columns[n] for n in schema.names]
    return schema.check_rows([list(row) for row in zip(*ordered, strict=True)])


def csv_rows(body: bytes, schema: InputSchema) -> list[list[Any]]:
    """CSV with a header row; numeric columns are parsed as numbers, empty cells are null."""
    try:
        reader = csv.reader(io.StringIO(body.decode("utf-8")))
        header = next(reader)
        raw = [row for row in reader if row]
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise bad_request(f"body is not CSV with a header row: {exc or 'empty'}") from None
    if not raw:
        raise bad_request("the CSV body has a header but no rows")
    order = schema.check_names([h.strip() for h in header])
    rows = []
    for number, row in enumerate(raw):
        if len(row) != len(header):
            raise bad_request(f"CSV row {number} has {len(row)} cells; the header has {len(header)}")
        rows.append([_csv_value(row[i], schema.numeric[pos]) for pos, i in enumerate(order)])
    return schema.check_rows(rows)


def _csv_value(text: str, numeric: bool) -> Any:
    if text == "":
        return None
    if not numeric:
        return text
    try:
        return float(text)
    except ValueError:
        return text  # reported by check_rows as a type mismatch, naming the column


def _check_row_lists(rows: list[Any], key: str) -> None:
    if not rows or not all(isinstance(r, list) for r in rows):
        raise bad_request(f"{key}.data must be a non-empty list of rows (lists)", f"{key}.data")


# ---------------------------------------------------------------------- Open Inference Protocol v2
@dataclass
class V2Request:
    """A parsed `/v2/models/{name}/infer` request."""

    rows: list[list[Any]]
    outputs: list[str] = field(default_factory=lambda: [PREDICT])
    id: str | None = None


def v2_request(body: bytes, schema: InputSchema, can_proba: bool) -> V2Request:
    payload = load_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise bad_request("the body must be an object with a non-empty 'inputs' list", "inputs")
    inputs = payload["inputs"]
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or "data" not in tensor or not isinstance(tensor.get("name"), str):
            raise bad_request(
                f"inputs[{i}] must be an object with 'name', 'shape', 'datatype' and 'data'", f"inputs[{i}]"
            )
    content_type = (payload.get("parameters") or {}).get("content_type")
    per_column = (
        content_type == "pd"
        or len(inputs) > 1
        or (inputs[0]["name"] in schema.index and schema.width > 1 and not _is_matrix(inputs[0]))
    )
    if per_column:
        columns = {t["name"]: _flatten(t["data"]) for t in inputs}
        rows = column_rows(columns, schema, "inputs")
    else:
        rows = _tensor_matrix(inputs[0], schema)
    outputs = [PREDICT]
    if payload.get("outputs") is not None:
        requested = payload["outputs"]
        if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
            raise bad_request("'outputs' must be a list of objects with a 'name'", "outputs")
        outputs = [o["name"] for o in requested]
        allowed = [PREDICT, PREDICT_PROBA] if can_proba else [PREDICT]
        unknown = [o for o in outputs if o not in allowed]
        if unknown:
            raise InputError(
                422,
                "unknown_output",
                f"unknown output(s) {unknown}; this model offers {allowed}",
                field="outputs",
            )
    request_id = payload.get("id")
    return V2Request(rows=rows, outputs=outputs, id=str(request_id) if request_id is not None else None)


def _is_matrix(tensor: dict[str, Any]) -> bool:
    shape = tensor.get("shape")
    return isinstance(shape, list) and len(shape) == 2 and shape[1] != 1


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list) and data and all(isinstance(d, list) for d in data):
        return [v for row in data for v in row]
    return data if isinstance(data, list) else [data]


def _tensor_matrix(tensor: dict[str, Any], schema: InputSchema) -> list[list[Any]]:
    data, shape = tensor["data"], tensor.get("shape")
    if isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        return schema.check_rows(data)
    if not isinstance(data, list) or not data:
        raise bad_request("inputs[0].data must be a non-empty list", "inputs[0].data")
    width = schema.width
    if isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) for s in shape):
        if shape[1] != width or shape[0] * shape[1] != len(data):
            raise InputError(
                422,
                "schema_mismatch",
                f"inputs[0].shape {shape} does not fit {len(data)} values of {width} column(s)",
                field="inputs[0].shape",
            )
    elif len(data) % width:
        raise InputError(
            422,
            "schema_mismatch",
            f"{len(data)} values cannot be rows of {width} column(s)",
            field="inputs[0].data",
        )
    return schema.check_rows([data[i : i + width] for i in range(0, len(data), width)])
