"""Drift benchmark: false alarms, detection and speed of modeldeck's drift, beside Evidently's.

    python benchmarks/drift.py           # 200 trials per cell
    python benchmarks/drift.py --quick   # 40 trials per cell, fewer timing repetitions

20 features of many shapes (`FEATURES`: normal, log-normal, Cauchy, Pareto, uniform, 0/1, counts,
rounded, constant, zero-inflated, 40%-missing numeric; 2- to 300-level and missing-heavy categoricals)
and a 10,000-row reference drawn once, its profile fitted once (as at registration). Printed:

1. false alarms: the share of windows drawn like the reference whose verdict is `warn` or `drift`,
   for windows of 100, 300, 1,000, 3,000 and 10,000 rows (goal: at most 1% everywhere);
2. detection: the share of drifted windows whose verdict is `drift` (goal: at least 90%), for the
   issue's cases (mean shifts on half the features, a 1.5x variance, a new category, missing values,
   a zero-inflated feature losing zeros);
3. the CPU time of one 10,000-row window against a naive scipy computation of the same tests
   (`ks_2samp`, `wasserstein_distance`, `chi2_contingency`, `fisher_exact` per feature; goal < 30 ms),
   and of the supervisor's real path, `DriftWindow.report` on sampled rows (typing the new rows'
   columns as well as `drift_report`).

Evidently's DataDriftPreset runs on the same windows when `evidently` imports (not a dependency; 0.7
needs pandas < 3: a venv with `pip install -e . evidently 'pandas<3'` runs it); its columns count
a window as an alarm / detection when it reports dataset drift (its default: half the columns drifted)
and, in brackets, when any column drifted. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import unshadow

REFERENCE_ROWS = 10_000
SIZES = (100, 300, 1_000, 3_000, 10_000)
Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _zero_inflated(zeros: float) -> Sampler:
    return lambda rng, n: np.where(rng.random(n) < zeros, 0.0, rng.exponential(1.0, n))


def _with_missing(share: float, sampler: Sampler) -> Sampler:
    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        values = sampler(rng, n).astype(float)
        values[rng.random(n) < share] = np.nan
        return values

    return sample


def _levels(count: int, zipf: bool = False) -> Sampler:
    labels = np.array([f"l{i}" for i in range(count)])
    weights = 1 / np.arange(1, count + 1) if zipf else np.ones(count)
    weights = weights / weights.sum()
    return lambda rng, n: rng.choice(labels, n, p=weights)


def _categorical_missing(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.choice(np.array(["a", "b", "c", "d"]), n, p=[0.4, 0.3, 0.2, 0.1])
    return np.where(rng.random(n) < 0.3, "", values)  # "" marks a missing value


#: name -> (numeric?, sampler, the feature's scale for mean shifts: its std or scale parameter)
FEATURES: dict[str, tuple[bool, Sampler, float]] = {
    "normal": (True, lambda rng, n: rng.normal(0, 1, n), 1.0),
    "normal_wide": (True, lambda rng, n: rng.normal(50, 10, n), 10.0),
    "lognormal": (True, lambda rng, n: rng.lognormal(0, 0.5, n), 0.6),
    "uniform": (True, lambda rng, n: rng.uniform(0, 1, n), 0.289),
    "rounded": (True, lambda rng, n: np.round(rng.normal(20, 2, n)), 2.0),
    "counts": (True, lambda rng, n: rng.poisson(3, n).astype(float), 1.73),
    "cauchy": (True, lambda rng, n: rng.standard_cauchy(n), 1.0),
    "pareto": (True, lambda rng, n: rng.pareto(1.5, n), 1.0),
    "missing_heavy": (True, _with_missing(0.4, lambda rng, n: rng.normal(0, 1, n)), 1.0),
    "tied_01": (True, lambda rng, n: (rng.random(n) < 0.3).astype(float), 0.46),
    "zero_inflated": (True, _zero_inflated(0.85), 0.38),
    "constant": (True, lambda rng, n: np.full(n, 7.0), 0.0),
    "normal_2": (True, lambda rng, n: rng.normal(0, 1, n), 1.0),
    "boolean": (False, _levels(2), 0.0),
    "level_5": (False, _levels(5), 0.0),
    "zipf_10": (False, _levels(10, zipf=True), 0.0),
    "level_30": (False, _levels(30), 0.0),
    "zipf_30": (False, _levels(30, zipf=True), 0.0),
    "level_300": (False, _levels(300), 0.0),
    "categorical_missing": (False, _categorical_missing, 0.0),
}
SHIFTED = [n for n, (numeric, _, scale) in FEATURES.items() if numeric and scale > 0][:10]


def make(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {name: sampler(rng, rows) for name, (_, sampler, _) in FEATURES.items()}


def mean_shift(std: float) -> Callable[[dict[str, np.ndarray], np.random.Generator], None]:
    def apply(window: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        for name in SHIFTED:  # half the features
            window[name] = window[name] + std * FEATURES[name][2]

    return apply


def more_variance(window: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    window["normal"] = window["normal"] * np.sqrt(1.5)


def new_category(window: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    values = window["level_5"].astype("<U8")
    values[rng.random(len(values)) < 0.05] = "new"
    window["level_5"] = values


def missing_values(window: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    values = window["normal_2"].copy()
    values[rng.random(len(values)) < 0.2] = np.nan
    window["normal_2"] = values


def fewer_zeros(window: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    window["zero_inflated"] = _zero_inflated(0.5)(rng, len(window["zero_inflated"]))


CASES = [
    ("0.25 std mean shift, half the features", 10_000, mean_shift(0.25)),
    ("0.5 std mean shift, half the features", 1_000, mean_shift(0.5)),
    ("1.5x variance, one feature", 10_000, more_variance),
    ("new category at 5%, one feature", 1_000, new_category),
    ("missing 0% -> 20%, one feature", 1_000, missing_values),
    ("zeros 85% -> 50%, one feature", 1_000, fewer_zeros),
]


def missing_of(window: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Missing masks: NaN (numeric) or "" (categorical)."""
    return {
        name: np.isnan(values) if values.dtype.kind == "f" else values == ""
        for name, values in window.items()
    }


def rows_of(window: dict[str, np.ndarray]) -> list[list[Any]]:
    """The window as a model server's sampled rows: JSON values, None where missing."""
    columns = [
        [None if absent else value for value, absent in zip(values.tolist(), missing, strict=True)]
        for values, missing in zip(window.values(), missing_of(window).values(), strict=True)
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def supervisor_path(profile: Any, window: dict[str, np.ndarray], repeats: int) -> tuple[float, float]:
    """Median CPU seconds of `DriftWindow.report` as the supervisor runs it every 10 s: the window
    holds 10,000 sampled rows, and a pull of 100 new rows arrived since the last report (timed with
    its `add`); and the first report after a restart, when every row is typed afresh."""
    from registry.monitoring.window import DriftWindow

    rows, names = rows_of(window), list(window)
    numeric = [window[n].dtype.kind == "f" for n in names]
    live, clock = DriftWindow(), iter(range(10**6))

    def pull() -> None:
        start = next(clock) * 100 % len(rows)
        live.add(rows[start : start + 100], [0.0] * 100, now=time.time())

    for _ in range(len(rows) // 100):
        pull()
    cold = timed(lambda: live.report(profile, names, numeric), 1)
    warm = timed(lambda: (pull(), live.report(profile, names, numeric)), repeats)
    return warm, cold


def naive(reference: dict[str, np.ndarray], window: dict[str, np.ndarray]) -> None:
    """The same tests the plain way, per feature, from the raw samples every time."""
    from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, wasserstein_distance

    for name, ref in reference.items():
        cur = window[name]
        ref_missing, cur_missing = missing_of({"r": ref})["r"], missing_of({"c": cur})["c"]
        if ref_missing.any() or cur_missing.any():
            fisher_exact(
                [
                    [ref_missing.sum(), len(ref) - ref_missing.sum()],
                    [cur_missing.sum(), len(cur) - cur_missing.sum()],
                ]
            )
        ref, cur = ref[~ref_missing], cur[~cur_missing]
        if FEATURES[name][0]:
            ks_2samp(ref, cur)
            wasserstein_distance(ref, cur)
        else:
            labels = np.unique(np.concatenate([ref, cur]))
            table = np.array([[np.sum(ref == v) for v in labels], [np.sum(cur == v) for v in labels]])
            chi2_contingency(table)


def evidently_runner() -> Any:
    try:
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:  # not installed, or does not import with this pandas
        print(f"Evidently skipped: {type(exc).__name__}: {exc}")
        return None

    def frame(window: dict[str, np.ndarray]) -> Any:
        data = pd.DataFrame(window)
        for name, (numeric, _, _) in FEATURES.items():
            if not numeric:
                data[name] = data[name].replace("", None)
        return data

    def run(reference: Any, window: dict[str, np.ndarray]) -> tuple[bool, bool]:
        """(dataset drift, any column drifted) by Evidently's DataDriftPreset."""
        snapshot = Report([DataDriftPreset()]).run(frame(window), reference)
        counted = next(
            m for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount")
        )
        return counted["value"]["share"] >= 0.5, counted["value"]["count"] > 0

    return run, frame


def timed(call: Callable[[], Any], repeats: int) -> float:
    """Median CPU seconds of `call` (CPU, not wall time: other work on the machine does not count)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 trials per cell instead of 200")
    parser.add_argument("--trials", type=int, help="trials per cell (overrides --quick)")
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently even if it imports")
    options = parser.parse_args(argv)
    unshadow()
    from types import SimpleNamespace

    from registry.monitoring.drift import DRIFT, OK, Profile, drift_report

    trials = options.trials or (40 if options.quick else 200)
    rng = np.random.default_rng(0)
    reference = make(rng, REFERENCE_ROWS)
    signature = {
        "columns": [
            {"name": n, "kind": "numeric" if numeric else "categorical"}
            for n, (numeric, _, _) in FEATURES.items()
        ]
    }
    sample = SimpleNamespace(columns=reference, missing=missing_of(reference), predictions=np.zeros(0))
    start = time.perf_counter()
    profile = Profile.fit(sample, signature, {})
    print(f"reference profile of {REFERENCE_ROWS:,} rows x {len(FEATURES)} features (once, at registration):")
    print(f"  {(time.perf_counter() - start) * 1e3:.0f} ms, {len(profile.to_bytes()) / 1e3:.0f} kB stored")
    evidently = None if options.no_evidently else evidently_runner()
    ev_reference = evidently[1](reference) if evidently else None
    ev_trials = max(1, trials // 10)

    def ours(window: dict[str, np.ndarray]) -> str:
        return drift_report(profile, window, missing_of(window), None).status

    def theirs(window: dict[str, np.ndarray]) -> tuple[bool, bool]:
        return evidently[0](ev_reference, window) if evidently else (False, False)

    def judged(windows: list[dict[str, np.ndarray]]) -> tuple[list[str], str]:
        """Our verdict of every window, and Evidently's on the first `ev_trials` of the same windows."""
        if not evidently:
            return [ours(w) for w in windows], "skipped"
        seen = [theirs(w) for w in windows[:ev_trials]]
        return [
            ours(w) for w in windows
        ], f"{np.mean([s[0] for s in seen]):.0%} ({np.mean([s[1] for s in seen]):.0%})"

    evidently_note = f", Evidently on the first {ev_trials}" if evidently else ""
    print(f"\n1. false alarms: windows drawn like the reference, {trials} trials per size{evidently_note}")
    print(f"{'window':>8} | {'warn or drift':>13} | {'drift':>6} | evidently dataset (any column)")
    for rows in SIZES:
        verdicts, other = judged([make(np.random.default_rng([1, rows, t]), rows) for t in range(trials)])
        alarms = np.mean([v != OK for v in verdicts])
        print(f"{rows:>8,} | {alarms:>13.1%} | {np.mean([v == DRIFT for v in verdicts]):>6.1%} | {other}")

    def drifted(rows: int, change: Any, trial: int) -> dict[str, np.ndarray]:
        window_rng = np.random.default_rng([2, rows, trial])
        window = make(window_rng, rows)
        change(window, window_rng)
        return window

    print(f"\n2. detection: share of drifted windows reported `drift`, {trials} trials per case")
    print(f"{'case':<40} | {'window':>6} | {'drift':>6} | evidently dataset (any column)")
    for label, rows, change in CASES:
        verdicts, other = judged([drifted(rows, change, t) for t in range(trials)])
        print(f"{label:<40} | {rows:>6,} | {np.mean([v == DRIFT for v in verdicts]):>6.1%} | {other}")

    repeats = 5 if options.quick else 15
    window = make(np.random.default_rng(3), 10_000)
    ours(window)  # warm-up (scipy imports)
    mine = timed(lambda: ours(window), repeats)
    plain = timed(lambda: naive(reference, window), max(1, repeats // 5))
    print(f"\n3. one 10,000-row x {len(FEATURES)}-feature window (median CPU time of {repeats}):")
    print(f"  modeldeck {mine * 1e3:.1f} ms | naive scipy {plain * 1e3:.0f} ms ({plain / mine:.0f}x)", end="")
    if evidently:
        seconds = timed(lambda: theirs(window), 1)
        print(f" | Evidently {seconds * 1e3:.0f} ms ({seconds / mine:.0f}x)", end="")
    print()
    warm, cold = supervisor_path(profile, window, repeats)
    print(
        f"  supervisor path (DriftWindow.report: 100 new sampled rows + drift_report) {warm * 1e3:.1f} ms"
        f" | first report after a restart {cold * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
