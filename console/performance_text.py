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


def summary(figures: dict[str, Any] | None) -> str:
    """One line for a person: the metrics, coverage and delay, or why there is nothing yet."""
    return ", ".join(part for part in summary_parts(figures) if part)


def summary_parts(figures: dict[str, Any] | None) -> tuple[str, str]:
    """The metrics, and the coverage and delay (each may be empty), to show as one line or two."""
    if not figures or not figures.get("predicted"):
        return "no predictions recorded yet", ""
    names = ("accuracy", "f1", "log_loss", "mae", "rmse")
    metrics = ", ".join(f"{name.replace('_', ' ')} {figures[name]:.3f}" for name in names if name in figures)
    coverage = f"coverage {figures['coverage']:.0%} ({figures['labelled']}/{figures['predicted']})"
    if figures.get("delay") is not None:
        coverage += f", delay {_duration(figures['delay'])}"
    if not metrics:  # labelled but not scored: say why, never "no labels yet" beside a coverage
        metrics = figures.get("error") or ("no labels yet" if not figures.get("labelled") else "no figures")
    return metrics, coverage


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
