"""One-line texts of a deployment's performance figures, shared by `modeldeck status` and the monitor."""

from __future__ import annotations

from typing import Any

#: Fewer sampled rows than this give no estimate to read yet (one row scores 1.000 ±0.000).
FEW_ROWS = 30


def estimated_text(estimated: dict[str, Any] | None) -> str | None:
    """The estimated performance (`"performance": {"estimated": ...}`) in at most ~75 characters, e.g.
    "estimated: accuracy 0.931 ±0.012 · F1 0.925 · 1,234 rows · calibrated"; None when there is none."""
    if not estimated:
        return None
    if estimated.get("reason"):
        return f"estimated: none ({estimated['reason']})"
    if estimated.get("accuracy") is None:
        return "estimated: - (no sampled traffic yet)"
    if estimated.get("rows", 0) < FEW_ROWS:
        return f"estimated: - ({estimated.get('rows', 0)} sampled rows, too few yet)"
    calibrated = "calibrated" if estimated.get("calibrated") else "uncalibrated"  # no reference labels
    return (
        f"estimated: accuracy {estimated['accuracy']:.3f} ±{estimated.get('std_error', 0.0):.3f}"
        f" · F1 {estimated['f1']:.3f} · {estimated['rows']:,} rows · {calibrated}"
    )
