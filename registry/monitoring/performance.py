"""Realised performance: predictions joined with their labels, scored with scikit-learn's metrics.

Classifiers get accuracy, macro F1 and, when every labelled prediction kept its class probabilities,
log loss; regressors get MAE and RMSE. Each figure comes with its label coverage (labelled /
predicted) and label delay (median seconds from prediction to label).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select

from registry.outcomes import OutcomeStore
from registry.schema import PerformanceRollup
from registry.store import Database

# SQLModel sets __table__ on every table class but does not declare it to type checkers.
_TABLE = PerformanceRollup.__table__  # type: ignore[attr-defined]

NO_PROBABILITIES = "no class probabilities were stored for these predictions (ask for predict_proba)"


def realised(
    store: OutcomeStore,
    deployment: str,
    version: int,
    output: dict[str, Any],
    since: float,
    until: float = float("inf"),
    by: str = "deployment",
) -> dict[str, Any] | None:
    """The realised performance of one version's predictions made in [since, until) by deployment
    (or, `by="model"`, model) `deployment`, or None when it made none. `output` is the version's
    output description (kind, classes)."""
    predicted = store.predicted(deployment, version, since, until, by)
    if not predicted:
        return None
    pairs = store.joined(deployment, version, since, until, by)
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
            numbers = np.array([float(p) for p, *_ in pairs])
            actual = np.array([float(lab) for _, lab, *_ in pairs])
        except (TypeError, ValueError):
            return {"error": "a label or prediction is not a number"}
        return {
            "mae": float(metrics.mean_absolute_error(actual, numbers)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(actual, numbers))),
        }
    # Labels may come as 1, "1", 1.0 or "1.0" (pandas writes an integer column with a missing value
    # as floats): classes are compared as canonical text.
    predicted = [class_text(p) for p, *_ in pairs]
    labels = [class_text(lab) for _, lab, *_ in pairs]
    classes = [class_text(c) for c in output.get("classes") or []]
    # Two classes: F1 of the second (scikit-learn's default for 0/1 labels, and what the estimate gives);
    # more (or labels that are not the model's classes): macro F1.
    two = len(classes) == 2 and set(labels) | set(predicted) <= set(classes)
    binary = {"average": "binary", "pos_label": classes[1]} if two else {"average": "macro"}
    figures: dict[str, Any] = {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0, **binary)),
    }
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


_INTEGRAL_TEXT = re.compile(r"[+-]?\d+\.0*")


def class_text(value: Any) -> str:
    """A class as text to compare: an integral number, or its text with a zero fraction ("1.0"),
    reads as the integer's text ("1"); anything else as drift reads a category (`category_label`)."""
    from registry.reference import category_label

    if isinstance(value, str) and _INTEGRAL_TEXT.fullmatch(value.strip()):
        return str(int(float(value)))
    return category_label(value)


@dataclass
class Measured:
    """One pass: realised figures per deployment, the minute rollups to (re)write, store counters."""

    realised: dict[str, dict[str, Any]]
    rollups: list[dict[str, Any]]
    counters: dict[str, int]
    size: dict[str, int]


def measure(
    path: Path,
    deployments: dict[str, tuple[str, int]],
    output_of: Callable[[str, int], dict[str, Any] | None],
    window: float,
    labelled_since: float,
    now: float,
) -> Measured:
    """Realised performance of each deployment (`{name: (model, serving version)}`) over the
    predictions of the last `window` seconds: the serving version's figures, with every version's
    under `versions`; and the minute rollups whose figures changed since `labelled_since` (new labels
    or new predictions). `output_of(model, version)` is that version's output description."""
    realised_now: dict[str, dict[str, Any]] = {}
    rollups: list[dict[str, Any]] = []
    with OutcomeStore(path) as store:
        for name, (model, serving) in deployments.items():
            versions = sorted(set(store.versions(name, now - window)) | {serving})
            outputs = {v: output_of(model, v) for v in versions}
            figures = {
                v: realised(store, name, v, output, now - window)
                for v, output in outputs.items()
                if output is not None
            }
            current = figures.get(serving)
            realised_now[name] = {
                **(current or {"version": serving, "predicted": 0, "labelled": 0, "coverage": None}),
                "window": window,
                "versions": {str(v): f for v, f in figures.items() if f is not None},
            }
        minutes = set(store.labelled_minutes(labelled_since)) | set(store.recent_minutes(labelled_since - 60))
        for name, version, start in sorted(minutes):
            if name not in deployments:
                continue
            model = deployments[name][0]
            output = output_of(model, version)
            minute = None if output is None else realised(store, name, version, output, start, start + 60)
            if minute is not None:
                rollups.append(_rollup_row(name, model, version, start, minute))
        return Measured(realised_now, rollups, store.counters(), store.size())


def _rollup_row(name: str, model: str, version: int, start: float, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "deployment": name,
        "model": model,
        "version": version,
        "at": datetime.fromtimestamp(start, UTC),
        "predicted": figures["predicted"],
        "labelled": figures["labelled"],
        "label_delay": figures["delay"],
        **{key: figures.get(key) for key in ("accuracy", "f1", "log_loss", "mae", "rmse")},
    }


def write_performance_rollups(db: Database, rows: list[dict[str, Any]]) -> None:
    """Replace the minute rollups of `rows` (their figures change as labels arrive)."""
    if not rows:
        return
    with db.write() as session:
        conn = session.connection()
        for row in rows:
            conn.execute(
                delete(_TABLE).where(
                    _TABLE.c.deployment == row["deployment"],
                    _TABLE.c.version == row["version"],
                    _TABLE.c.at == row["at"],
                )
            )
        conn.execute(insert(_TABLE), rows)


def prune_performance_rollups(db: Database, keep: timedelta) -> None:
    with db.write() as session:
        session.connection().execute(delete(_TABLE).where(_TABLE.c.at < datetime.now(UTC) - keep))


def read_performance_rollups(
    db: Database, deployment: str, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Stored minute rollups of realised performance of a deployment, oldest first."""
    query = select(_TABLE).where(_TABLE.c.deployment == deployment)
    if since is not None:
        query = query.where(_TABLE.c.at >= since)
    with db.connect() as conn:
        return [dict(row) for row in conn.execute(query.order_by(_TABLE.c.at, _TABLE.c.version)).mappings()]


def live_by_version(
    home: Path, versions: dict[int, dict[str, Any]], model: str, window: float, now: float
) -> dict[int, dict[str, Any] | None]:
    """Realised performance of each version of `model` (`{version: output description}`) over the
    predictions of the last `window` seconds, across its deployments; {} when nothing was stored."""
    from registry.outcomes import store_path

    path = store_path(home)
    if not path.exists():
        return {}
    with OutcomeStore(path) as store:
        return {
            v: realised(store, model, v, output, now - window, by="model") for v, output in versions.items()
        }
