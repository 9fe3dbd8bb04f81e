"""Drift benchmark: modeldeck's drift against a naive scipy computation and Evidently, same run.

    python benchmarks/drift.py           # windows of 1,000, 10,000 and 100,000 rows
    python benchmarks/drift.py --quick   # fewer repetitions

20 numeric and 5 categorical features; a 10,000-row reference; for each window size, a window drawn
like the reference (no drift) and one with 14 of the 25 features shifted (drift). Timed, median of
several repetitions, the reference profile fitted once beforehand (as at registration):

  (a) modeldeck: `drift_report` on the window (bins, quantiles, PSI, Wasserstein, JS, p-values);
  (b) the naive baseline: per feature, quantile bins fitted on the reference, `np.histogram` PSI and
      `scipy.stats.ks_2samp` (numeric) / category counts PSI (categorical), every time;
  (c) Evidently's DataDriftPreset, when `evidently` imports (not a dependency; 0.7 needs pandas < 3:
      a venv with `pip install -e . evidently 'pandas<3'` runs it), up to 10,000 rows.

Printed: time per window, the ratios baseline / modeldeck (and Evidently / modeldeck), and whether the
verdicts agree on the no-drift and the drifted window. Goal: the 10,000-row window under 30 ms and at
least 100x faster than Evidently.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from common import unshadow

NUMERIC, CATEGORICAL = 20, 5


def make(rows: int, shift: bool, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(NUMERIC):
        moved = shift and i < NUMERIC * 0.6
        columns[f"n{i}"] = rng.normal(1.0 if moved else 0.0, 1.0, rows)
    for i in range(CATEGORICAL):
        weights = [0.1, 0.2, 0.3, 0.4] if shift and i < 2 else [0.4, 0.3, 0.2, 0.1]
        columns[f"c{i}"] = rng.choice(np.array(["a", "b", "c", "d"]), rows, p=weights)
    return columns, {name: np.zeros(rows, bool) for name in columns}


def naive(reference: dict[str, Any], current: dict[str, Any]) -> int:
    """Drifted features the plain way: PSI on reference quantile bins (+ KS), recomputed per call."""
    from scipy.stats import ks_2samp

    drifted = 0
    for name, ref in reference.items():
        cur = current[name]
        if ref.dtype.kind == "f":
            edges = np.quantile(ref, np.linspace(0, 1, 11))
            edges[0], edges[-1] = -np.inf, np.inf
            r = np.histogram(ref, edges)[0] / len(ref)
            c = np.histogram(cur, edges)[0] / len(cur)
            ks_2samp(ref, cur)
        else:
            labels = np.unique(ref)
            r = np.array([(ref == v).mean() for v in labels])
            c = np.array([(cur == v).mean() for v in labels])
        r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
        drifted += float(np.sum((c - r) * np.log(c / r))) >= 0.25
    return drifted


def evidently_runner() -> Any:
    try:
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:  # not installed, or does not import with this pandas
        print(f"Evidently skipped: {type(exc).__name__}: {exc}")
        return None

    def run(reference: dict[str, Any], current: dict[str, Any]) -> int:
        """Evidently's count of drifted columns (its DriftedColumnsCount metric)."""
        snapshot = Report([DataDriftPreset()]).run(pd.DataFrame(current), pd.DataFrame(reference))
        counted = next(
            m for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")
        )
        return int(counted["value"]["count"])

    return run


def timed(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    unshadow()
    from types import SimpleNamespace

    from registry.monitoring.drift import Profile, drift_report

    reference, ref_missing = make(10_000, False, 0)
    signature = {
        "columns": [{"name": n, "kind": "numeric" if n.startswith("n") else "categorical"} for n in reference]
    }
    sample = SimpleNamespace(columns=reference, missing=ref_missing, predictions=np.zeros(10_000))
    start = time.perf_counter()
    profile = Profile.fit(sample, signature, {})
    print(f"reference profile (once, at registration): {(time.perf_counter() - start) * 1e3:.0f} ms")
    evidently = evidently_runner()
    repeats = 3 if options.quick else 7
    header = f"{'window':>8} | {'modeldeck':>10} | {'naive':>9} | {'ratio':>6} | {'evidently':>9}"
    print(f"{header} | verdicts (calm, drifted)")
    for rows in (1_000, 10_000, 100_000):
        calm, calm_missing = make(rows, False, 1)
        moved, moved_missing = make(rows, True, 2)
        ours = timed(lambda c=calm, m=calm_missing: drift_report(profile, c, m, None), repeats)
        plain = timed(lambda c=calm: naive(reference, c), max(1, repeats // 2))
        verdicts = (
            drift_report(profile, calm, calm_missing, None).status,
            drift_report(profile, moved, moved_missing, None).status,
        )
        naive_verdicts = tuple(naive(reference, w) for w in (calm, moved))
        other = "-"
        if evidently is not None and rows <= 10_000:
            evidently(reference, calm)  # warm-up
            seconds = timed(lambda c=calm: evidently(reference, c), max(1, repeats // 3))
            other = f"{seconds * 1e3:.0f} ms ({seconds / ours:.0f}x)"
            naive_verdicts = (
                *naive_verdicts,
                f"evidently {evidently(reference, calm)}, {evidently(reference, moved)}",
            )
        figures = f"{ours * 1e3:>7.1f} ms | {plain * 1e3:>6.1f} ms | {plain / ours:>5.1f}x | {other:>9}"
        print(
            f"{rows:>8,} | {figures} | modeldeck {verdicts}, drifted features (naive, ...): {naive_verdicts}"
        )


if __name__ == "__main__":
    main()
