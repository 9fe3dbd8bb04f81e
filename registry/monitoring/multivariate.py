"""Multivariate drift: a change in how features vary together, which per-feature tests cannot see.

The reference side (the inputs' encoding, the PCA and each reference row's out-of-fold reconstruction
error) is fitted at registration by the registry core: see `registry.multivariate_profile`.

A window's rows are encoded the same way. The effect size is the ratio of their mean reconstruction error
to the reference rows' mean; the p-value is a one-sided Mann-Whitney U test that the window's errors
tend to be the higher, which accounts for the window's and the reference sample's sizes. Reference rows
(out of fold) and rows of an undrifted window are draws from one error distribution, so the rank test
holds its level whatever the (skewed, heavy-tailed) shape of the errors, and keeps its power where
heavy-tailed features make a test of means weak (a Welch t-test caught a shuffled correlated pair in
half the breast cancer trials, the rank test in all). A correlation that breaks moves rows off the
reference's principal subspace even when every marginal distribution stays the same.

Verdict: its p-value joins the window's Holm family of per-feature tests (`drift_report`); an
adjusted p < 0.001 and an error ratio of at least 1.1 is drift, of at least 1.05 warn. The ratio
floors matter at large windows: every window is compared with the same finite reference sample,
whose own imprecision a 10,000-row window would otherwise call significant.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from registry.monitoring.drift import DRIFT, MIN_WINDOW, NOT_ENOUGH, OK, WARN
from registry.multivariate_profile import MultivariateProfile

METHOD = "pca-reconstruction"
#: Verdicts: p < P_VALUE and a window mean error at least WARN_RATIO (warn) or ERROR_RATIO_FLOOR (drift)
#: times the reference's. The floors keep a large window from calling the reference's own imprecision
#: (its held-out errors are one finite sample, shared by every window) drift.
P_VALUE = 0.001
WARN_RATIO, ERROR_RATIO_FLOOR = 1.05, 1.1


@dataclass
class MultivariateDrift:
    """The window's multivariate signal (`error_ratio` = window mean error / reference mean error)."""

    method: str
    components: int
    inputs: int
    rows: int
    status: str
    error_ratio: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None  # Holm-adjusted in the window's family of drift tests

    def judge(self, p: float) -> None:
        """The verdict from `p` (the raw p-value alone, or adjusted with the window's other tests)."""
        significant = p < P_VALUE
        if significant and (self.error_ratio or 0.0) >= ERROR_RATIO_FLOOR:
            self.status = DRIFT
        else:
            self.status = WARN if significant and (self.error_ratio or 0.0) >= WARN_RATIO else OK


def multivariate_drift(
    profile: MultivariateProfile, columns: dict[str, Any], missing: dict[str, Any]
) -> MultivariateDrift:
    """The window's reconstruction errors against the reference rows' (out of fold)."""
    rows = len(next(iter(columns.values()))) if columns else 0
    result = MultivariateDrift(METHOD, len(profile.components), len(profile.inputs), rows, NOT_ENOUGH)
    if any(name not in columns for name, _ in profile.inputs) or rows == 0:
        return result
    errors = profile.errors(columns, missing)
    reference = float(profile.null_errors.mean())
    result.error_ratio = float(errors.mean()) / reference if reference > 0 else None
    if rows < MIN_WINDOW or result.error_ratio is None:
        return result
    result.p_value = _rank_test_greater(errors, profile.null_errors)
    result.judge(result.p_value)
    return result


def _rank_test_greater(window: Any, reference_sorted: Any) -> float:
    """One-sided Mann-Whitney U p-value that `window`'s values tend to exceed those of the sorted
    `reference_sorted`: scipy's `mannwhitneyu(..., alternative="greater", method="asymptotic")`, with U
    counted by binary search in the stored sorted errors (no ranking of both samples each window, which
    took most of a window's time) and without the tie correction (with ties, a p-value below 0.5 comes
    out larger: conservative)."""
    from scipy.special import ndtr

    n, m = len(window), len(reference_sorted)
    window = np.sort(window)  # sorted keys make the binary searches several times faster
    below = np.searchsorted(reference_sorted, window, side="left")
    not_above = np.searchsorted(reference_sorted, window, side="right")
    u = float(np.sum(below) + np.sum(not_above)) / 2  # pairs where the window's is higher; ties count half
    spread = np.sqrt(n * m * (n + m + 1) / 12)
    return float(ndtr(-(u - n * m / 2 - 0.5) / spread))
