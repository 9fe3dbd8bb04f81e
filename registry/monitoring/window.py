"""The live window drift is computed on: the last N sampled rows, no older than T seconds."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from registry.monitoring.drift import DriftReport, Profile, UnusableProfile, drift_report
from registry.reference import category_label

DEFAULT_ROWS = 10_000
DEFAULT_SECONDS = 3600.0


class DriftWindow:
    """Sampled input rows (in signature column order) with their predictions, newest last."""

    def __init__(self, max_rows: int = DEFAULT_ROWS, max_seconds: float = DEFAULT_SECONDS) -> None:
        self.max_seconds = max_seconds
        self._rows: deque[tuple[float, list[Any], Any]] = deque(maxlen=max_rows)

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()

    def entries(self) -> list[tuple[float, list[Any], Any]]:
        """(time, row, prediction) of every row held, oldest first: what `restore` takes back."""
        return list(self._rows)

    def restore(self, entries: list[Any], now: float | None = None) -> None:
        """Put saved `entries` back (a supervisor restart), leaving out rows already too old."""
        oldest = (time.time() if now is None else now) - self.max_seconds
        self._rows.extend((float(t), row, p) for t, row, p in entries if float(t) >= oldest)

    def add(self, rows: list[list[Any]], predictions: list[Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._rows.extend((now, row, prediction) for row, prediction in zip(rows, predictions, strict=False))

    def report(
        self,
        profile: Profile | UnusableProfile | None,
        names: list[str],
        numeric: list[bool],
        now: float | None = None,
    ) -> DriftReport:
        """Drift of the window against `profile` (None: the version has no reference)."""
        now = time.time() if now is None else now
        while self._rows and self._rows[0][0] < now - self.max_seconds:
            self._rows.popleft()
        rows = [row for _, row, _ in self._rows]
        columns: dict[str, Any] = {}
        missing: dict[str, Any] = {}
        for index, (name, is_number) in enumerate(zip(names, numeric, strict=True)):
            values = [row[index] if index < len(row) else None for row in rows]
            absent = np.fromiter((v is None for v in values), bool, len(values))
            if is_number:
                columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            else:
                columns[name] = np.array(["" if v is None else category_label(v) for v in values], dtype=str)
            missing[name] = absent
        predictions = [p for _, _, p in self._rows]
        flat = predictions if not predictions or not isinstance(predictions[0], list) else None
        return drift_report(profile, columns, missing, np.asarray(flat) if flat is not None else None)
