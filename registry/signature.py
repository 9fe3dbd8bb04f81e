"""Input signatures: inferred at registration from the model and its reference sample.

A signature is plain JSON so it can live in the registry DB and be served as OIP metadata:
`{"named": bool, "columns": [{"name", "dtype", "kind": "numeric"|"categorical", "nullable"}]}`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from registry.errors import NotAModel, ReferenceMismatch


def to_frame(data: Any, names: list[str] | None = None) -> Any:
    """`data` (DataFrame, array, list of rows, dict of columns) as a pandas DataFrame."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data)
    array = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ReferenceMismatch(f"reference sample must be 2-dimensional, got shape {array.shape}")
    if names is None or len(names) != array.shape[1]:
        names = [f"x{i}" for i in range(array.shape[1])]
    return pd.DataFrame(array, columns=names)


def model_feature_names(estimator: Any) -> list[str] | None:
    names = getattr(estimator, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def check_is_model(estimator: Any, what: str = "object") -> None:
    """Refuse anything that is not a fitted scikit-learn style predictor."""
    if not callable(getattr(estimator, "predict", None)) or not callable(
        getattr(estimator, "get_params", None)
    ):
        raise NotAModel(f"{what} is not a scikit-learn model (a {type(estimator).__name__})")
    if getattr(estimator, "n_features_in_", None) is None and model_feature_names(estimator) is None:
        raise NotAModel(f"{what} is not fitted (no n_features_in_); fit it before registering")


def infer_signature(estimator: Any, reference: Any | None = None) -> dict[str, Any]:
    """The input signature of a fitted estimator, refined by its reference sample if given."""
    names = model_feature_names(estimator)
    n_features = getattr(estimator, "n_features_in_", None) or (len(names) if names else None)
    if reference is None:
        columns = [
            {"name": name, "dtype": "float64", "kind": "numeric", "nullable": False}
            for name in (names or [f"x{i}" for i in range(int(n_features or 0))])
        ]
        return {"named": names is not None, "columns": columns}
    frame = to_frame(reference, names)
    check_reference_columns(frame, names, n_features)
    if names is not None:
        frame = frame[names]
    return {"named": names is not None, "columns": [_column_spec(frame[c]) for c in frame.columns]}


def check_reference_columns(frame: Any, names: list[str] | None, n_features: int | None) -> None:
    """Raise ReferenceMismatch naming what is missing or extra in the reference sample."""
    if names is not None:
        present = [str(c) for c in frame.columns]
        missing = [n for n in names if n not in present]
        extra = [c for c in present if c not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unexpected {extra}")
            raise ReferenceMismatch(
                "reference sample columns do not match the model's input: " + "; ".join(parts)
            )
    elif n_features is not None and frame.shape[1] != n_features:
        raise ReferenceMismatch(
            f"reference sample has {frame.shape[1]} columns; the model expects {n_features}"
        )


def _column_spec(series: Any) -> dict[str, Any]:
    import pandas as pd

    dtype = series.dtype
    types = pd.api.types
    numeric = types.is_bool_dtype(dtype) or types.is_numeric_dtype(dtype)
    if not numeric and types.is_object_dtype(dtype):
        numeric = bool(pd.to_numeric(series.dropna(), errors="coerce").notna().all())
    kind = "numeric" if numeric else "categorical"
    return {
        "name": str(series.name),
        "dtype": str(dtype),
        "kind": kind,
        "nullable": bool(series.isna().any()),
    }


def output_spec(estimator: Any) -> dict[str, Any]:
    """What the model answers: classes for classifiers, a value for regressors."""
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        return {
            "kind": "classification",
            "classes": [to_json_scalar(c) for c in classes],
            "predict_proba": callable(getattr(estimator, "predict_proba", None)),
        }
    return {"kind": "regression"}


def to_json_scalar(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; anything else unchanged."""
    return value.item() if hasattr(value, "item") else value


def json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's own parameters, with non-JSON values shown by their repr."""
    params: dict[str, Any] = {}
    for key, value in estimator.get_params(deep=False).items():
        value = to_json_scalar(value)
        plain = value is None or isinstance(value, (bool, int, float, str))
        params[key] = value if plain else " ".join(repr(value).split())
    return params


# ---------------------------------------------------------------------- validation at serving
class InputError(Exception):
    """A request whose input cannot be used; carries the HTTP status and a JSON-ready body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.details:
            error["details"] = self.details
        return {"error": error}


_NUMBER_TYPES = (int, float)
_NUMBER_SET = frozenset(_NUMBER_TYPES)
_MAX_REPORTED = 20


class InputSchema:
    """A precompiled check of request rows against a version's signature.

    Rows are lists in signature order. Numbers are accepted for numeric columns (ints become
    floats), strings for categorical ones, and null only where the column is nullable; booleans
    and numeric strings are refused rather than guessed at.
    """

    def __init__(self, signature: dict[str, Any], redact: bool = False) -> None:
        columns = signature.get("columns", [])
        self.names: list[str] = [c["name"] for c in columns]
        self.numeric: list[bool] = [c["kind"] == "numeric" for c in columns]
        self.nullable: list[bool] = [bool(c.get("nullable")) for c in columns]
        self.named: bool = bool(signature.get("named"))
        self.all_numeric = all(self.numeric)
        self.any_nullable = any(self.nullable)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.redact = redact

    @property
    def width(self) -> int:
        return len(self.names)

    def check_names(self, names: list[str]) -> list[int]:
        """Positions of `names` in the signature; a 422 naming what is missing or unexpected."""
        if names == self.names:
            return list(range(self.width))
        missing = [n for n in self.names if n not in names]
        unexpected = [n for n in names if n not in self.index]
        if missing or unexpected:
            details = [{"field": n, "problem": "missing"} for n in missing]
            details += [{"field": n, "problem": "unexpected"} for n in unexpected]
            parts = []
            if missing:
                parts.append(f"missing column(s) {missing}")
            if unexpected:
                parts.append(f"unexpected column(s) {unexpected}")
            raise InputError(
                422,
                "schema_mismatch",
                "; ".join(parts) + f"; the model expects {self.names}",
                field=(missing or unexpected)[0],
                details=details,
            )
        return [names.index(n) for n in self.names]

    def check_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """`rows` if every value fits its column; otherwise a 422 with a per-column report."""
        width = self.width
        if self.all_numeric and not self.any_nullable:
            # set operations run at C speed: one type test per value without a Python-level loop
            if set(map(len, rows)) == {width} and set(map(type, chain.from_iterable(rows))) <= _NUMBER_SET:
                return rows
        elif all(len(row) == width and all(self._fits(i, v) for i, v in enumerate(row)) for row in rows):
            return rows
        raise self._report(rows)

    def _fits(self, i: int, value: Any) -> bool:
        if value is None or (type(value) is float and value != value):
            return self.nullable[i]
        return type(value) in _NUMBER_TYPES if self.numeric[i] else type(value) is str

    def _report(self, rows: list[list[Any]]) -> InputError:
        details: list[dict[str, Any]] = []
        for r, row in enumerate(rows):
            if len(row) != self.width:
                details.append(
                    {
                        "field": None,
                        "row": r,
                        "problem": "width",
                        "expected": f"{self.width} values",
                        "got": f"{len(row)} values",
                    }
                )
            else:
                details.extend(self._problem(r, i, v) for i, v in enumerate(row) if not self._fits(i, v))
            if len(details) >= _MAX_REPORTED:
                break
        first = details[0]
        where = f"column {first['field']!r}" if first["field"] is not None else "the row"
        message = (
            f"row {first['row']}: {where} {first['problem_text']}"
            if "problem_text" in first
            else (
                f"row {first['row']} has {first['got']}; the model expects {first['expected']} {self.names}"
            )
        )
        for d in details:
            d.pop("problem_text", None)
            if self.redact:
                d.pop("got", None)
        extra = f" ({len(details) - 1} more problem(s) in details)" if len(details) > 1 else ""
        return InputError(422, "schema_mismatch", message + extra, field=first["field"], details=details)

    def _problem(self, r: int, i: int, value: Any) -> dict[str, Any]:
        name = self.names[i]
        if value is None or (type(value) is float and value != value):
            return {
                "field": name,
                "row": r,
                "problem": "null",
                "expected": "a value",
                "problem_text": "is null but may not be",
            }
        expected = "a number" if self.numeric[i] else "a string"
        got = type(value).__name__
        shown = "" if self.redact else f" {value!r}"
        return {
            "field": name,
            "row": r,
            "problem": "type",
            "expected": expected,
            "got": f"{got}{shown}",
            "problem_text": f"expected {expected}, got {got}{shown}",
        }
