"""The calibration of a classifier's probabilities on its labelled reference, fitted at registration.

With the reference's true labels, isotonic maps are fitted from the model's probabilities to what they
should have been: one from the top-class probability to the chance the prediction is right (accuracy), and
one per class from its probability to the chance the row is of that class (the expected confusion matrix,
hence F1). They are stored as their thresholds arrays next to the reference (never pickled) and applied
with `np.interp`, as `IsotonicRegression.predict` does. The registry core fits and stores them; the
estimate of live performance from them is `registry.monitoring.estimate`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Arrays of a calibration inside the reference `.npz` are stored under names with this prefix.
PREFIX = "calibration_"
#: Folds of the cross-fitted check of the calibration on the reference itself.
FOLDS = 5
#: Calibrating needs at least this many labelled reference rows (isotonic maps of fewer overfit).
MIN_LABELLED = 100


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
