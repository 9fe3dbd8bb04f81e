"""Estimated performance of a classifier before labels arrive: confidence-based performance
estimation (CBPE, the idea NannyML popularised), calibrated on the version's labelled reference.

At registration, with the reference's true labels, isotonic maps are fitted from the model's
probabilities to what they should have been: one from the top-class probability to the chance the
prediction is right (accuracy), and one per class from its probability to the chance the row is of
that class (the expected confusion matrix, hence F1). They are stored as their thresholds arrays
next to the reference (never pickled) and applied with `np.interp`, as `IsotonicRegression.predict`
does. Without labels the raw probabilities stand in (`calibrated: false`).

On live traffic the estimated accuracy is the mean calibrated confidence of the window's rows, and
F1 comes from the expected confusion matrix (binary: F1 of the second class, as scikit-learn's
`f1_score` for 0/1 labels; more classes: macro F1). The estimate assumes the relation between
inputs and labels is the reference's (covariate shift only, no concept drift).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Arrays of a calibration inside the reference `.npz` are stored under names with this prefix.
PREFIX = "calibration_"
#: Folds of the cross-fitted check of the calibration on the reference itself.
FOLDS = 5
#: Calibrating needs at least this many labelled reference rows (isotonic maps of fewer overfit).
MIN_LABELLED = 100
NO_PROBA = "the model has no predict_proba"


class CalibrationWarning(UserWarning):
    """The labelled reference looks like the model's training rows: the estimate will read too high."""


@dataclass
class Calibration:
    """Isotonic maps (thresholds arrays) fitted on the labelled reference, and how well they did there."""

    top_x: Any  # top-class probability thresholds ...
    top_y: Any  # ... and the chance the prediction is right at each
    # per class: thresholds of P(class), concatenated; class k's are class_x[offsets[k]:offsets[k + 1]]
    class_x: Any
    class_y: Any
    offsets: Any
    #: On the reference: realised accuracy, and the cross-fitted estimate of it (maps fitted on other folds).
    reference_accuracy: float
    reference_estimate: float

    @classmethod
    def fit(cls, probabilities: Any, labels: Any, classes: Any, seed: int = 0) -> Calibration:
        """Maps from the model's `probabilities` (rows x classes, columns in `classes` order) on the
        reference to its true `labels`."""
        from sklearn.model_selection import KFold

        p = np.asarray(probabilities, dtype=np.float64)
        truth = _class_index(labels, classes)
        confidence, correct = p.max(axis=1), (p.argmax(axis=1) == truth).astype(np.float64)
        top_x, top_y = _isotonic(confidence, correct)
        maps = [_isotonic(p[:, k], (truth == k).astype(np.float64)) for k in range(p.shape[1])]
        crossed = np.empty(len(p))
        for fitted, scored in KFold(FOLDS, shuffle=True, random_state=seed).split(p):
            x, y = _isotonic(confidence[fitted], correct[fitted])
            crossed[scored] = np.interp(confidence[scored], x, y)
        return cls(
            top_x,
            top_y,
            np.concatenate([x for x, _ in maps]),
            np.concatenate([y for _, y in maps]),
            np.cumsum([0, *(len(x) for x, _ in maps)]),
            reference_accuracy=float(correct.mean()),
            reference_estimate=float(crossed.mean()),
        )

    def to_arrays(self) -> dict[str, Any]:
        """The calibration as plain arrays (named with PREFIX) for the reference `.npz`."""
        arrays = {name: getattr(self, name) for name in ("top_x", "top_y", "class_x", "class_y", "offsets")}
        arrays["reference"] = np.array([self.reference_accuracy, self.reference_estimate])
        return {PREFIX + name: np.asarray(value) for name, value in arrays.items()}

    @classmethod
    def from_arrays(cls, arrays: Any) -> Calibration | None:
        """The calibration stored by `to_arrays` in `arrays` (an `NpzFile` or dict); None if absent."""
        if PREFIX + "top_x" not in arrays:
            return None
        get = {name: arrays[PREFIX + name] for name in ("top_x", "top_y", "class_x", "class_y", "offsets")}
        accuracy, estimate = (float(v) for v in arrays[PREFIX + "reference"])
        return cls(**get, reference_accuracy=accuracy, reference_estimate=estimate)

    def confidence(self, top: Any) -> Any:
        """The chance each prediction is right, from its top-class probability."""
        return np.interp(top, self.top_x, self.top_y)

    def class_probabilities(self, p: Any) -> Any:
        """Calibrated class probabilities (rows sum to 1; a row every map sends to 0 keeps its own)."""
        calibrated = np.column_stack(
            [
                np.interp(p[:, k], self.class_x[a:b], self.class_y[a:b])
                for k, (a, b) in enumerate(zip(self.offsets[:-1], self.offsets[1:], strict=True))
            ]
        )
        totals = calibrated.sum(axis=1, keepdims=True)
        return np.where(totals > 0, calibrated / np.where(totals > 0, totals, 1), p)


def estimate(probabilities: Any, calibration: Calibration | None) -> dict[str, Any]:
    """Estimated accuracy and F1 of the rows whose class `probabilities` (rows x classes) are given;
    rows with a non-finite probability are left out and counted (`unusable_rows`)."""
    p = np.asarray(probabilities, dtype=np.float64)
    result: dict[str, Any] = {"accuracy": None, "f1": None, "calibrated": calibration is not None}
    result["rows"], result["unusable_rows"] = len(p), 0
    if len(p) == 0 or p.ndim != 2 or p.shape[1] < 2:
        return result
    usable = np.isfinite(p).all(axis=1)  # a NaN or infinite probability would poison the mean
    p = p[usable]
    result["rows"] = rows = len(p)
    result["unusable_rows"] = int(len(usable) - rows)
    if rows == 0:
        return result
    if calibration is not None and len(calibration.offsets) != p.shape[1] + 1:
        calibration, result["calibrated"] = None, False  # not this model's classes: say it is raw
    top = p.max(axis=1)
    confidence = calibration.confidence(top) if calibration else top
    q = calibration.class_probabilities(p) if calibration else p
    predicted = np.zeros_like(q)
    predicted[np.arange(rows), p.argmax(axis=1)] = 1.0
    confusion = predicted.T @ q  # [predicted class, true class], expected counts
    tp = np.diag(confusion)
    f1 = np.divide(2 * tp, confusion.sum(axis=0) + confusion.sum(axis=1), out=np.zeros_like(tp), where=tp > 0)
    result["accuracy"] = float(confidence.mean())
    result["f1"] = float(f1[1] if p.shape[1] == 2 else f1.mean())
    # The accuracy of `rows` labelled rows would scatter this much around the estimate, if it is right.
    result["std_error"] = float(np.sqrt(np.sum(confidence * (1 - confidence))) / rows)
    if calibration is not None:
        result["reference_accuracy"] = calibration.reference_accuracy
    return result


class ConfidenceWindow:
    """The class probabilities of the newest sampled rows (at most `max_rows`, no older than
    `max_seconds`), the window the estimate is computed on (the same span as drift's)."""

    def __init__(self, max_rows: int = 10_000, max_seconds: float = 3600.0) -> None:
        self.max_seconds = max_seconds
        self._rows: deque[tuple[float, list[float]]] = deque(maxlen=max_rows)

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, probabilities: list[list[float]], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._rows.extend((now, row) for row in probabilities)

    def entries(self) -> list[tuple[float, list[float]]]:
        """(time, probabilities) of every row held, oldest first: what `restore` takes back."""
        return list(self._rows)

    def restore(self, entries: list[Any], now: float | None = None) -> None:
        """Put saved `entries` back (a supervisor restart), leaving out rows already too old."""
        oldest = (time.time() if now is None else now) - self.max_seconds
        self._rows.extend(
            (float(t), [np.nan if p is None else float(p) for p in row])  # a saved NaN comes back as null
            for t, row in entries
            if float(t) >= oldest
        )

    def estimate(self, calibration: Calibration | None, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        while self._rows and self._rows[0][0] < now - self.max_seconds:
            self._rows.popleft()
        rows = [row for _, row in list(self._rows)]  # a copy: rows keep arriving on the event loop
        if rows:  # rows of another width (not this model's classes) are left out
            rows = [row for row in rows if len(row) == len(rows[-1])]
        return estimate(np.array(rows, dtype=np.float64).reshape(len(rows), -1), calibration)


def _isotonic(x: Any, y: Any) -> tuple[Any, Any]:
    """Thresholds of a non-decreasing fit of y on x, clipped to [0, 1] (scikit-learn's IsotonicRegression)."""
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return fitted.X_thresholds_.astype(np.float64), fitted.y_thresholds_.astype(np.float64)


def _class_index(labels: Any, classes: Any) -> Any:
    """Each label's position in `classes`; ValueError naming labels the model does not know."""
    known = {_key(c): i for i, c in enumerate(classes)}
    keys = [_key(label) for label in np.asarray(labels).tolist()]
    unknown = sorted({k for k in keys if k not in known}, key=str)
    if unknown:
        raise ValueError(
            f"reference labels {unknown[:5]} are not classes of the model (its classes: {list(classes)[:10]})"
        )
    return np.array([known[k] for k in keys])


def _key(value: Any) -> Any:
    """A label as a dict key: numpy scalars as Python ones, whole floats as ints (1.0 is class 1)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
