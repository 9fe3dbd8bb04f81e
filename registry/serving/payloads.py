"""Request bodies to rows: MLflow scoring formats, CSV and the Open Inference Protocol (v2).

Every parser returns rows (lists in the signature's column order) already checked by the
version's InputSchema, or raises InputError with the status and the field at fault. Nothing is
deserialized beyond JSON and CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from registry.serving import oip_binary, oip_types
from registry.serving.numeric_split import numeric_split_rows
from registry.signature import InputError, InputSchema

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PREDICT, PREDICT_PROBA = "predict", "predict_proba"


def bad_request(message: str, field: str | None = None) -> InputError:
    return InputError(400, "bad_request", message, field=field)


def load_json(body: bytes, schema: InputSchema | None = None) -> Any:
    """The parsed body (orjson: ~10x the standard library on 100-row bodies).

    A body orjson refuses only for a number (NaN, Infinity, 1e400) is parsed by the standard library,
    so that the schema names the column and row of the value that is not finite. A key given twice
    in one object would lose a value silently: every `:` outside a string starts one member, so when
    the body has more colons than the parsed objects have members, it is parsed again key by key
    and the repeated key is refused (a 422 naming the column if it is one of `schema`'s).
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _exact_json(body, schema, str(exc))
    if body.count(b":") != _members(payload):
        return _exact_json(body, schema, None)
    return payload


class _Repeated(dict[str, Any]):
    """A JSON object that gave `key` more than once."""

    key: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    repeated = _Repeated(result)
    repeated.key = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return repeated


def _exact_json(body: bytes, schema: InputSchema | None, refused: str | None) -> Any:
    """The body parsed by the standard library; a 400 (or 422) for a repeated key or broken text."""
    try:
        payload = json.loads(body.decode("utf-8"), object_pairs_hook=_object)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_request(f"body is not valid JSON: {refused or exc}") from None
    stack: list[tuple[Any, tuple[Any, ...]]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, _Repeated):
                raise _repeated_key(value.key, list(path), schema)
            for key, item in value.items():
                _check_text(key)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value)
    return payload


def _check_text(text: str) -> None:
    """A 400 for a string with a lone surrogate (orjson refuses those, and cannot answer with them)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request("body is not valid JSON: a string holds a lone surrogate") from None


def _repeated_key(key: str, path: list[Any], schema: InputSchema | None) -> InputError:
    if schema is not None and key in schema.index:
        return schema.repeated([key], row=path[-1] if path and isinstance(path[-1], int) else None)
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    field = f"{where}.{key}" if where else key
    return bad_request(f"{field}: {where or 'the body'} gives the key {key!r} more than once", field)


_CONTAINERS = (dict, list)
_LIST = {list}


def _members(value: Any) -> int:
    """Members of the JSON objects in `value`, counted where that is cheap: never more than there are.

    A loop over a stack, not recursion: orjson parses arrays nested 1,000 deep, deeper than Python
    recurses (a RecursionError would be a 500)."""
    count, stack = 0, [value]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            count += len(value)
            for member in value.values():
                if type(member) in _CONTAINERS:
                    stack.append(member)
        elif kind is list and value:
            first = type(value[0])
            if first is dict:
                if len(value) > 16:  # rows: no nesting
                    count += sum(map(len, value)) if set(map(type, value)) == {dict} else 0
                else:
                    stack.extend(value)
            elif first is list and value[0] and type(value[0][0]) in _CONTAINERS:
                stack.extend(value)
    return count


def invocation_rows(body: bytes, content_type: str, schema: InputSchema) -> list[list[Any]]:
    """Rows of a `POST /invocations` body (JSON in one of MLflow's four forms, or CSV)."""
    media = content_type if content_type == "application/json" else _media_type(content_type)
    if media == "text/csv":
        return csv_rows(body, schema)
    if media != "application/json":
        raise InputError(
            415,
            "unsupported_media_type",
            f"Content-Type {media or '(none)'!r} is not supported; send application/json or text/csv",
            field="Content-Type",
        )
    rows = numeric_split_rows(body, schema)
    if rows is not None:
        return rows
    payload = load_json(body, schema)
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


def _media_type(content_type: str) -> str:
    """A Content-Type's media type in lower case (`Application/JSON; charset=utf-8`: `application/json`)."""
    return content_type.split(";", 1)[0].strip().lower()


def split_rows(value: Any, schema: InputSchema, key: str) -> list[list[Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise bad_request(f"{key} must be an object with 'columns' and 'data' (a list of rows)", key)
    rows = value["data"]
    _check_row_lists(rows, key)
    columns = value.get("columns")
    if columns is None or columns == schema.names:  # the signature's own order: nothing to move
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
    if not next(iter(lengths.values())):
        raise bad_request(f"{key}: the columns hold no values (0 rows); send at least one row", key)
    ordered = [columns[n] for n in schema.names]
    return schema.check_rows([list(row) for row in zip(*ordered, strict=True)])


def csv_rows(body: bytes, schema: InputSchema) -> list[list[Any]]:
    """CSV with a header row; numeric columns are parsed as numbers, empty cells are null."""
    try:
        reader = csv.reader(io.StringIO(body.decode("utf-8")))
        header = next(reader)
        raw = [row for row in reader if row]
    except UnicodeDecodeError as exc:  # its text quotes the byte: say where instead
        raise bad_request(f"body is not UTF-8 text (byte {exc.start})") from None
    except (csv.Error, StopIteration) as exc:
        raise bad_request(f"body is not CSV with a header row: {str(exc) or 'empty'}") from None
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
    if not rows or set(map(type, rows)) != _LIST:  # parsed JSON: lists are lists, never subclasses
        raise bad_request(f"{key}.data must be a non-empty list of rows (lists)", f"{key}.data")


# ---------------------------------------------------------------------- Open Inference Protocol v2
@dataclass
class V2Request:
    """A parsed `/v2/models/{name}/infer` request: rows, the outputs asked for (all the model has
    when the request names none, as the spec says) and which of them go back as binary data."""

    rows: list[list[Any]]
    outputs: list[str] = field(default_factory=lambda: [PREDICT])
    id: str | None = None
    binary: set[str] = field(default_factory=set)


def v2_request(
    body: bytes, schema: InputSchema, can_proba: bool, header_length: str | None = None
) -> V2Request:
    """Parse an inference request; `header_length` is its `Inference-Header-Content-Length` header,
    which makes the body a JSON header followed by binary tensor data."""
    binary = b""
    if header_length is not None:
        body, binary = oip_binary.split_body(body, header_length)
    payload = _v2_header(body, schema, header_length)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise bad_request("the body must be an object with a non-empty 'inputs' list", "inputs")
    inputs = payload["inputs"]
    counts = [_tensor_count(i, tensor, header_length is not None) for i, tensor in enumerate(inputs)]
    if header_length is not None:
        oip_binary.decode_inputs(inputs, counts, binary)
    for i, (tensor, count) in enumerate(zip(inputs, counts, strict=True)):
        _check_count(i, tensor, count)
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"'parameters' must be an object, not {type(parameters).__name__}", "parameters")
    parameters = parameters or {}
    per_column = (
        parameters.get("content_type") == "pd"
        or len(inputs) > 1
        or (inputs[0]["name"] in schema.index and schema.width > 1 and not _is_matrix(inputs[0]))
    )
    if per_column:
        schema.check_names([t["name"] for t in inputs])  # a repeated name is refused, never dropped
        columns = {
            t["name"]: _column_values(_flatten(t["data"]), t["datatype"], schema, t["name"], f"inputs[{i}]")
            for i, t in enumerate(inputs)
        }
        rows = column_rows(columns, schema, "inputs")
    else:
        rows = _tensor_matrix(inputs[0], schema)
    outputs, binary_outputs = _v2_outputs(payload, parameters, can_proba)
    request_id = payload.get("id")
    return V2Request(
        rows=rows,
        outputs=outputs,
        id=str(request_id) if request_id is not None else None,
        binary=binary_outputs,
    )


def _v2_header(body: bytes, schema: InputSchema, header_length: str | None) -> Any:
    """The JSON part of the request; of a binary request, a 400 naming the header if it is not JSON."""
    if header_length is None:
        return load_json(body, schema)
    try:
        return load_json(body, schema)
    except InputError as exc:
        if exc.field is not None or exc.status != 400:
            raise
        reason = exc.message.removeprefix("body is not valid JSON: ")
        raise bad_request(
            f"the first {len(body)} bytes ({oip_binary.HEADER}) are not a JSON header: {reason}",
            oip_binary.HEADER,
        ) from None


def _tensor_count(i: int, tensor: Any, binary: bool) -> int:
    """The element count of input `i`'s shape, after checking its name, parameters, data, datatype and
    shape (400s, each naming the field; a shape of more than two dimensions is a 422).
    `binary`: the request has binary tensor data (its header gave the JSON's length)."""
    where = f"inputs[{i}]"
    if not isinstance(tensor, dict):
        raise bad_request(f"{where} must be an object with 'name', 'shape', 'datatype' and 'data'", where)
    if not isinstance(tensor.get("name"), str):
        raise bad_request(f"{where}.name must be a string, not {_shown(tensor.get('name'))}", f"{where}.name")
    parameters = tensor.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(
            f"{where}.parameters must be an object, not {_shown(parameters)}", f"{where}.parameters"
        )
    size = oip_binary.binary_size(tensor, i)
    if size is None and "data" not in tensor:
        raise bad_request(f"{where} has neither 'data' nor parameters.binary_data_size", f"{where}.data")
    if size is not None and not binary:
        raise bad_request(
            f"{where} has parameters.binary_data_size but the request has no {oip_binary.HEADER}"
            " header saying where its binary data starts",
            oip_binary.HEADER,
        )
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in oip_types.NUMPY_DTYPES:
        known = ", ".join(oip_types.NUMPY_DTYPES)
        raise bad_request(
            f"{where}.datatype {_shown(datatype)} is not a datatype of the protocol ({known})",
            f"{where}.datatype",
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad_request(
            f"{where}.shape must be a list of non-negative integers, not {_shown(shape)}", f"{where}.shape"
        )
    if len(shape) > 2:
        raise InputError(
            422,
            "schema_mismatch",
            f"{where}.shape {shape} has {len(shape)} dimensions; send [rows, columns] (one tensor of"
            " every column) or [rows] / [rows, 1] per column",
            field=f"{where}.shape",
        )
    return math.prod(shape)


def _shown(value: Any) -> str:
    return "(missing)" if value is None else repr(value)[:40]


def _check_count(i: int, tensor: dict[str, Any], count: int) -> None:
    data = tensor["data"]
    given = len(_flatten(data)) if isinstance(data, list) else 1
    if given != count:
        raise InputError(
            422,
            "schema_mismatch",
            f"inputs[{i}].shape {tensor['shape']} holds {count} value(s) but its data has {given}",
            field=f"inputs[{i}].shape",
        )


def _column_values(values: list[Any], datatype: str, schema: InputSchema, name: str, where: str) -> Any:
    position = schema.index.get(name)
    if position is None:  # check_names has refused it already
        return values
    return oip_types.to_column(values, datatype, schema.columns[position], schema, where)


def _v2_outputs(
    payload: dict[str, Any], parameters: dict[str, Any], can_proba: bool
) -> tuple[list[str], set[str]]:
    """The outputs to compute (every one the model has when none is named) and those to send as binary."""
    allowed = [PREDICT, PREDICT_PROBA] if can_proba else [PREDICT]
    all_binary = parameters.get("binary_data_output", False)
    if type(all_binary) is not bool:
        raise bad_request(
            "parameters.binary_data_output must be true or false", "parameters.binary_data_output"
        )
    requested = payload.get("outputs")
    if not requested:
        return allowed, set(allowed) if all_binary else set()
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        raise bad_request("'outputs' must be a list of objects with a 'name'", "outputs")
    outputs = [o["name"] for o in requested]
    unknown = [o for o in outputs if o not in allowed]
    if unknown:
        raise InputError(
            422,
            "unknown_output",
            f"unknown output(s) {unknown}; this model offers {allowed}",
            field="outputs",
        )
    binary = set()
    for i, output in enumerate(requested):
        options = output.get("parameters")
        if options is not None and not isinstance(options, dict):
            raise bad_request(f"outputs[{i}].parameters must be an object", f"outputs[{i}].parameters")
        options = options or {}
        if options.get("classification") not in (None, 0):  # 0: no classification (Triton's default)
            raise bad_request(
                f"outputs[{i}].parameters.classification (Triton's classification extension, the"
                " client's class_count) is not supported; ask for predict_proba and take the top"
                " classes from it",
                f"outputs[{i}].parameters.classification",
            )
        wanted = options.get("binary_data", options.get("binary_data_output", all_binary))
        if type(wanted) is not bool:
            raise bad_request(
                f"outputs[{i}].parameters.binary_data must be true or false", f"outputs[{i}].parameters"
            )
        if wanted:
            binary.add(output["name"])
    return outputs, binary


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
        return schema.check_rows(_matrix_columns(data, tensor["datatype"], schema))
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
            f"inputs[0].data: {len(data)} values cannot be rows of {width} column(s)",
            field="inputs[0].data",
        )
    rows = [data[i : i + width] for i in range(0, len(data), width)]
    return schema.check_rows(_matrix_columns(rows, tensor["datatype"], schema))


def _matrix_columns(rows: list[list[Any]], datatype: str, schema: InputSchema) -> list[list[Any]]:
    """`rows` of one tensor with each column's values converted from `datatype` where that is needed
    (nothing to do for FP data into float columns, the common case); ragged rows are left to the schema."""
    width = schema.width
    changing = [i for i, c in enumerate(schema.columns) if not oip_types.as_sent(datatype, c)]
    if not changing or any(len(row) != width for row in rows):
        return rows
    columns = [list(values) for values in zip(*rows, strict=True)]
    for i in changing:
        columns[i] = oip_types.to_column(columns[i], datatype, schema.columns[i], schema, "inputs[0]")
    return [list(row) for row in zip(*columns, strict=True)]
