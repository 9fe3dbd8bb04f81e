"""The order drift figures are read in, worst first: without numpy, for the CLI and the console."""

from __future__ import annotations

from typing import Any


def worst_first(feature: dict[str, Any]) -> tuple[int, float]:
    """Sort key of a feature's figures (a `FeatureDrift` as a dict), worst first: drift, warn, ok,
    then the rest; within each, the smallest Holm-adjusted p-value of the feature's tests first."""
    adjusted = [feature.get(k) for k in ("p_adjusted", "missing_p_adjusted")]
    level = {"drift": 0, "warn": 1, "ok": 2}.get(feature["status"], 3)
    return level, min((p for p in adjusted if p is not None), default=1.0)
