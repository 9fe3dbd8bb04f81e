"""Estimated performance of a classifier before labels arrive: confidence-based performance
estimation (CBPE, the idea NannyML popularised), calibrated on the version's labelled reference.

At registration, with the reference's true labels, the registry core fits isotonic maps from the
model's probabilities to what they should have been (`registry.calibration`). Without labels the raw
probabilities stand in (`calibrated: false`).

On live traffic the estimated accuracy is the mean calibrated confidence of the window's rows, and
F1 comes from the expected confusion matrix (binary: F1 of the second class, as scikit-learn's
`f1_score` for 0/1 labels; more classes: macro F1). The estimate assumes the relation between
inputs and labels is the reference's (covariate shift only, no concept drift).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from registry.calibration import Calibration

NO_PROBA = "the model has no predict_proba"


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
    result["unusable_rows"] = int(np.count_nonzero(~usable))
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
