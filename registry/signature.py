"""Input signatures: inferred at registration from the model and its reference sample.

A signature is plain JSON so it can live in the registry DB and be served as OIP metadata:
`{"named": bool, "columns": [{"name", "dtype", "kind": "numeric"|"categorical", "nullable"}]}`.
"""

from __future__ import annotations

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
