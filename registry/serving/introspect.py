"""What a fitted model accepts beyond its signature, read from the model itself at load time.

- Strict encoders (`OneHotEncoder`/`OrdinalEncoder` with `handle_unknown='error'`) raise on a category
  they were not fitted on; their categories let the input check refuse such a value with a 422 naming
  the column and row, before the model sees it.
- Tree models cast their input to float32; a number beyond float32's range becomes infinity there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

#: Estimators (by module) that validate their input as float32 (sklearn's tree DTYPE).
_FLOAT32_MODULES = (
    "sklearn.tree.",
    "sklearn.ensemble._forest",
    "sklearn.ensemble._gb",
    "sklearn.ensemble._iforest",
)
_STRICT_ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def casts_to_float32(estimator: Any) -> bool:
    """True if the model, or any estimator inside it, takes its input as float32."""
    parts = [estimator]
    with contextlib.suppress(Exception):  # not a scikit-learn estimator after all: judge the object alone
        parts += list(estimator.get_params(deep=True).values())
    return any(type(part).__module__.startswith(_FLOAT32_MODULES) for part in parts)


def strict_categories(estimator: Any, names: Sequence[str]) -> dict[str, frozenset[Any]]:
    """Input column -> the only values a strict encoder that sees the column's raw values accepts."""
    entry = _entry(estimator)
    if entry is None:
        return {}
    if not hasattr(entry, "transformers_"):
        return _categories(entry, list(names))
    found: dict[str, frozenset[Any]] = {}
    indices = getattr(entry, "_transformer_to_input_indices", {})
    for name, transformer, columns in entry.transformers_:
        encoder = _entry(transformer)
        if encoder is not None:
            found.update(_categories(encoder, _column_names(columns, indices.get(name), names)))
    return found


def _entry(estimator: Any) -> Any | None:
    """The step that first sees the input's values: past pipelines' imputers (which keep values)."""
    while hasattr(estimator, "steps"):
        steps = [s for _, s in estimator.steps if s not in (None, "passthrough") and not _is_imputer(s)]
        if not steps:
            return None
        estimator = steps[0]
    return None if isinstance(estimator, str) else estimator


def _is_imputer(step: Any) -> bool:
    return type(step).__name__ == "SimpleImputer" and type(step).__module__.startswith("sklearn.impute")


def _categories(encoder: Any, columns: list[str]) -> dict[str, frozenset[Any]]:
    kind = type(encoder)
    if kind.__name__ not in _STRICT_ENCODERS or not kind.__module__.startswith("sklearn.preprocessing"):
        return {}
    categories = getattr(encoder, "categories_", None)
    if getattr(encoder, "handle_unknown", None) != "error" or categories is None:
        return {}
    if len(categories) != len(columns):
        return {}
    return {column: frozenset(values.tolist()) for column, values in zip(columns, categories, strict=True)}


def _column_names(columns: Any, indices: list[int] | None, names: Sequence[str]) -> list[str]:
    """The input column names a ColumnTransformer gives one of its transformers."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        return columns
    if indices is not None and all(0 <= i < len(names) for i in indices):
        return [names[i] for i in indices]
    return []
