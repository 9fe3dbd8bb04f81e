"""Realised performance: predictions joined with their labels, scored with scikit-learn's metrics.

Classifiers get accuracy, macro F1 and, when every labelled prediction kept its class probabilities,
log loss; regressors get MAE and RMSE. Each figure comes with its label coverage (labelled /
predicted) and label delay (median seconds from prediction to label).
"""

from __future__ import annotations

import statistics
from typing import Any

from registry.monitoring.outcomes import OutcomeStore

NO_PROBABILITIES = "no class probabilities were stored for these predictions (ask for predict_proba)"


def realised(
    store: OutcomeStore,
    deployment: str,
    version: int,
    output: dict[str, Any],
    since: float,
    until: float = float("inf"),
) -> dict[str, Any] | None:
    """The realised performance of one version's predictions made in [since, until), or None when
    it made none. `output` is the version's output description (kind, classes)."""
    predicted = store.predicted(deployment, version, since, until)
    if not predicted:
        return None
    pairs = store.joined(deployment, version, since, until)
    figures: dict[str, Any] = {
        "version": version,
        "kind": output.get("kind", "regression"),
        "predicted": predicted,
        "labelled": len(pairs),
        "coverage": len(pairs) / predicted,
        "delay": statistics.median(p[3] for p in pairs) if pairs else None,
    }
    if pairs:
        figures.update(score(pairs, output))
    return figures


def score(pairs: list[tuple[Any, Any, Any, float]], output: dict[str, Any]) -> dict[str, Any]:
    """The metrics of (prediction, label, probabilities, delay) pairs for the version's kind of output."""
    import numpy as np
    from sklearn import metrics

    if output.get("kind") != "classification":
        try:
            predictions = np.array([float(p) for p, *_ in pairs])
            labels = np.array([float(lab) for _, lab, *_ in pairs])
        except (TypeError, ValueError):
            return {"error": "a label or prediction is not a number"}
        return {
            "mae": float(metrics.mean_absolute_error(labels, predictions)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(labels, predictions))),
        }
    # Labels may come as 1 or "1": classes are compared as text.
    predicted = [str(p) for p, *_ in pairs]
    labels = [str(lab) for _, lab, *_ in pairs]
    figures: dict[str, Any] = {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "f1": float(metrics.f1_score(labels, predicted, average="macro", zero_division=0)),
    }
    classes = [str(c) for c in output.get("classes") or []]
    probabilities = [pr for _, _, pr, _ in pairs]
    if classes and all(pr is not None for pr in probabilities):
        unknown = set(labels) - set(classes)
        if unknown:
            figures["log_loss_omitted"] = f"labels {sorted(unknown)[:3]} are not classes of the model"
        else:
            # By position: probability columns follow the model's classes, whatever their text sorts as.
            index = {c: i for i, c in enumerate(classes)}
            truth = [index[lab] for lab in labels]
            figures["log_loss"] = float(
                metrics.log_loss(truth, probabilities, labels=list(range(len(classes))))
            )
    else:
        figures["log_loss_omitted"] = NO_PROBABILITIES
    return figures


def summary(figures: dict[str, Any] | None) -> str:
    """One line for a person: the metrics, coverage and delay, or why there is nothing yet."""
    if not figures:
        return "no predictions recorded yet"
    parts = [
        f"{name} {figures[name]:.3f}"
        for name in ("accuracy", "f1", "log_loss", "mae", "rmse")
        if name in figures
    ]
    parts.append(f"coverage {figures['coverage']:.0%} ({figures['labelled']}/{figures['predicted']})")
    if figures.get("delay") is not None:
        parts.append(f"delay {_duration(figures['delay'])}")
    if not figures["labelled"]:
        parts.insert(0, "no labels yet")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
