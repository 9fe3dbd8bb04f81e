"""Open Inference Protocol datatypes: what model metadata declares, and input tensors into columns.

Metadata declares each input from the signature's dtype (integer columns INT64, float64 FP64,
float32 FP32, booleans BOOL, categorical columns BYTES) and each output from what the model answers
(INT64, BYTES, BOOL or FP64 classes; FP64 for regression and probabilities). Response tensors carry
exactly the declared datatype. An input tensor of any numeric datatype, BOOL or BYTES is accepted
for a column wherever its values convert without loss; otherwise a 422 names the column.
"""

from __future__ import annotations

import math
from typing import Any

from registry.signature import FLOAT32_MAX, InputError, InputSchema

#: The spec's tensor datatypes and their little-endian numpy layouts (BYTES has none: variable size).
NUMPY_DTYPES: dict[str, str | None] = {
    "BOOL": "|b1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": None,
}
FLOAT16_MAX = 65504.0


def family(datatype: str) -> str:
    """'float', 'int', 'bool' or 'bytes': how a tensor's values relate to a column's."""
    if datatype.startswith("FP"):
        return "float"
    if datatype == "BOOL" or datatype == "BYTES":
        return datatype.lower()
    return "int"


def column_family(column: dict[str, Any]) -> str:
    """'text' for categorical columns, else 'bool', 'int' or 'float' from the signature's dtype."""
    if column.get("kind") != "numeric":
        return "text"
    dtype = str(column.get("dtype", "float64")).lower()
    if dtype in ("bool", "boolean"):
        return "bool"
    if dtype.startswith(("int", "uint")):
        return "int"
    return "float"


def input_datatype(column: dict[str, Any]) -> str:
    """The datatype model metadata declares for a signature column."""
    kind = column_family(column)
    if kind == "float":
        dtype = str(column.get("dtype"))
        return {"float32": "FP32", "float16": "FP16"}.get(dtype, "FP64")
    return {"text": "BYTES", "bool": "BOOL", "int": "INT64"}[kind]


def predict_datatype(output: dict[str, Any]) -> str:
    """The datatype of `predict`: the classes' type for classifiers (BYTES if mixed), FP64 otherwise."""
    classes = output.get("classes")
    if output.get("kind") != "classification" or not classes:
        return "FP64"
    kinds = {type(c) for c in classes}
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return "BYTES"


def response_tensor(name: str, values: list[Any], datatype: str) -> dict[str, Any]:
    """An output tensor of `values` (one per row, or one list per row) with its declared datatype."""
    first = values[0] if values else None
    if isinstance(first, list):
        flat = [v for row in values for v in row]
        shape = [len(values), len(first)]
    else:
        flat, shape = values, [len(values)]
    if datatype == "BYTES" and flat and type(flat[0]) is not str:
        flat = [str(v) for v in flat]
    return {"name": name, "shape": shape, "datatype": datatype, "data": flat}


def as_sent(datatype: str, column: dict[str, Any]) -> bool:
    """True when values of `datatype` go into `column` unchanged (FP into float, BYTES into text)."""
    kind, target = family(datatype), column_family(column)
    return (kind, target) in (("float", "float"), ("bytes", "text"))


def to_column(
    values: list[Any], datatype: str, column: dict[str, Any], schema: InputSchema, where: str
) -> list[Any]:
    """`values` of an input tensor of `datatype` as the values the schema checks for `column`.

    Converts only where the pair needs it (BOOL into numbers, integers checked exact in floats,
    floats checked whole in integer columns); a value that would change is a 422 naming the column
    and row. Values of the wrong JSON type are left for the schema, which names them.
    """
    kind, target = family(datatype), column_family(column)
    name = column["name"]
    if (kind == "bytes") != (target == "text"):
        wanted = "BYTES" if target == "text" else f"a numeric or BOOL datatype ({input_datatype(column)})"
        raise InputError(
            422,
            "schema_mismatch",
            f"column {name!r} is {_described(target)}; {where} sends it as {datatype}, not {wanted}",
            field=name,
        )
    if as_sent(datatype, column):
        return values
    if kind == "bool":
        _checked(values, name, schema, lambda v: False, "is a number in a BOOL tensor, not true or false")
        return [int(v) if type(v) is bool else v for v in values]
    if target == "bool":
        return _checked(values, name, schema, lambda v: v in (0, 1), "is not 0 or 1 (a BOOL column)")
    if target == "int":
        return _checked(values, name, schema, _whole, f"is not a whole number ({datatype} into an integer)")
    width, limit = _float_width(schema.limits[schema.index[name]])
    return _checked(
        values,
        name,
        schema,
        lambda v: _whole(v) and -limit <= v <= limit,
        f"is not an integer the model's {width} input holds exactly",
    )


def _float_width(bound: float) -> tuple[str, int]:
    """The float type behind a column's range bound (float32 for models that cast, whatever the
    signature says) and the largest integer it holds exactly."""
    if bound <= FLOAT16_MAX:
        return "float16", 2**11
    if bound <= FLOAT32_MAX:
        return "float32", 2**24
    return "float64", 2**53


def _described(target: str) -> str:
    return "categorical (text)" if target == "text" else f"numeric ({target})"


def _whole(value: Any) -> bool:
    return type(value) is int or value.is_integer()


def _checked(values: list[Any], name: str, schema: InputSchema, test: Any, problem: str) -> list[Any]:
    """`values` if every number passes `test`; the first that does not is a 422 naming column and row.
    Non-finite numbers are left for the schema (NaN is a missing value there)."""
    for row, value in enumerate(values):
        kind = type(value)
        if (kind is int or (kind is float and math.isfinite(value))) and not test(value):
            shown = "" if schema.redact else f" ({value!r})"
            raise InputError(
                422,
                "schema_mismatch",
                f"row {row}: column {name!r} {problem}{shown}",
                field=name,
                row=row,
            )
    return values
