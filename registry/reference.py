"""The reference sample of a version's training data, stored as a pickle-free `.npz` artifact.

Each column is stored as a plain array (float64 for numeric columns, fixed-width unicode for
categorical ones) with a boolean mask of missing values, next to the model's predictions on the
sample and, when registration was given them, the true labels of its rows and the calibration of
the model's probabilities fitted on them (`registry.calibration`). Drift monitoring compares
live traffic with it; the estimated performance is calibrated on it.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import ReferenceMismatch, RegistryError
from registry.npz import npz_bytes

MAX_REFERENCE_ROWS = 10_000


def category_label(value: Any) -> str:
    """A categorical value as the label drift compares, the same in the stored reference sample and in
    live windows: strings as they are, booleans "True"/"False", a whole float as the integer it is
    (a float column's 1.0, stored by pandas, and JSON's 1 are both "1"), anything else `str(value)`."""
    if isinstance(value, str):
        return value
    value = value.item() if hasattr(value, "item") else value  # numpy scalars as Python ones
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_reference(reference: Any) -> Any:
    """`reference` itself, or the data of the file it names: a path (str or Path) to a CSV file
    (read with a header row, as `modeldeck register --reference` does) or a `.npy` array."""
    if not isinstance(reference, str | os.PathLike):
        return reference
    path = Path(reference).expanduser()
    if not path.is_file():
        raise ReferenceMismatch(f"no such reference file: {path}")
    try:
        if path.suffix == ".npy":
            import numpy as np

            from registry.unpacking import check_npy_file

            check_npy_file(path)  # a header that promises more than the file holds is refused first
            return np.load(path, allow_pickle=False)
        import pandas as pd

        return pd.read_csv(path)
    except RegistryError:
        raise
    except Exception as exc:
        raise ReferenceMismatch(f"cannot read reference sample {path}: {exc}") from exc


def split_labels(reference: Any, column: str) -> tuple[Any, Any]:
    """The reference's features and its `column` of true labels (a CSV file or a DataFrame)."""
    data = read_reference(reference)
    if not hasattr(data, "columns"):
        raise ReferenceMismatch(f"a label column ({column!r}) needs a reference with a header (a CSV file)")
    if column not in data.columns:
        raise ReferenceMismatch(f"no column {column!r} in the reference; its columns: {list(data.columns)}")
    return data.drop(columns=[column]), data[column].to_numpy()


@dataclass
class ReferenceSample:
    """Columns (name to array), their missing-value masks, the model's predictions, the rows' true
    labels (None if not given) and other stored arrays by name (the calibration's)."""

    columns: dict[str, Any]
    missing: dict[str, Any]
    predictions: Any
    labels: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def to_frame(self) -> Any:
        """The sample as a pandas DataFrame, with missing values restored as NaN/None."""
        import pandas as pd

        data = {}
        for name, values in self.columns.items():
            column = pd.Series(values, dtype=object if values.dtype.kind == "U" else values.dtype)
            data[name] = column.mask(self.missing[name])
        return pd.DataFrame(data)


def sample_positions(count: int, limit: int = MAX_REFERENCE_ROWS, seed: int = 0) -> Any:
    """The positions of at most `limit` of `count` rows, drawn at random (reproducibly), ascending."""
    import numpy as np

    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def arrays_of(
    frame: Any,
    signature: dict[str, Any],
    predictions: Any,
    labels: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sample's arrays by name, columns typed by the signature: `labels` (the rows' true classes)
    and `extra` arrays (named apart from the columns, e.g. `calibration_*`) as given. `to_bytes`
    stores them; `from_arrays` and `decode` read them back."""
    import numpy as np

    arrays: dict[str, Any] = {}
    for index, spec in enumerate(signature["columns"]):
        series = frame[spec["name"]] if spec["name"] in frame.columns else frame.iloc[:, index]
        missing = series.isna().to_numpy()
        if spec["kind"] == "numeric":
            values = series.astype("float64").to_numpy()
        else:
            texts = ["" if absent else category_label(v) for v, absent in zip(series, missing, strict=True)]
            values = np.array(texts, dtype=str)
        arrays[f"c{index}"] = values
        arrays[f"m{index}"] = missing
    arrays["names"] = np.array([spec["name"] for spec in signature["columns"]], dtype=str)
    arrays["predictions"] = _plain_array(np.asarray(predictions))
    if labels is not None:
        arrays["labels"] = _plain_array(np.asarray(labels))
    arrays.update(extra or {})
    return arrays


def to_bytes(arrays: dict[str, Any]) -> bytes:
    """`arrays_of`'s arrays as the stored `.npz` bytes."""
    return npz_bytes(arrays)


def decode(data: bytes) -> ReferenceSample:
    """A ReferenceSample from `to_bytes`'s bytes; never unpickles anything."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return from_arrays(npz)


def from_arrays(arrays: Any) -> ReferenceSample:
    """A ReferenceSample from `arrays_of`'s arrays, or from the stored `.npz` (a mapping of the same)."""
    names = [str(n) for n in arrays["names"]]
    stored = set(arrays.keys())
    known = {"names", "predictions", "labels", *(f"{k}{i}" for i in range(len(names)) for k in "cm")}
    return ReferenceSample(
        columns={name: arrays[f"c{i}"] for i, name in enumerate(names)},
        missing={name: arrays[f"m{i}"] for i, name in enumerate(names)},
        predictions=arrays["predictions"],
        labels=arrays["labels"] if "labels" in stored else None,
        extra={key: arrays[key] for key in stored if key not in known},
    )


def _plain_array(array: Any) -> Any:
    """Object arrays (e.g. string class labels) become unicode so no pickle is needed."""
    return array.astype(str) if array.dtype == object else array
