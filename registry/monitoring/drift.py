"""Data drift of live inputs and predictions against a version's reference sample.

The reference sample is turned into a `Profile` once, at registration, by the registry core
(`registry.profile`: per numeric feature, its sorted non-missing values, its distinct decile edges and a
robust scale; per categorical feature, the count of every category; the missing share of each; the same
for the model's predictions). A live window is then compared with it by two-sample tests:

- numeric: Kolmogorov-Smirnov on the two samples, ties handled as `scipy.stats.ks_2samp` does (both
  empirical CDFs evaluated at every observed value), p-value from ks_2samp's asymptotic method; effect
  size: the Wasserstein-1 distance of the two samples (exact) over the reference's robust scale
  (`robust_scale`);
- categorical: chi-square on the 2 x k contingency table of reference and window counts (unseen
  categories in one cell; the rarest cells pooled as far as Cochran's rule asks), like
  `scipy.stats.chi2_contingency`; effect size: total-variation distance of the category shares;
- missing values: the reference's missing share against the window's (Fisher's exact test, or
  chi-square with Yates's correction when every cell expects 5 or more); effect size: the difference of
  the shares.

The p-values of every test of a window (each feature's distribution and missing-share tests, and the
predictions') form one family, adjusted with Holm-Bonferroni. A test says `drift` when its adjusted
p-value is under `ALPHA_DRIFT` and its effect size reaches the test's practical floor (`FLOORS`),
`warn` when its adjusted p-value is under `ALPHA_WARN` (or significant below the floor); a feature takes
its worst test, the window its worst feature (`drifted_share`: the share of input features at `drift`).
PSI on the reference's distinct deciles, Jensen-Shannon and the unseen share are still reported, as
figures only. Windows of under `MIN_WINDOW` rows get no verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from registry.profile import NUMERIC, FeatureProfile, Profile, finite_or_missing

if TYPE_CHECKING:
    from registry.monitoring.multivariate import MultivariateDrift


#: Holm-adjusted p-values under these give `drift` (with a practical effect) and `warn`.
ALPHA_DRIFT, ALPHA_WARN = 0.001, 0.01
#: Practical floors of the effect sizes: Wasserstein-1 over the robust scale (numeric), total-variation
#: distance (categorical), difference of missing shares. Below them a significant test is only `warn`.
FLOORS = {"ks": 0.1, "chi2": 0.03, "missing": 0.05}
#: Cochran's rule for the chi-square approximation: at most a fifth of the cells expect fewer counts.
MIN_EXPECTED = 5.0
MIN_WINDOW = 100
#: Bin shares are floored at this before PSI's logarithm, so an empty bin is a large finite term.
_EPSILON = 1e-4
OK, WARN, DRIFT, NOT_ENOUGH, NO_REFERENCE = "ok", "warn", "drift", "not enough data", "no reference"
#: The version has a reference sample, but it is missing, tampered with or unreadable.
DAMAGED = "damaged reference"
_LEVEL = {OK: 0, WARN: 1, DRIFT: 2}
_TEST_NAMES = {"ks": "KS", "chi2": "chi2", "missing": "missing"}
_EFFECT_NAMES = {"ks": "W1/scale", "chi2": "TV"}


@dataclass
class FeatureDrift:
    """Drift of one feature (or of the predictions) in a window, and the reason for its verdict."""

    name: str
    kind: str
    rows: int
    status: str
    psi: float | None = None
    wasserstein: float | None = None  # numeric: W1 / reference robust scale (W1 itself if that is 0)
    jensen_shannon: float | None = None  # categorical, base 2
    unseen_share: float = 0.0
    missing_share: float = 0.0
    test: str | None = None  # "ks" (numeric) or "chi2" (categorical): the distribution test
    statistic: float | None = None  # KS D, or the chi-square statistic
    effect: float | None = None  # W1/scale (numeric) or total-variation distance (categorical)
    p_value: float | None = None  # the distribution test's raw p-value
    p_adjusted: float | None = None  # its Holm-adjusted p-value
    reference_missing_share: float = 0.0
    missing_p_value: float | None = None  # Fisher's exact test of the missing shares (None: none missing)
    missing_p_adjusted: float | None = None
    reason: str = ""  # the test behind the verdict, its effect size and p-values (raw, adjusted)


@dataclass
class DriftReport:
    """A window's drift: dataset verdict, per-feature figures and prediction drift."""

    status: str
    rows: int
    drifted_share: float
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    message: str = ""  # why there is no verdict, when the reason is not the status alone
    multivariate: MultivariateDrift | None = None  # see registry.monitoring.multivariate

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnusableProfile:
    """Stands in for the profile of a version whose reference sample is damaged: drift says so
    (`reason`, e.g. "reference sample of iris:2 is damaged (sha256 mismatch)"), not "no reference"."""

    reason: str


def psi(reference: Any, current: Any) -> float:
    """Population stability index of two share vectors over the same bins (shares floored at 1e-4)."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), _EPSILON)
    cur = np.maximum(np.asarray(current, dtype=np.float64), _EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint), like scipy's `jensenshannon(base=2)`."""
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: Any) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def ks_and_wasserstein(reference: Any, current: Any) -> tuple[float, float]:
    """Two-sample KS statistic and Wasserstein-1 distance of two sorted samples, as scipy's
    `ks_2samp` and `wasserstein_distance` compute them: both empirical CDFs at every observed value
    (the samples merged in one pass; within a run of ties only the last CDF step counts)."""
    m, n = len(reference), len(current)
    both = np.concatenate([reference, current])
    order = np.argsort(both, kind="stable")  # two sorted runs: a linear merge
    merged, seen = both[order], np.cumsum(order >= m)
    gap = np.abs((np.arange(1, m + n + 1) - seen) / m - seen / n)
    steps = np.diff(merged)
    return float(gap[:-1][steps > 0].max(initial=0.0)), float(np.sum(gap[:-1] * steps))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """ks_2samp's asymptotic two-sided p-value: Kolmogorov's distribution at round(nm / (n + m)).
    Where scipy would take its slow exact branch for a p-value above 0.99 anyway (effective size of
    1,000 or more and a small D), Kolmogorov's limit with Stephens's finite-size correction instead:
    within 1e-3 of it."""
    from scipy.special import kolmogorov
    from scipy.stats import kstwo

    effective = max(1, round(n * m / (n + m)))
    if effective >= 1000 and effective * statistic**1.5 <= 1.4:
        root = math.sqrt(effective)
        return float(kolmogorov((root + 0.12 + 0.11 / root) * statistic))
    return float(kstwo.sf(statistic, effective))


def pooled_table(reference: Any, window: Any) -> Any:
    """The 2 x k table of reference and window counts, its rarest cells pooled into one as far as
    needed for Cochran's rule on the expected counts (of the smaller row): none under 1, and at most
    a fifth of the cells under `MIN_EXPECTED`."""
    table = np.vstack([reference, window]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    cells = table.shape[1]
    expected = np.sort(table.sum(axis=0) * table.sum(axis=1).min() / table.sum())
    pooled = np.cumsum(expected)  # pooled[r - 1]: the pool of the r rarest cells
    under_5 = np.maximum(0, np.searchsorted(expected, MIN_EXPECTED) - np.arange(cells + 1))
    under_1 = np.maximum(0, np.searchsorted(expected, 1.0) - np.arange(cells + 1))
    pool = np.r_[np.inf, np.inf, pooled[1:]]  # r = 0 or 1: no pool
    sizes = np.where(np.arange(cells + 1) < 2, cells, cells - np.arange(cells + 1) + 1)
    fine = (under_1 == 0) & (pool >= 1) & (under_5 + (pool < MIN_EXPECTED) <= 0.2 * sizes)
    fine[1] = False
    rare = int(np.argmax(fine)) if fine.any() else cells
    if rare < 2:
        return table
    order = np.argsort(table.sum(axis=0), kind="stable")
    return np.hstack([table[:, order[rare:]], table[:, order[:rare]].sum(axis=1, keepdims=True)])


def chi_square(reference: Any, window: Any) -> tuple[float, float]:
    """Chi-square statistic and p-value of the pooled 2 x k table, as `scipy.stats.chi2_contingency`
    computes them (Yates's correction on a 2 x 2 table); (0, 1) when only one cell is left."""
    return _chi_square(pooled_table(reference, window))


def _chi_square(table: Any) -> tuple[float, float]:
    from scipy.special import chdtrc

    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    difference = np.abs(table - expected)
    if table.shape[1] == 2:  # Yates: each |O - E| shrunk by 0.5 (not below 0)
        difference = difference - np.minimum(0.5, difference)
    statistic = float(np.sum(difference**2 / expected))
    return statistic, float(chdtrc(table.shape[1] - 1, statistic))


def missing_p_value(reference_missing: int, reference_rows: int, missing: int, rows: int) -> float | None:
    """Two-sided test of two missing shares: Fisher's exact test when a cell of the 2 x 2 table expects
    fewer than `MIN_EXPECTED`, else chi-square with Yates's correction (`chi2_contingency`); None when
    neither side misses a value."""
    if reference_missing + missing == 0 or not reference_rows or not rows:
        return None
    from scipy.stats import fisher_exact

    table = np.array([[reference_missing, reference_rows - reference_missing], [missing, rows - missing]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if expected.min() < MIN_EXPECTED:
        return float(fisher_exact(table).pvalue)
    return _chi_square(table.T.astype(np.float64))[1]


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order."""
    order = np.argsort(p_values, kind="stable")
    count = len(p_values)
    steps = np.minimum(1.0, np.maximum.accumulate((count - np.arange(count)) * np.asarray(p_values)[order]))
    adjusted = np.empty(count)
    adjusted[order] = steps
    return [float(p) for p in adjusted]


def feature_drift(profile: FeatureProfile, values: Any, missing: Any | None = None) -> FeatureDrift:
    """Drift figures and raw p-values of one column of the window (verdict: `judge`)."""
    values = np.asarray(values)
    missing = np.zeros(len(values), bool) if missing is None else np.asarray(missing, dtype=bool)
    if profile.kind == NUMERIC:
        numbers, missing = finite_or_missing(values, missing)
        present = numbers[~missing]
    else:
        present = values[~missing].astype(str)
    rows = len(values)
    result = FeatureDrift(
        profile.name,
        profile.kind,
        rows,
        NOT_ENOUGH,
        missing_share=float(missing.mean()) if rows else 0.0,
        reference_missing_share=profile.missing_share,
    )
    if rows:
        reference_missing = round(profile.missing_share * profile.rows)
        result.missing_p_value = missing_p_value(reference_missing, profile.rows, int(missing.sum()), rows)
    if len(present) == 0 or profile.present == 0:
        return result
    if profile.kind == NUMERIC:
        ordered = np.sort(present)
        below = np.searchsorted(ordered, profile.edges, side="left")  # values under each edge
        result.psi = psi(profile.shares, np.diff(below, prepend=0, append=len(ordered)) / len(ordered))
        statistic, distance = ks_and_wasserstein(profile.values, ordered)
        result.wasserstein = distance / profile.scale if profile.scale > 0 else distance
        result.test, result.statistic, result.effect = "ks", statistic, result.wasserstein
        result.p_value = ks_p_value(statistic, len(ordered), profile.present)
    else:
        counts = profile.category_counts(present)
        shares = counts / len(present)
        result.psi = psi(profile.shares, shares)
        result.jensen_shannon = jensen_shannon(profile.shares, shares)
        result.unseen_share = float(shares[-1])
        reference = [*profile.counts, 0]
        result.test, result.effect = "chi2", float(np.abs(np.asarray(profile.shares) - shares).sum() / 2)
        result.statistic, result.p_value = chi_square(reference, counts)
    return result


def judge(features: list[FeatureDrift], extra: tuple[float, ...] = ()) -> list[float]:
    """Set each judged feature's adjusted p-values, verdict and reason: one Holm family of every
    test's p-value and the `extra` p-values of other signals of the same window (e.g. multivariate
    drift), whose adjusted p-values are returned."""
    tests = [
        (f, kind, p)
        for f in features
        if f.rows >= MIN_WINDOW
        for kind, p in (("distribution", f.p_value), ("missing", f.missing_p_value))
        if p is not None
    ]
    family = holm([p for _, _, p in tests] + list(extra))
    for (f, kind, _), p in zip(tests, family[: len(tests)], strict=True):
        if kind == "distribution":
            f.p_adjusted = p
        else:
            f.missing_p_adjusted = p
    for f in features:
        if f.rows < MIN_WINDOW or (f.p_value is None and f.missing_p_value is None):
            continue
        candidates = []  # (test, effect size, raw p, adjusted p)
        if f.p_adjusted is not None and f.test is not None:
            candidates.append((f.test, f.effect or 0.0, _raw_p(f.p_value), f.p_adjusted))
        if f.missing_p_adjusted is not None:
            effect = abs(f.missing_share - f.reference_missing_share)
            candidates.append(("missing", effect, _raw_p(f.missing_p_value), f.missing_p_adjusted))
        test, effect, raw, adjusted = max(
            candidates, key=lambda c: (_LEVEL[_verdict(c[0], c[1], c[3])], -c[3], c[1] / FLOORS[c[0]])
        )
        f.status = _verdict(test, effect, adjusted)
        f.reason = f"{_TEST_NAMES[test]} p={raw:.2g} (adj {adjusted:.2g}), " + (
            f"{f.reference_missing_share:.0%} -> {f.missing_share:.0%} missing"
            if test == "missing"
            else f"{_EFFECT_NAMES[test]} {effect:.3g}"
        )
    return family[len(tests) :]


def _raw_p(p: float | None) -> float:
    """A raw p-value for the reason text; only an absent one reads as 1 (a p of 0 stays 0)."""
    return 1.0 if p is None else p


def _verdict(test: str, effect: float, adjusted: float) -> str:
    if adjusted < ALPHA_DRIFT and effect >= FLOORS[test]:
        return DRIFT
    return WARN if adjusted < ALPHA_WARN else OK


def drift_report(
    profile: Profile | UnusableProfile | None,
    columns: dict[str, Any],
    missing: dict[str, Any],
    predictions: Any | None,
) -> DriftReport:
    """The window's drift: `columns` (name → values) and their `missing` masks, and predictions."""
    rows = len(next(iter(columns.values()))) if columns else 0
    if profile is None:
        return DriftReport(NO_REFERENCE, rows, 0.0, [], None)
    if isinstance(profile, UnusableProfile):
        return DriftReport(DAMAGED, rows, 0.0, [], None, message=profile.reason)
    features = [
        feature_drift(p, columns[p.name], missing.get(p.name)) for p in profile.features if p.name in columns
    ]
    prediction = None
    if profile.prediction is not None and predictions is not None and len(predictions):
        prediction = feature_drift(profile.prediction, np.asarray(predictions))
    from registry.monitoring.multivariate import multivariate_drift  # it imports this module's verdicts

    multivariate = None
    if profile.multivariate is not None:
        multivariate = multivariate_drift(profile.multivariate, columns, missing)
    signals = [*features, *([prediction] if prediction is not None else [])]
    extra = (multivariate.p_value,) if multivariate is not None and multivariate.p_value is not None else ()
    adjusted = judge(signals, extra=extra)
    if multivariate is not None and adjusted:
        multivariate.p_adjusted = adjusted[0]
        multivariate.judge(adjusted[0])
    judged = [f for f in features if f.status != NOT_ENOUGH]
    if rows < MIN_WINDOW or not judged:
        return DriftReport(NOT_ENOUGH, rows, 0.0, features, prediction, multivariate=multivariate)
    drifted = sum(f.status == DRIFT for f in judged) / len(judged)
    statuses = [s.status for s in signals] + ([multivariate.status] if multivariate else [])
    worst = max(_LEVEL.get(s, 0) for s in statuses)
    status = {_LEVEL[s]: s for s in _LEVEL}[worst]
    return DriftReport(status, rows, drifted, features, prediction, multivariate=multivariate)
