"""Multivariate drift (PCA reconstruction error): calibrated on undrifted windows, sees a correlation
that breaks while every marginal stays the same (which per-feature KS tests cannot), on synthetic and
real data; stored in the profile's npz and absent from profiles saved before it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn.datasets import load_breast_cancer

from registry.monitoring import drift
from registry.monitoring.drift import Profile, drift_report
from registry.monitoring.multivariate import ERROR_RATIO_FLOOR, MultivariateProfile, multivariate_drift
from registry.reference import ReferenceSample

FEATURES = 20


def mixed(rng: np.random.Generator, rows: int, rho: float = 0.8) -> dict[str, np.ndarray]:
    """Twenty features of many shapes; x0 and x1 standard normals correlated `rho`, the rest
    independent: normals, log-normals, counts, a binary flag, a 5-level categorical, 5% missing."""
    z = rng.normal(size=(rows, 2))
    columns = {"x0": z[:, 0], "x1": rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]}
    for i in range(2, FEATURES - 1):
        shape = i % 4
        columns[f"x{i}"] = (
            rng.normal(size=rows)
            if shape == 0
            else rng.lognormal(size=rows)
            if shape == 1
            else rng.poisson(3, rows).astype(float)
            if shape == 2
            else rng.binomial(1, 0.2, rows).astype(float)
        )
    columns["x5"][rng.random(rows) < 0.05] = np.nan
    colours = ["red", "green", "blue", "grey", "pink"]
    columns["colour"] = rng.choice(colours, rows, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    return columns


def kinds(columns: dict[str, np.ndarray]) -> dict[str, bool]:
    return {name: values.dtype.kind == "f" for name, values in columns.items()}


@pytest.fixture(scope="module")
def reference() -> MultivariateProfile:
    columns = mixed(np.random.default_rng(0), 10_000)
    profile = MultivariateProfile.fit(columns, {}, kinds(columns))
    assert profile is not None
    return profile


@pytest.mark.parametrize(("rows", "windows"), [(100, 300), (1000, 200), (10_000, 30)])
def test_windows_from_the_reference_distribution_are_rarely_flagged(
    reference: MultivariateProfile, rows: int, windows: int
) -> None:
    rng = np.random.default_rng(rows)
    results = [multivariate_drift(reference, mixed(rng, rows), {}) for _ in range(windows)]
    assert all(r.status in (drift.OK, drift.WARN, drift.DRIFT) and r.rows == rows for r in results)
    flagged = sum(r.status != drift.OK for r in results)
    assert flagged <= 0.01 * windows
    assert np.median([r.error_ratio for r in results]) == pytest.approx(1.0, abs=0.05)


def test_a_broken_correlation_with_unchanged_marginals_is_drift_that_ks_does_not_see(
    reference: MultivariateProfile,
) -> None:
    rng = np.random.default_rng(1)
    baseline = mixed(np.random.default_rng(0), 10_000)
    detected, ks_seen = 0, 0
    trials = 20
    for _ in range(trials):
        window = mixed(rng, 1000, rho=0.0)  # x0 and x1: still standard normals, now independent
        result = multivariate_drift(reference, window, {})
        detected += result.status == drift.DRIFT and result.error_ratio >= ERROR_RATIO_FLOOR
        numeric = [name for name, values in window.items() if values.dtype.kind == "f"]
        smallest = min(
            ks_2samp(baseline[n][~np.isnan(baseline[n])], window[n][~np.isnan(window[n])]).pvalue
            for n in numeric
        )
        ks_seen += smallest * len(numeric) < 0.01  # Bonferroni over the features
    assert detected >= 0.9 * trials
    assert ks_seen <= 0.1 * trials


def test_a_categorical_that_stops_following_a_numeric_feature_is_seen() -> None:
    rng = np.random.default_rng(2)

    def sample(rows: int, linked: bool) -> dict[str, np.ndarray]:
        x = rng.normal(size=rows)
        y = rng.normal(size=rows)
        driver = x if linked else rng.normal(size=rows)  # same marginal shares either way
        return {"x": x, "y": y, "segment": np.where(driver > 0, "high", "low")}

    columns = sample(4000, linked=True)
    profile = MultivariateProfile.fit(columns, {}, kinds(columns))
    assert profile is not None and ["segment", "high"] in profile.inputs
    assert multivariate_drift(profile, sample(1000, linked=True), {}).status == drift.OK
    assert multivariate_drift(profile, sample(1000, linked=False), {}).status == drift.DRIFT


def _split(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    data = load_breast_cancer()
    order = np.random.default_rng(seed).permutation(len(data.data))
    half = len(order) // 2

    def columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: data.data[rows, i] for i, name in enumerate(data.feature_names)}

    return columns(order[:half]), columns(order[half:])


def test_real_data_held_out_half_is_not_flagged_and_permuted_correlated_columns_are() -> None:
    """Breast cancer (30 heavy-tailed, strongly correlated features): the other half of the data is not
    drift; the same half with mean radius and mean perimeter (correlation 0.998) each shuffled is."""
    trials, flagged, detected = 20, 0, 0
    for seed in range(trials):
        reference, held_out = _split(seed)
        profile = MultivariateProfile.fit(reference, {}, dict.fromkeys(reference, True))
        assert profile is not None and 1 <= len(profile.components) < len(profile.inputs)
        flagged += multivariate_drift(profile, held_out, {}).status != drift.OK
        rng = np.random.default_rng(seed)
        shuffled = {**held_out}
        for name in ("mean radius", "mean perimeter"):
            shuffled[name] = rng.permutation(held_out[name])
        detected += multivariate_drift(profile, shuffled, {}).status == drift.DRIFT
    assert flagged <= 1
    assert detected >= 0.9 * trials


def test_missing_values_take_the_reference_median_and_small_windows_get_no_verdict(
    reference: MultivariateProfile,
) -> None:
    window = mixed(np.random.default_rng(3), 500)
    holes = {name: np.random.default_rng(4).random(500) < 0.02 for name in window}
    assert multivariate_drift(reference, window, holes).status == drift.OK
    small = multivariate_drift(reference, mixed(np.random.default_rng(5), 50), {})
    assert small.status == drift.NOT_ENOUGH and small.p_value is None and small.error_ratio is not None
    inputs_missing = multivariate_drift(reference, {"x0": np.zeros(500)}, {})
    assert inputs_missing.status == drift.NOT_ENOUGH


def test_too_few_rows_or_inputs_give_no_multivariate_profile() -> None:
    rng = np.random.default_rng(6)
    assert MultivariateProfile.fit({"a": rng.normal(size=40), "b": rng.normal(size=40)}, {}, {}) is None
    one = {"a": rng.normal(size=500), "flat": np.ones(500)}  # a constant column is no input
    assert MultivariateProfile.fit(one, {}, {}) is None
    odd = {"a": rng.normal(size=500), "b": rng.normal(size=500)}
    odd["a"][:5] = [np.inf, -np.inf, np.nan, np.inf, 1e6]  # infinities are filled like missing values
    profile = MultivariateProfile.fit(odd, {}, {})
    assert profile is not None and np.isfinite(profile.null_errors).all()
    assert multivariate_drift(profile, odd, {}).status == drift.OK


def _two_categoricals(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {"code": rng.choice(["1", "2", "3"], rows), "flag": rng.choice(["True", "False"], rows)}


def _two_categoricals_and_a_normal(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return _two_categoricals(rng, rows) | {"x": rng.normal(size=rows)}


def _a_b_and_their_sum(rng: np.random.Generator, rows: int, rho: float = 0.0) -> dict[str, np.ndarray]:
    a = rng.normal(size=rows)
    b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=rows)
    return {"a": a, "b": b, "total": a + b}


@pytest.mark.parametrize("sample", [_two_categoricals, _two_categoricals_and_a_normal, _a_b_and_their_sum])
def test_exactly_dependent_inputs_leave_a_real_residual_and_no_round_off_alarms(sample) -> None:
    """One-hot levels sum to 1 and `total = a + b`: components are kept only within the numerical rank,
    so the errors compared are not float round-off (which flagged a third to a half of the windows)."""
    flagged = windows = 0
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        columns = sample(rng, 3000)
        profile = MultivariateProfile.fit(columns, {}, kinds(columns))
        assert profile is not None and profile.null_errors.mean() > 1e-6
        for _ in range(10):
            flagged += multivariate_drift(profile, sample(rng, 1000), {}).status != drift.OK
            windows += 1
    assert flagged <= 0.01 * windows


def test_a_broken_correlation_is_still_seen_beside_a_derived_sum() -> None:
    rng = np.random.default_rng(7)
    columns = _a_b_and_their_sum(rng, 3000, rho=0.8)
    profile = MultivariateProfile.fit(columns, {}, kinds(columns))
    assert profile is not None
    assert multivariate_drift(profile, _a_b_and_their_sum(rng, 1000, rho=0.8), {}).status == drift.OK
    assert multivariate_drift(profile, _a_b_and_their_sum(rng, 1000, rho=0.0), {}).status == drift.DRIFT


def test_a_single_categorical_spans_too_few_dimensions_for_a_multivariate_profile() -> None:
    rng = np.random.default_rng(8)
    columns = {"flag": rng.choice(["True", "False"], 1000)}  # two indicators, rank 1
    assert MultivariateProfile.fit(columns, {}, kinds(columns)) is None


def _reference_sample(columns: dict[str, np.ndarray]) -> ReferenceSample:
    rows = len(next(iter(columns.values())))
    missing = {name: np.zeros(rows, bool) for name in columns}
    return ReferenceSample(columns, missing, np.zeros(rows))


def test_the_profile_npz_keeps_the_pca_and_old_profiles_have_no_multivariate_signal() -> None:
    columns = mixed(np.random.default_rng(7), 3000)
    kind = {True: "numeric", False: "categorical"}
    signature = {"columns": [{"name": n, "kind": kind[is_number]} for n, is_number in kinds(columns).items()]}
    profile = Profile.fit(_reference_sample(columns), signature, {})
    assert profile.multivariate is not None
    restored = Profile.from_bytes(profile.to_bytes())
    assert restored.multivariate is not None
    assert np.array_equal(restored.multivariate.components, profile.multivariate.components)
    broken = mixed(np.random.default_rng(8), 1000, rho=0.0)
    missing = {name: np.zeros(1000, bool) for name in broken}
    report = drift_report(restored, broken, missing, None)
    assert report.multivariate is not None and report.multivariate.status == drift.DRIFT
    shown = report.as_dict()["multivariate"]
    assert shown["method"] == "pca-reconstruction" and shown["p_value"] < 0.001 and shown["error_ratio"] > 1.1
    profile.multivariate = None  # what a profile saved before multivariate drift holds
    old = Profile.from_bytes(profile.to_bytes())
    assert old.multivariate is None
    assert drift_report(old, broken, missing, None).multivariate is None


@pytest.mark.parametrize("rows", [100, 1000, 10_000])
def test_the_rank_test_is_scipys_one_sided_mann_whitney(rows: int) -> None:
    from scipy.stats import mannwhitneyu

    from registry.monitoring.multivariate import _rank_test_greater

    rng = np.random.default_rng(rows)
    reference = np.sort(rng.chisquare(3, 10_000))
    for scale in (1.0, 1.05, 1.2):
        window = rng.chisquare(3, rows) * scale
        expected = mannwhitneyu(window, reference, alternative="greater", method="asymptotic").pvalue
        assert _rank_test_greater(window, reference) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    # ties: without the tie correction a p-value that could flag (below 0.5) is never smaller than scipy's
    tied = np.round(rng.chisquare(3, rows) * 1.05)
    expected = mannwhitneyu(tied, np.round(reference), alternative="greater", method="asymptotic").pvalue
    assert expected < 0.5 and _rank_test_greater(tied, np.round(reference)) >= expected
