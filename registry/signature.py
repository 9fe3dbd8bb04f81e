"""Input signatures: inferred at registration from the model and its reference sample.

A signature is plain JSON so it can live in the registry DB and be served as OIP metadata:
`{"named": bool, "columns": [{"name", "dtype", "kind": "numeric"|"categorical", "nullable"}]}`.
"""

from __future__ import annotations

import math
import reprlib
import sys
from collections import Counter
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
    nullable = frame.isna().any().to_numpy()  # one pass over the frame, not one per column
    columns = [_column_spec(frame.iloc[:, i], bool(nullable[i])) for i in range(frame.shape[1])]
    return {"named": names is not None, "columns": columns}


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


def _column_spec(series: Any, nullable: bool) -> dict[str, Any]:
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
        "nullable": nullable,
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
    """A request whose input cannot be used: the HTTP status, a code, a message naming the field at
    fault, the field (and row) and per-value details. `registry.serving.error_bodies` renders it in
    the shape of the protocol it was asked in."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.details = details or []
        self.row = row


_NUMBER_TYPES = (int, float)
_NUMBER_SET = frozenset(_NUMBER_TYPES)
_MAX_REPORTED = 20
FLOAT64_MAX = sys.float_info.max
FLOAT32_MAX = 3.4028234663852886e38
#: The largest magnitude a column of this dtype holds; beyond it a value would become infinity.
_DTYPE_LIMITS = {"float32": FLOAT32_MAX, "float16": 65504.0}
_LIMIT_NAMES = {limit: dtype for dtype, limit in _DTYPE_LIMITS.items()}


def _short_repr() -> reprlib.Repr:
    """Values shown in errors: short, however large or deep the value a client sent."""
    short = reprlib.Repr()  # keyword arguments need Python 3.12
    short.maxlevel, short.maxlist, short.maxdict = 3, 6, 6
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    return short


_SHORT = _short_repr()


class InputSchema:
    """A precompiled check of request rows against a version's signature.

    Rows are lists in signature order. Numbers are accepted for numeric columns (ints become
    floats), strings for categorical ones, and null only where the column is nullable; booleans
    and numeric strings are refused rather than guessed at. Numbers must be finite and fit the
    column's dtype (float32 everywhere for `float32` models, which cast their input); NaN counts as
    a missing value, so only nullable columns take it. Where `categories` names the only values a
    column's encoder knows, any other value is refused before it reaches the model.
    """

    def __init__(
        self,
        signature: dict[str, Any],
        redact: bool = False,
        *,
        float32: bool = False,
        categories: dict[str, frozenset[Any]] | None = None,
    ) -> None:
        columns = signature.get("columns", [])
        self.columns: list[dict[str, Any]] = columns
        self.names: list[str] = [c["name"] for c in columns]
        self.numeric: list[bool] = [c["kind"] == "numeric" for c in columns]
        self.nullable: list[bool] = [bool(c.get("nullable")) for c in columns]
        widest = FLOAT32_MAX if float32 else FLOAT64_MAX
        self.limits: list[float] = [
            min(_DTYPE_LIMITS.get(str(c.get("dtype")), widest), widest) for c in columns
        ]
        self.bound = min(self.limits, default=FLOAT64_MAX)
        categories = categories or {}
        self.known: list[frozenset[Any] | None] = [categories.get(name) for name in self.names]
        self.named: bool = bool(signature.get("named"))
        self.all_numeric = all(self.numeric)
        self.any_nullable = any(self.nullable)
        #: Every column a number, none nullable, none with known categories: finite numbers of the right
        #: width within `bound` are all a row needs.
        self.plain = self.all_numeric and not self.any_nullable and all(k is None for k in self.known)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.redact = redact

    @property
    def width(self) -> int:
        return len(self.names)

    def check_names(self, names: list[str]) -> list[int]:
        """Positions of `names` in the signature; a 422 naming what is repeated, missing or unexpected."""
        if names == self.names:
            return list(range(self.width))
        if len(set(names)) != len(names):
            raise self.repeated([n for n, count in Counter(names).items() if count > 1])
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

    def repeated(self, names: list[str], row: int | None = None) -> InputError:
        """The 422 for column names given more than once (no copy is ever dropped or picked silently)."""
        where = f"row {row}: " if row is not None else ""
        return InputError(
            422,
            "schema_mismatch",
            f"{where}column(s) {names} given more than once; give each column once",
            field=names[0],
            details=[{"field": n, "problem": "repeated"} for n in names],
            row=row,
        )

    def check_rows(self, rows: list[list[Any]]) -> list[list[Any]]:
        """`rows` if every value fits its column; otherwise a 422 with a per-column report."""
        if not rows:
            raise InputError(400, "bad_request", "the input has no rows; send at least one")
        width = self.width
        if self.plain:
            # set operations and sum run at C speed: no Python-level loop over the values
            if (
                set(map(len, rows)) == {width}
                and set(map(type, chain.from_iterable(rows))) <= _NUMBER_SET
                and self.in_range(rows)
            ):
                return rows
        elif all(len(row) == width and all(self._fits(i, v) for i, v in enumerate(row)) for row in rows):
            return rows
        error = self._report(rows)
        if error is None:  # the quick range test overflowed on large but valid numbers
            return rows
        raise error

    def in_range(self, rows: list[list[Any]]) -> bool:
        """True if every number is finite and within the bound (may say False for valid ones)."""
        values = chain.from_iterable(rows)
        try:
            if self.bound == FLOAT64_MAX:
                return math.isfinite(sum(values, 0.0))  # inf and NaN spread to the sum
            return sum(map(abs, values), 0.0) <= self.bound
        except OverflowError:  # an int beyond any float
            return False

    def _fits(self, i: int, value: Any) -> bool:
        if value is None:
            return self.nullable[i]
        kind = type(value)
        if self.numeric[i]:
            if kind is float and value != value:  # NaN: a missing value
                return self.nullable[i]
            fits = kind in _NUMBER_TYPES and -self.limits[i] <= value <= self.limits[i]
        else:
            fits = kind is str
        known = self.known[i]
        return fits and (known is None or value in known)

    def _report(self, rows: list[list[Any]]) -> InputError | None:
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
        if not details:
            return None
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
        return InputError(
            422, "schema_mismatch", message + extra, field=first["field"], details=details, row=first["row"]
        )

    def _problem(self, r: int, i: int, value: Any) -> dict[str, Any]:
        name = self.names[i]
        kind = type(value)
        if value is None or (kind is float and value != value and self.nullable[i]):
            return {
                "field": name,
                "row": r,
                "problem": "null",
                "expected": "a value",
                "problem_text": "is null but may not be",
            }
        shown = "" if self.redact else f" {_SHORT.repr(value)}"
        if self.numeric[i] and kind in _NUMBER_TYPES:
            return self._number_problem(r, i, value, shown)
        if not self.numeric[i] and kind is str:
            return self._unknown_category(r, i, shown)
        expected = "a number" if self.numeric[i] else "a string"
        return {
            "field": name,
            "row": r,
            "problem": "type",
            "expected": expected,
            "got": f"{kind.__name__}{shown}",
            "problem_text": f"expected {expected}, got {kind.__name__}{shown}",
        }

    def _number_problem(self, r: int, i: int, value: float, shown: str) -> dict[str, Any]:
        limit = self.limits[i]
        got = f" ({shown.strip()})" if shown else ""
        if isinstance(value, float) and not math.isfinite(value):
            problem, text = "not_finite", f"is not a finite number{got}"
        elif not -limit <= value <= limit:
            dtype = _LIMIT_NAMES.get(limit, "float64")
            problem, text = "out_of_range", f"is beyond what the model's {dtype} input holds{got}"
        else:
            return self._unknown_category(r, i, shown)
        return {
            "field": self.names[i],
            "row": r,
            "problem": problem,
            "expected": f"a finite number within ±{limit:.4g}",
            "got": shown.strip() or type(value).__name__,
            "problem_text": text,
        }

    def _unknown_category(self, r: int, i: int, shown: str) -> dict[str, Any]:
        known = self.known[i] or frozenset()
        return {
            "field": self.names[i],
            "row": r,
            "problem": "unknown_category",
            "expected": f"one of the {len(known)} categories the model was fitted on",
            "got": shown.strip(),
            "problem_text": f"is a category the model was not fitted on{shown}",
        }
