"""Drift statistics, checked against scipy.stats and a PSI computed by hand; degenerate windows."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from registry.monitoring import drift
from registry.monitoring.drift import FeatureProfile, Profile, drift_report, feature_drift

rng = np.random.default_rng(7)
REFERENCE = rng.normal(10, 2, 10_000)


def numeric(values=REFERENCE, missing=None) -> FeatureProfile:
    values = np.asarray(values, dtype=float)
    return FeatureProfile.fit(
        "x", values, np.zeros(len(values), bool) if missing is None else missing, "numeric"
    )


def test_psi_by_hand() -> None:
    reference = [0.25, 0.25, 0.5]
    current = [0.5, 0.25, 0.25]
    by_hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert drift.psi(reference, current) == pytest.approx(by_hand)
    assert drift.psi(reference, reference) == 0.0
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))  # empty bins: large, finite


def test_reference_bins_are_deciles_with_open_ends() -> None:
    profile = numeric()
    assert len(profile.edges) == 9 and len(profile.shares) == 10
    assert profile.shares == pytest.approx([0.1] * 10, abs=1e-3)
    far = feature_drift(profile, np.array([-1e9] * 50 + [1e9] * 50 + [10.0] * 100))
    shares = profile.bin_shares(np.array([-1e9, 1e9]))
    assert shares[0] == 0.5 and shares[-1] == 0.5  # beyond the reference range: the end bins
    assert far.psi > drift.PSI_DRIFT


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])
def test_wasserstein_matches_scipy_normalised_by_the_reference_std(shift: float) -> None:
    current = rng.normal(10 + shift, 2, 10_000)
    result = feature_drift(numeric(), current)
    expected = wasserstein_distance(REFERENCE, current) / REFERENCE.std()
    assert result.wasserstein == pytest.approx(expected, rel=0.02, abs=0.005)


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_ks_p_value_matches_scipy_for_small_windows(shift: float) -> None:
    current = rng.normal(10 + shift, 2, 500)
    result = feature_drift(numeric(), current)
    expected = ks_2samp(REFERENCE, current).pvalue
    assert result.p_value == pytest.approx(expected, rel=0.1, abs=0.01)


def test_no_p_value_beyond_a_thousand_rows() -> None:
    assert feature_drift(numeric(), rng.normal(10, 2, 1001)).p_value is None


def test_jensen_shannon_and_unseen_categories() -> None:
    colours = np.array(["red"] * 500 + ["green"] * 300 + ["blue"] * 200)
    profile = FeatureProfile.fit("colour", colours, np.zeros(1000, bool), "categorical")
    assert profile.categories == ["red", "green", "blue"] and profile.shares[-1] == 0.0
    current = np.array(["red"] * 200 + ["green"] * 200 + ["blue"] * 400 + ["purple"] * 200)
    result = feature_drift(profile, current)
    expected = jensenshannon([0.5, 0.3, 0.2, 0.0], [0.2, 0.2, 0.4, 0.2], base=2)
    assert result.jensen_shannon == pytest.approx(expected)
    assert result.unseen_share == pytest.approx(0.2)
    assert result.status == drift.DRIFT and result.p_value is not None and result.p_value < 1e-6
    same = feature_drift(profile, colours)
    assert same.jensen_shannon == pytest.approx(0.0, abs=1e-9) and same.status == drift.OK


def test_missing_values_are_a_separate_signal_not_drift() -> None:
    current = rng.normal(10, 2, 1000)
    current[:300] = np.nan
    result = feature_drift(numeric(), current)
    assert result.missing_share == pytest.approx(0.3)
    assert result.status == drift.OK and result.psi < drift.PSI_WARN


def test_constant_column_and_zero_std() -> None:
    profile = numeric(np.full(1000, 5.0))
    assert profile.std == 0.0
    same = feature_drift(profile, np.full(200, 5.0))
    assert same.psi == pytest.approx(0.0) and same.wasserstein == 0.0 and same.status == drift.OK
    moved = feature_drift(profile, np.full(200, 7.0))
    assert moved.wasserstein == pytest.approx(2.0)  # not normalised when the reference std is 0
    assert math.isfinite(moved.psi)


def test_empty_and_small_windows() -> None:
    profile = numeric()
    empty = feature_drift(profile, np.array([]))
    assert empty.status == drift.NOT_ENOUGH and empty.psi is None
    tiny = feature_drift(profile, np.array([1.0, 2.0, 3.0]))  # fewer rows than bins
    assert tiny.status == drift.NOT_ENOUGH and tiny.psi is not None
    all_missing = feature_drift(profile, np.full(500, np.nan))
    assert all_missing.status == drift.NOT_ENOUGH and all_missing.missing_share == 1.0


def _sample(rows: int, shift: float = 0.0) -> SimpleNamespace:
    local = np.random.default_rng(1)
    return SimpleNamespace(
        columns={
            "a": local.normal(shift, 1, rows),
            "b": local.normal(shift, 1, rows),
            "c": local.choice(["x", "y"], rows),
        },
        missing={"a": np.zeros(rows, bool), "b": np.zeros(rows, bool), "c": np.zeros(rows, bool)},
        predictions=local.choice([0, 1], rows),
    )


SIGNATURE = {
    "columns": [
        {"name": "a", "kind": "numeric"},
        {"name": "b", "kind": "numeric"},
        {"name": "c", "kind": "categorical"},
    ]
}


def test_dataset_verdict_and_profile_round_trip() -> None:
    profile = Profile.fit(_sample(5000), SIGNATURE, {"classes": [0, 1]})
    restored = Profile.from_bytes(profile.to_bytes())
    assert [f.name for f in restored.features] == ["a", "b", "c"]
    assert np.array_equal(restored.features[0].quantiles, profile.features[0].quantiles)
    assert restored.prediction is not None and restored.prediction.kind == "categorical"
    calm = _sample(2000)
    report = drift_report(restored, calm.columns, calm.missing, calm.predictions)
    assert report.status == drift.OK and report.drifted_share == 0.0
    moved = _sample(2000, shift=2.0)
    report = drift_report(restored, moved.columns, moved.missing, moved.predictions)
    assert report.status == drift.DRIFT and report.drifted_share == pytest.approx(2 / 3)
    few = _sample(50)
    assert drift_report(restored, few.columns, few.missing, few.predictions).status == drift.NOT_ENOUGH
    assert drift_report(None, calm.columns, calm.missing, None).status == drift.NO_REFERENCE


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
