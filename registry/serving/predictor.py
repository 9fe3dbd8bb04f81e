"""A loaded version ready to answer requests, calling the model the cheapest safe way.

Models fitted on DataFrames check column names on every call (and warn when given an array). For
all-numeric models the Predictor uses a copy whose first step forgets those names and takes plain
float arrays, after checking on the reference sample that it predicts exactly the same; models with
categorical columns or name-based column selection get a DataFrame.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import numpy as np

from registry.info import VersionInfo
from registry.reference import ReferenceSample
from registry.serving.introspect import casts_to_float32, strict_categories
from registry.signature import InputError, InputSchema

WARM_UP_ROWS = 32
#: Micro-batch when one single-row call costs more than this: the thread hand-off then pays off.
BATCHING_THRESHOLD_SECONDS = 0.001
#: scikit-learn's message for a category a strict encoder was not fitted on (a client's mistake).
_UNKNOWN_CATEGORY = "Found unknown categories"


class Predictor:
    """One version's estimator with its input schema."""

    def __init__(self, estimator: Any, info: VersionInfo, redact: bool = False) -> None:
        self.info = info
        self.estimator = estimator
        names = [c["name"] for c in info.signature.get("columns", [])]
        self.schema = InputSchema(
            info.signature,
            redact=redact,
            float32=casts_to_float32(estimator),
            categories=strict_categories(estimator, names),
        )
        self.redact = redact
        self.can_proba = bool(info.output.get("predict_proba")) and callable(
            getattr(estimator, "predict_proba", None)
        )
        self._model = estimator
        self._frame = self.schema.named and not self.schema.all_numeric
        self.ready = False
        self.single_row_seconds: float | None = None
        #: What each row beyond the first adds to a call, from the warm-up's rows (None: not measured).
        self.row_seconds: float | None = None
        #: The shape of `predict`'s answer: [-1] (one value a row), or [-1, k] for k outputs a row
        #: (multi-output models), as the warm-up prediction shows.
        self.predict_shape: list[int] = [-1]

    @property
    def input_kind(self) -> str:
        """'array' or 'frame': how the model is called."""
        return "frame" if self._frame else "array"

    def model_input(self, rows: list[list[Any]]) -> Any:
        """Rows as the model takes them. Arrays are column-major, like a DataFrame's values, so
        floating-point sums mostly run in the same order as on the DataFrame path."""
        if not self._frame:
            return np.array(rows, dtype=np.float64, order="F")
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.schema.names)
        for name, numeric in zip(self.schema.names, self.schema.numeric, strict=True):
            if numeric:
                frame[name] = frame[name].astype(np.float64)
        return frame

    def predict(self, rows: list[list[Any]]) -> list[Any]:
        try:
            return self._model.predict(self.model_input(rows)).tolist()
        except ValueError as exc:
            self._refuse_unknown_category(exc)
            raise

    def predict_proba(self, rows: list[list[Any]]) -> list[list[float]]:
        try:
            return self._model.predict_proba(self.model_input(rows)).tolist()
        except ValueError as exc:
            self._refuse_unknown_category(exc)
            raise

    def _refuse_unknown_category(self, exc: ValueError) -> None:
        """A strict encoder's refusal of an unknown category as a 422, not a model fault.

        The schema refuses the categories it knows of by column and row first; this is for encoders
        it cannot see (deeper in the model). A redacted deployment leaves out the model's message,
        which quotes the values. (A `try` in each call, not a context manager: this is every
        request's path.)"""
        if _UNKNOWN_CATEGORY in str(exc):
            detail = "" if self.redact else f" ({exc})"
            message = f"the model refused the input: a value is a category it was not fitted on{detail}"
            raise InputError(422, "schema_mismatch", message) from None

    def warm_up(self, reference: ReferenceSample | None) -> None:
        """Choose how to call the model, then predict once; `ready` only after that succeeded."""
        rows = sample_rows(reference, self.schema) if reference is not None else None
        if rows is None and self.schema.all_numeric and not self.schema.any_nullable:
            rows = [[0.0] * self.schema.width]
        if self.schema.named and self.schema.all_numeric and rows is not None:
            self._choose_array_path(rows)
        if rows is not None:
            first = self.predict(rows)[0]
            if isinstance(first, list):
                self.predict_shape = [-1, len(first)]
            self.single_row_seconds = min(_timed(self.predict, rows[:1]) for _ in range(5))
            if len(rows) > 1:
                many = min(_timed(self.predict, rows) for _ in range(2))
                self.row_seconds = max(0.0, many - self.single_row_seconds) / (len(rows) - 1)
        self.ready = True

    @property
    def worth_batching(self) -> bool:
        """True for models whose fixed cost per call dominates (forests, boosting, ...)."""
        return (self.single_row_seconds or 0.0) > BATCHING_THRESHOLD_SECONDS

    def _choose_array_path(self, rows: list[list[Any]]) -> None:
        """Use a name-free copy with float arrays if it predicts exactly like the original."""
        self._frame = True
        expected = self.predict(rows)
        fast = forget_feature_names(self.estimator)
        if fast is None:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                got = fast.predict(np.array(rows, dtype=np.float64, order="F")).tolist()
            except Exception:  # the model needs its DataFrame after all
                return
        if same_predictions(got, expected):
            self._model, self._frame = fast, False


def same_predictions(got: list[Any], expected: list[Any]) -> bool:
    """Equal labels, or numbers equal up to floating-point summation order (relative 1e-12)."""
    if got == expected:
        return True
    numeric = all(isinstance(v, float) for v in expected)
    return numeric and len(got) == len(expected) and bool(np.allclose(got, expected, rtol=1e-12, atol=0.0))


def _timed(function: Any, rows: list[list[Any]]) -> float:
    start = time.perf_counter()
    function(rows)
    return time.perf_counter() - start


def forget_feature_names(estimator: Any) -> Any | None:
    """A copy whose input step no longer remembers column names, or None if it selects by name."""
    fast = copy.deepcopy(estimator)
    target = fast
    while hasattr(target, "steps"):  # a Pipeline: its first step sees the input
        target = target.steps[0][1]
    if hasattr(target, "transformers") or not hasattr(target, "feature_names_in_"):
        return None
    try:
        del target.feature_names_in_
    except AttributeError:
        return None
    return fast


def sample_rows(
    reference: ReferenceSample, schema: InputSchema, limit: int = WARM_UP_ROWS
) -> list[list[Any]]:
    """The first rows of a reference sample in request form (missing values as None)."""
    count = min(limit, reference.rows)
    rows: list[list[Any]] = [[] for _ in range(count)]
    for name in schema.names:
        values, missing = reference.columns[name][:count], reference.missing[name][:count]
        for row, value, absent in zip(rows, values.tolist(), missing.tolist(), strict=True):
            row.append(None if absent else value)
    return rows
