"""Drift statistics checked against scipy.stats (ties, constants, heavy tails, 30- and 300-level
categoricals, missing values), the verdicts' false-alarm rate and power on seeded windows, and what
the demo and a re-sent batch look like to drift."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, wasserstein_distance

from registry.monitoring import drift
from registry.monitoring.drift import FeatureProfile, Profile, drift_report, feature_drift

rng = np.random.default_rng(7)
REFERENCE = rng.normal(10, 2, 10_000)


@pytest.fixture(autouse=True)
def _same_draws_every_time() -> None:
    """Each test draws from a fresh generator: xdist spreads this file's tests over workers in an
    order that changes, and a shared one would give a test other data (a false alarm 1 run in 30)."""
    global rng
    rng = np.random.default_rng(7)


def fitted(values, kind: str = "numeric", missing=None) -> FeatureProfile:
    values = np.asarray(values)
    missing = np.zeros(len(values), bool) if missing is None else missing
    return FeatureProfile.fit("x", values, missing, kind)


def test_psi_by_hand() -> None:
    reference = [0.25, 0.25, 0.5]
    current = [0.5, 0.25, 0.25]
    by_hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert drift.psi(reference, current) == pytest.approx(by_hand)
    assert drift.psi(reference, reference) == 0.0
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))  # empty bins: large, finite


def test_decile_edges_are_distinct_so_tied_values_do_not_share_a_bin() -> None:
    zero_inflated = np.where(rng.random(10_000) < 0.85, 0.0, rng.exponential(1, 10_000))
    profile = fitted(zero_inflated)
    assert profile.edges == sorted(set(profile.edges)) and profile.edges[0] == 0.0
    assert len(profile.edges) == 2  # 0 (eight deciles) and the 90th percentile
    assert profile.shares == pytest.approx([0.0, 0.9, 0.1], abs=0.001)  # the zeros in one bin, [0, p90)
    same = feature_drift(profile, zero_inflated[:5000])
    assert same.psi < 0.01


def _shapes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    local = np.random.default_rng(11)
    normal = local.normal(0, 1, 10_000)
    return {
        "0/1 same": ((local.random(10_000) < 0.5) * 1.0, (local.random(1000) < 0.5) * 1.0),
        "0/1 moved": ((local.random(10_000) < 0.5) * 1.0, (local.random(1000) < 0.6) * 1.0),
        "counts": (local.poisson(2, 10_000) * 1.0, local.poisson(2.2, 500) * 1.0),
        "constant": (np.full(5000, 3.0), np.full(300, 3.0)),
        "constant moved": (np.full(5000, 3.0), np.full(300, 4.0)),
        "rounded": (np.round(normal, 1), np.round(local.normal(0, 1, 200), 1)),
        "cauchy": (local.standard_cauchy(10_000), local.standard_cauchy(1000) + 0.3),
        "pareto": (local.pareto(1.1, 10_000), local.pareto(1.1, 3000)),
        "one outlier": (normal, np.r_[local.normal(0, 1, 999), 1e6]),
        "small window": (normal, local.normal(0.5, 1, 100)),
    }


@pytest.mark.parametrize("case", list(_shapes()))
def test_ks_and_wasserstein_agree_with_scipy_on_ties_constants_and_heavy_tails(case: str) -> None:
    reference, current = _shapes()[case]
    result = feature_drift(fitted(reference), current)
    assert result.test == "ks"
    assert result.statistic == pytest.approx(ks_2samp(reference, current).statistic, rel=1e-12)  # ties
    asymptotic = ks_2samp(reference, current, method="asymp").pvalue
    assert result.p_value == pytest.approx(asymptotic, rel=1e-9, abs=1e-3)
    assert result.p_value == pytest.approx(ks_2samp(reference, current).pvalue, rel=0.05, abs=0.01)
    scale = fitted(reference).scale
    w1 = result.wasserstein * scale if scale > 0 else result.wasserstein
    assert w1 == pytest.approx(wasserstein_distance(reference, current), rel=1e-9, abs=1e-12)


def test_the_issues_tied_and_constant_cases_are_no_longer_significant() -> None:
    binary = feature_drift(fitted((rng.random(10_000) < 0.3) * 1.0), (rng.random(1000) < 0.3) * 1.0)
    assert binary.p_value > 0.01
    constant = feature_drift(fitted(np.full(1000, 5.0)), np.full(200, 5.0))
    assert constant.p_value == 1.0 and constant.wasserstein == 0.0 and constant.status == drift.NOT_ENOUGH
    moved = feature_drift(fitted(np.full(1000, 5.0)), np.full(200, 7.0))
    assert moved.wasserstein == pytest.approx(2.0)  # not normalised when the reference has no spread


def test_wasserstein_is_normalised_by_a_robust_scale_that_heavy_tails_do_not_inflate() -> None:
    cauchy = rng.standard_cauchy(10_000)
    profile = fitted(cauchy)
    q1, q3 = np.quantile(cauchy, [0.25, 0.75])
    assert profile.scale == pytest.approx((q3 - q1) / 1.349) and 1.2 < profile.scale < 1.8
    tied = fitted((rng.random(10_000) < 0.15) * 1.0)  # IQR 0: mean absolute deviation instead
    assert tied.scale == pytest.approx(0.15 * math.sqrt(math.pi / 2), rel=0.1)
    assert fitted(np.full(10, 1.0)).scale == 0.0


def _categories(levels: int, rows: int, seed: int, extra: float = 0.0) -> np.ndarray:
    local = np.random.default_rng(seed)
    values = local.choice(np.array([f"c{i:03d}" for i in range(levels)]), rows).astype("<U8")
    values[local.random(rows) < extra] = "new"
    return values


@pytest.mark.parametrize(
    ("levels", "rows", "extra"), [(30, 100, 0.0), (30, 1000, 0.0), (300, 1000, 0.05), (300, 10_000, 0.0)]
)
def test_chi_square_is_chi2_contingency_on_the_pooled_two_sample_table(levels, rows, extra) -> None:
    reference = _categories(levels, 10_000, 1)
    current = _categories(levels, rows, 2, extra)
    profile = fitted(reference, "categorical")
    assert len(profile.categories) == levels  # every category is kept (no cap)
    result = feature_drift(profile, current)
    labels = sorted(set(reference) | set(current))
    table = np.array([[np.sum(reference == v) for v in labels], [np.sum(current == v) for v in labels]])
    pooled = drift.pooled_table(table[0], table[1])
    expected = chi2_contingency(pooled).expected_freq
    assert (expected >= 1).all() and (expected < 5).sum(axis=1).max() <= 0.2 * pooled.shape[1]  # Cochran
    assert pooled.sum() == table.sum() and pooled.shape[1] <= table.shape[1]
    if (chi2_contingency(table).expected_freq >= 5).all():
        assert pooled.shape[1] == table.shape[1]  # nothing pooled when nothing needs it
    scipy_result = chi2_contingency(pooled)
    assert result.statistic == pytest.approx(scipy_result.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(scipy_result.pvalue, rel=1e-9, abs=1e-300)
    assert result.unseen_share == pytest.approx(np.mean(current == "new"))  # only truly new categories
    shares = (
        np.array([np.mean(reference == v) for v in labels]),
        np.array([np.mean(current == v) for v in labels]),
    )
    assert result.effect == pytest.approx(np.abs(shares[0] - shares[1]).sum() / 2)  # total variation


def test_a_two_by_two_table_gets_yates_correction_like_scipy() -> None:
    reference = np.array(["a"] * 700 + ["b"] * 300)
    current = np.array(["a"] * 130 + ["b"] * 70)
    result = feature_drift(fitted(reference, "categorical"), current)
    scipy_result = chi2_contingency([[700, 300], [130, 70]])
    assert result.statistic == pytest.approx(scipy_result.statistic)
    assert result.p_value == pytest.approx(scipy_result.pvalue)


def test_a_held_out_half_of_load_digits_does_not_drift() -> None:
    """The issue's real-data case: every pixel (counts 0..16, mostly tied) was "significant"."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    pixels = load_digits().data
    train, held_out = train_test_split(pixels, test_size=0.5, random_state=0)
    names = [f"p{i}" for i in range(pixels.shape[1])]
    reference = SimpleNamespace(
        columns={n: train[:, i] for i, n in enumerate(names)},
        missing={n: np.zeros(len(train), bool) for n in names},
        predictions=np.zeros(0),
    )
    profile = Profile.fit(reference, {"columns": [{"name": n, "kind": "numeric"} for n in names]}, {})
    window = {n: held_out[:, i] for i, n in enumerate(names)}
    report = drift_report(profile, window, {n: np.zeros(len(held_out), bool) for n in names}, None)
    assert report.status == drift.OK, [f.reason for f in report.features if f.status != drift.OK]
    assert min(f.p_value for f in report.features) > 1e-3  # not one pixel near "significant"


def test_jensen_shannon_and_unseen_categories() -> None:
    colours = np.array(["red"] * 500 + ["green"] * 300 + ["blue"] * 200)
    profile = FeatureProfile.fit("colour", colours, np.zeros(1000, bool), "categorical")
    assert profile.categories == ["red", "green", "blue"] and profile.shares[-1] == 0.0
    current = np.array(["red"] * 200 + ["green"] * 200 + ["blue"] * 400 + ["purple"] * 200)
    result = feature_drift(profile, current)
    expected = jensenshannon([0.5, 0.3, 0.2, 0.0], [0.2, 0.2, 0.4, 0.2], base=2)
    assert result.jensen_shannon == pytest.approx(expected)
    assert result.unseen_share == pytest.approx(0.2)
    drift.judge([result])
    assert result.status == drift.DRIFT and result.p_value < 1e-6 and result.reason.startswith("chi2 p=")
    same = feature_drift(profile, colours)
    drift.judge([same])
    assert same.jensen_shannon == pytest.approx(0.0, abs=1e-9) and same.status == drift.OK


@pytest.mark.parametrize(("reference", "window"), [(0.0, 0.2), (0.3, 0.5), (0.3, 0.3), (0.0, 0.002)])
def test_the_missing_share_is_tested_against_the_references_like_scipy(reference, window) -> None:
    rows = 10_000
    values = rng.normal(0, 1, rows)
    profile = fitted(values, missing=np.arange(rows) < reference * rows)
    current = rng.normal(0, 1, 1000)
    current[: round(window * 1000)] = np.nan
    result = feature_drift(profile, current)
    assert result.reference_missing_share == reference and result.missing_share == window
    table = [
        [round(reference * rows), rows - round(reference * rows)],
        [round(window * 1000), 1000 - round(window * 1000)],
    ]
    if (chi2_contingency(table).expected_freq < 5).any():
        assert result.missing_p_value == pytest.approx(fisher_exact(table).pvalue)
    else:
        assert result.missing_p_value == pytest.approx(chi2_contingency(table).pvalue)
    drift.judge([result])
    assert result.status == (drift.DRIFT if window - reference >= 0.2 else drift.OK)
    if result.status == drift.DRIFT:
        assert result.reason.startswith("missing p=")
    assert feature_drift(fitted(values), rng.normal(0, 1, 500)).missing_p_value is None  # none missing


def test_holm_adjusts_like_the_textbook() -> None:
    assert drift.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert drift.holm([0.6, 0.5]) == [1.0, 1.0] and drift.holm([]) == []


def _mixed(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Eight features of the shapes that broke the old verdicts."""
    local = np.random.default_rng(seed)
    heavy_missing = local.normal(0, 1, rows)
    heavy_missing[local.random(rows) < 0.4] = np.nan
    return {
        "normal": local.normal(0, 1, rows),
        "normal_2": local.normal(5, 2, rows),
        "tied": (local.random(rows) < 0.3) * 1.0,
        "counts": local.poisson(3, rows) * 1.0,
        "cauchy": local.standard_cauchy(rows),
        "missing_heavy": heavy_missing,
        "level_30": _categories(30, rows, seed + 1),
        "level_300": _categories(300, rows, seed + 2),
    }


def _profile() -> Profile:
    reference = _mixed(10_000, 0)
    signature = {
        "columns": [
            {"name": n, "kind": "categorical" if n.startswith("level") else "numeric"} for n in reference
        ]
    }
    missing = {
        n: np.isnan(v) if v.dtype.kind == "f" else np.zeros(len(v), bool) for n, v in reference.items()
    }
    return Profile.fit(
        SimpleNamespace(columns=reference, missing=missing, predictions=np.zeros(0)), signature, {}
    )


PROFILE = _profile()


def _verdict(window: dict[str, np.ndarray]) -> drift.DriftReport:
    missing = {n: np.isnan(v) if v.dtype.kind == "f" else np.zeros(len(v), bool) for n, v in window.items()}
    return drift_report(PROFILE, window, missing, None)


@pytest.mark.parametrize("rows", [100, 1000])
def test_windows_drawn_like_the_reference_rarely_warn(rows: int) -> None:
    """The issue's 200 of 200 false warnings: now at most 2% (the goal is 1%; the benchmark measures it)."""
    alarms = sum(_verdict(_mixed(rows, 1000 + t)).status != drift.OK for t in range(200))
    assert alarms <= 4


def _shifted(rows: int, seed: int, std: float) -> dict[str, np.ndarray]:
    window = _mixed(rows, seed)
    window["normal"] = window["normal"] + std
    window["normal_2"] = window["normal_2"] + 2 * std
    window["counts"] = window["counts"] + std * math.sqrt(3)
    window["cauchy"] = window["cauchy"] + std
    return window  # half the features


def _case(name: str, rows: int, seed: int) -> dict[str, np.ndarray]:
    window = _mixed(rows, seed)
    if name == "mean shift 0.25 std":
        return _shifted(rows, seed, 0.25)
    if name == "mean shift 0.5 std":
        return _shifted(rows, seed, 0.5)
    if name == "variance 1.5x":
        window["normal"] = window["normal"] * math.sqrt(1.5)
    if name == "new category at 5%":
        window["level_30"] = _categories(30, rows, seed + 1, extra=0.05)
    if name == "missing 0% -> 20%":
        window["normal"][np.random.default_rng(seed).random(rows) < 0.2] = np.nan
    return window


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("mean shift 0.25 std", 10_000),
        ("mean shift 0.5 std", 1000),
        ("variance 1.5x", 10_000),
        ("new category at 5%", 1000),
        ("missing 0% -> 20%", 1000),
    ],
)
def test_the_issues_drifts_are_detected(name: str, rows: int) -> None:
    reports = [_verdict(_case(name, rows, 5000 + t)) for t in range(20)]
    assert sum(r.status == drift.DRIFT for r in reports) >= 18
    drifted = next(f for f in reports[0].features if f.status == drift.DRIFT)
    assert drifted.p_adjusted is not None and drifted.reason  # each verdict says why


def test_a_large_window_does_not_page_on_a_wobble_below_the_effect_floor() -> None:
    window = _mixed(10_000, 77)
    window["normal"] = window["normal"] + 0.05  # significant at 10,000 rows, but 0.05 std
    normal = next(f for f in _verdict(window).features if f.name == "normal")
    assert normal.status in (drift.OK, drift.WARN) and normal.effect < drift.FLOORS["ks"]


def test_dataset_verdict_is_the_worst_feature_and_the_profile_round_trips() -> None:
    restored = Profile.from_bytes(PROFILE.to_bytes())
    assert [f.name for f in restored.features] == list(_mixed(1, 0))
    assert np.array_equal(restored.features[0].values, PROFILE.features[0].values)
    report = drift_report(restored, *_columns_and_missing(_case("variance 1.5x", 10_000, 3)), None)
    assert report.status == drift.DRIFT and report.drifted_share == pytest.approx(1 / 8)  # one feature
    few = _mixed(50, 4)
    assert drift_report(restored, *_columns_and_missing(few), None).status == drift.NOT_ENOUGH
    assert drift_report(None, *_columns_and_missing(few), None).status == drift.NO_REFERENCE


def _columns_and_missing(window):
    return window, {
        n: np.isnan(v) if v.dtype.kind == "f" else np.zeros(len(v), bool) for n, v in window.items()
    }


def test_one_batch_sent_again_and_again_does_not_read_as_drift() -> None:
    """A smoke test re-sending one representative batch: the sampler takes random rows of each
    request, so the window holds much of the batch; fixed positions held the same 8 rows only."""
    from registry.monitoring.sampling import InputSampler
    from registry.monitoring.window import DriftWindow

    batch = _mixed(2000, 9)
    names, numeric = list(batch), [not n.startswith("level") for n in batch]
    rows = [
        [None if isinstance(v, float) and math.isnan(v) else v.item() for v in row]
        for row in zip(*batch.values(), strict=True)
    ]
    # every request sampled, however fast they come: this is about which rows of a request are taken
    sampler, window = InputSampler(seed=3, rows_per_second=10**9), DriftWindow()
    for _ in range(100):
        sampler.add(rows, [0] * len(rows))
    _, sampled, predictions = sampler.since(0)
    assert len(sampled) == 800 and len({tuple(map(str, r)) for r in sampled}) > 600
    window.add(sampled, predictions)
    report = window.report(PROFILE, names, numeric)
    assert report.status != drift.DRIFT, [f.reason for f in report.features]
    same_rows = DriftWindow()  # what fixed positions sampled: rows 0, 250, ... of every request
    same_rows.add(rows[::250] * 100, [0] * 800)
    assert same_rows.report(PROFILE, names, numeric).status == drift.DRIFT


def test_the_demos_drift_shows_within_two_minutes_of_its_injection(tmp_path) -> None:
    """The demo sends 20 rows a second, drifting iris's inputs after a minute; drift is computed
    every 10 s on the window (a minute of calm rows, then the drifted ones)."""
    from console.demo import DEMO_MODELS, DRIFTING, open_demo_registry
    from console.demo_traffic import DemoTraffic
    from registry.monitoring.window import DriftWindow

    with open_demo_registry(tmp_path) as reg:
        DEMO_MODELS[DRIFTING](reg)  # as `build_demo` registers it
        ref = f"{DRIFTING}@champion"
        profile, model = reg.profile(ref), reg.load(ref)
        traffic = DemoTraffic(tmp_path, {DRIFTING: ("http://unused", ref)}, seed=1)
        sample = traffic._samples()[DRIFTING]
    names = sample["columns"]
    window, t = DriftWindow(), 0.0

    def send(seconds: int, drifted: bool) -> None:
        nonlocal t
        rows = [traffic._rows(sample, drifted)["data"][0] for _ in range(20 * seconds)]
        window.add(rows, model.predict(np.array(rows, dtype=float)).tolist(), now=t + seconds)
        t += seconds

    send(60, drifted=False)
    assert window.report(profile, names, [True] * len(names), now=t).status == drift.OK
    verdicts = []
    for _ in range(12):
        send(10, drifted=True)
        verdicts.append(window.report(profile, names, [True] * len(names), now=t).status)
    assert drift.DRIFT in verdicts[:6] and verdicts[-1] == drift.DRIFT, verdicts  # within a minute
    from console.status_view import drift_reason

    said = drift_reason(window.report(profile, names, [True] * len(names), now=t).as_dict())
    feature, reason = said.split(": ", 1)  # what `status` prints after its table
    assert feature in [*names, "prediction"] and " p=" in reason and "(adj " in reason, said


def test_empty_and_small_windows() -> None:
    profile = fitted(REFERENCE)
    empty = feature_drift(profile, np.array([]))
    assert empty.status == drift.NOT_ENOUGH and empty.psi is None
    tiny = feature_drift(profile, np.array([1.0, 2.0, 3.0]))
    drift.judge([tiny])
    assert tiny.status == drift.NOT_ENOUGH and tiny.psi is not None
    all_missing = feature_drift(profile, np.full(500, np.nan))
    assert all_missing.missing_share == 1.0 and all_missing.p_value is None
    drift.judge([all_missing])
    assert all_missing.status == drift.DRIFT and all_missing.reason.startswith("missing")


def test_drift_windows_survive_a_supervisor_restart_through_the_run_dir(tmp_path) -> None:
    import os
    import time

    from registry.monitoring.window import DriftWindow
    from registry.serving.drift_state import FILE_NAME, load_windows, save_windows, snapshot
    from registry.serving.rundir import RunDir

    rundir = RunDir.of(tmp_path).create()
    now = time.time()
    window = DriftWindow(max_rows=100, max_seconds=600)
    window.add([[1.0, "a"]] * 3, [0, 1, 0], now - 7200)  # older than the window: not taken back
    window.add([[2.0, "b"], [3.0, None]], [1, 0], now)
    save_windows(rundir, snapshot({"iris": (2, window)}))
    path = rundir.path / FILE_NAME
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    restored = load_windows(rundir, 100, 600)
    assert list(restored) == ["iris"] and restored["iris"][0] == 2
    assert [row for _, row, _ in restored["iris"][1].entries()] == [[2.0, "b"], [3.0, None]]
    path.write_bytes(b"{not json")
    assert load_windows(rundir, 100, 600) == {}  # a damaged file: an empty window, never a crash
    os.unlink(path)
    assert load_windows(rundir, 100, 600) == {}


def _nan_free(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_nan_free(v) for v in value.values())
    if isinstance(value, list):
        return all(_nan_free(v) for v in value)
    return True


@pytest.mark.parametrize("infinite_share", [0.2, 0.3])
def test_infinite_values_count_as_missing_so_a_flood_of_them_is_drift_without_nan(infinite_share) -> None:
    """+inf rows made W1 NaN and capped a clear drift at warn; they are missing values now, in the
    reference's profile and in a live window alike."""
    from registry.monitoring.window import DriftWindow

    reference = rng.normal(0, 1, 5000)
    reference[:50] = np.inf  # 1% infinite in the reference: its missing share
    profile = Profile([fitted(reference)], None)
    assert profile.features[0].missing_share == pytest.approx(0.01)
    assert np.isfinite(profile.features[0].values).all()
    window = DriftWindow()
    values = rng.normal(0, 1, 1000)
    values[: round(infinite_share * 1000)] = np.inf
    window.add([[float(v)] for v in values], [0.0] * len(values))
    report = window.report(profile, ["x"], [True])
    feature = report.features[0]
    assert feature.missing_share == pytest.approx(infinite_share)
    assert report.status == drift.DRIFT and feature.reason.startswith("missing p=")
    assert _nan_free(report.as_dict()), report.as_dict()


def test_a_p_value_of_zero_reads_p_0_in_the_reason() -> None:
    result = feature_drift(fitted(REFERENCE), rng.normal(30, 2, 1000))
    result.p_value = 0.0  # what scipy-style tests return when the statistic is far out
    drift.judge([result])
    assert result.status == drift.DRIFT and result.reason.startswith("KS p=0 (adj 0)"), result.reason


def test_a_float_or_bool_column_declared_categorical_reads_the_same_in_the_reference_and_live() -> None:
    """pandas stores a float column's 1.0 as "1.0" and JSON's 1 arrived as "1": every window drifted
    with a total-variation distance of 1. One label function serves both sides now."""
    import json

    import pandas as pd

    from registry import reference
    from registry.monitoring.window import DriftWindow

    rows = 3000
    frame = pd.DataFrame(
        {
            "code": rng.choice([1.0, 2.0, 3.0], rows),
            "flag": rng.choice([True, False], rows),
            "score": rng.choice([0.5, 1.5], rows),
        }
    )
    frame.loc[:9, "code"] = np.nan
    signature = {"columns": [{"name": n, "kind": "categorical"} for n in frame.columns]}
    sample = reference.decode(reference.to_bytes(reference.arrays_of(frame, signature, np.zeros(rows))))
    assert sorted(set(sample.columns["code"])) == ["", "1", "2", "3"]
    assert sorted(set(sample.columns["flag"])) == ["False", "True"]
    profile = Profile.fit(sample, signature, {})
    live = pd.DataFrame(
        {
            "code": rng.choice([1, 2, 3], 1000),  # what a JSON client sends for the same codes
            "flag": rng.choice([True, False], 1000),
            "score": rng.choice([0.5, 1.5], 1000),
        }
    )
    window = DriftWindow()
    window.add(json.loads(live.to_json(orient="values")), [0.0] * 1000)
    report = window.report(profile, list(frame.columns), [False] * 3)
    assert report.status == drift.OK, [f.reason for f in report.features]
    assert all(f.unseen_share == 0 and f.effect < 0.05 for f in report.features)


def test_the_window_keeps_the_newest_rows_within_its_span_across_pulls_reports_and_restarts() -> None:
    """Columns are typed once per pull and pulls merged at each report: the window still holds exactly
    the newest `max_rows` rows no older than `max_seconds`, and reports what those rows say."""
    from registry.monitoring.window import DriftWindow

    profile = Profile([fitted(REFERENCE), fitted(rng.choice(["a", "b"], 5000), "categorical")], None)
    window, held = DriftWindow(max_rows=700, max_seconds=100.0), []
    for step in range(12):
        now = 30.0 * step
        numbers, colours = rng.normal(10 + step, 2, 150), rng.choice(["a", "b"], 150)
        batch = [[float(v), str(c)] for v, c in zip(numbers, colours, strict=True)]
        batch[0] = [None, None]  # missing values
        window.add(batch, [float(step)] * 150, now=now)
        held = [*held, *((now, row, float(step)) for row in batch)][-700:]  # a bounded deque's rows
        if step % 3 == 1:  # a report first lets rows older than the span go
            held = [entry for entry in held if entry[0] >= now - 100]
            report = window.report(profile, ["x", "colour"], [True, False], now=now)
            values = [row[0] for _, row, _ in held]
            expected = drift_report(
                profile,
                {
                    "x": np.array([np.nan if v is None else v for v in values]),
                    "colour": np.array(["" if row[1] is None else row[1] for _, row, _ in held]),
                },
                {"x": np.array([v is None for v in values]), "colour": np.array([v is None for v in values])},
                np.array([p for _, _, p in held]),
            )
            assert report.as_dict() == expected.as_dict()
        assert [(t, row, p) for t, row, p in window.entries()] == held and len(window) == len(held)
    restarted = DriftWindow(max_rows=700, max_seconds=100.0)
    restarted.restore(window.entries(), now=330.0 + 50)  # half the held rows have aged out meanwhile
    assert restarted.entries() == [entry for entry in held if entry[0] >= 280.0]


@pytest.mark.parametrize("kind", ["normal", "ties", "wide", "two-decimal"])
def test_quantiles_of_sorted_values_are_numpys_to_the_last_bit(kind: str) -> None:
    """A profile's decile edges and quartiles come from the sorted values directly: they must be what
    np.quantile gives (a stored edge that differed would move rows between bins)."""
    from registry.profile import sorted_quantiles

    draws = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 999, 1000, 10_000):
        values = {
            "normal": draws.normal(size=n),
            "ties": draws.integers(0, 5, size=n).astype(float),
            "wide": draws.exponential(size=n) * 1e6,
            "two-decimal": np.round(draws.normal(size=n), 2),
        }[kind]
        ordered = np.sort(values)
        for q in (
            np.linspace(0, 1, 11)[1:-1],
            np.array([0.25, 0.5, 0.75]),
            np.array([0.0, 0.001, 0.999, 1.0]),
        ):
            assert np.array_equal(sorted_quantiles(ordered, q), np.quantile(ordered, q)), (n, q)
