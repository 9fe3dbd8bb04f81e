"""Data drift of live inputs and predictions against a version's reference sample.

The reference sample is turned into a `Profile` once (at registration): per numeric feature, quantile
bin edges (10 bins, the first and last open-ended), the reference share in each bin, its standard
deviation and a 1,001-point quantile function; per categorical feature, category shares plus an explicit
"other/unseen" bin; and the same for the model's predictions. A live window then only bins (and, for
numeric features, sorts) the current data.

Per feature: PSI on the reference bins (warn 0.1, drift 0.25), Wasserstein distance normalised by the
reference standard deviation (numeric), Jensen-Shannon distance base 2 (categorical), the shares of
unseen categories and of missing values as separate data-quality signals, and the KS / chi-square
p-value as secondary information only for windows of at most 1,000 rows.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from registry.monitoring.multivariate import MultivariateDrift, MultivariateProfile

BINS = 10
QUANTILES = 1001
MAX_CATEGORIES = 200
PSI_WARN, PSI_DRIFT = 0.1, 0.25
#: The dataset drifts when at least this share of its features drift.
DATASET_DRIFT_SHARE = 0.5
MIN_WINDOW = 100
MAX_P_VALUE_WINDOW = 1000
#: Bin shares are floored at this before PSI's logarithm, so an empty bin is a large finite term.
_EPSILON = 1e-4
NUMERIC, CATEGORICAL = "numeric", "categorical"
OK, WARN, DRIFT, NOT_ENOUGH, NO_REFERENCE = "ok", "warn", "drift", "not enough data", "no reference"
#: The version has a reference sample, but it is missing, tampered with or unreadable.
DAMAGED = "damaged reference"
_LEVEL = {OK: 0, WARN: 1, DRIFT: 2}


@dataclass
class FeatureProfile:
    """What drift needs to know of one reference column."""

    name: str
    kind: str
    rows: int
    missing_share: float
    edges: list[float] = field(default_factory=list)  # numeric: BINS - 1 inner edges
    std: float = 0.0
    quantiles: Any = None  # numeric: np.ndarray of QUANTILES values
    categories: list[str] = field(default_factory=list)  # categorical: kept categories
    shares: list[float] = field(default_factory=list)  # bins (numeric) or categories + other

    @classmethod
    def fit(cls, name: str, values: Any, missing: Any, kind: str) -> FeatureProfile:
        values, missing = np.asarray(values), np.asarray(missing, dtype=bool)
        present = values[~missing]
        rows = len(values)
        missing_share = float(missing.mean()) if rows else 0.0
        if kind == NUMERIC:
            present = present.astype(np.float64)
            present = present[~np.isnan(present)]
            if len(present) == 0:
                return cls(
                    name, kind, rows, missing_share, [0.0] * (BINS - 1), 0.0, np.zeros(QUANTILES), [], []
                )
            ordered = np.sort(present)
            quantiles = _quantile_function(ordered)
            step = (QUANTILES - 1) // BINS  # the deciles are on the quantile grid
            profile = cls(
                name,
                kind,
                rows,
                missing_share,
                edges=[float(e) for e in quantiles[step:-1:step]],
                std=float(ordered.std()),
                quantiles=quantiles,
            )
            profile.shares = [float(s) for s in profile.bin_shares(present)]
            return profile
        labels, counts = np.unique(present.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
        total = max(1, len(present))
        kept = [str(labels[i]) for i in order]
        shares = [float(counts[i] / total) for i in order]
        return cls(
            name, kind, rows, missing_share, categories=kept, shares=[*shares, max(0.0, 1 - sum(shares))]
        )

    def bin_shares(self, present: Any) -> Any:
        """Share of `present` (non-missing values) in each reference bin (numeric) or category + other."""
        if self.kind == NUMERIC:
            counts = np.bincount(np.searchsorted(self.edges, present, side="right"), minlength=BINS)
        else:
            other = len(self.categories)
            if other == 0:
                return np.array([1.0])
            kept = np.asarray(self.categories)
            order = np.argsort(kept)
            labels = present.astype(str)
            at = np.minimum(np.searchsorted(kept[order], labels), other - 1)
            codes = np.where(kept[order][at] == labels, order[at], other)
            counts = np.bincount(codes, minlength=other + 1)
        return counts / max(1, len(present))


@dataclass
class FeatureDrift:
    """Drift of one feature (or of the predictions) in a window."""

    name: str
    kind: str
    rows: int
    status: str
    psi: float | None = None
    wasserstein: float | None = None  # numeric: W1 / reference std
    jensen_shannon: float | None = None  # categorical, base 2
    unseen_share: float = 0.0
    missing_share: float = 0.0
    p_value: float | None = None  # KS (numeric) / chi-square (categorical); windows <= 1,000 rows


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


@dataclass
class Profile:
    """A version's reference profile: one FeatureProfile per input column, and its predictions'."""

    features: list[FeatureProfile]
    prediction: FeatureProfile | None
    multivariate: MultivariateProfile | None = None  # None: saved before it existed, or too few inputs

    @classmethod
    def fit(cls, sample: Any, signature: dict[str, Any], output: dict[str, Any]) -> Profile:
        """From a `ReferenceSample` and the version's signature and output description."""
        kinds = {
            c["name"]: (NUMERIC if c["kind"] == "numeric" else CATEGORICAL) for c in signature["columns"]
        }
        features = [
            FeatureProfile.fit(name, values, sample.missing[name], kinds.get(name, NUMERIC))
            for name, values in sample.columns.items()
        ]
        predictions = np.asarray(sample.predictions)
        if predictions.ndim > 1:
            predictions = predictions[:, 0] if predictions.shape[1] == 1 else None
        prediction = None
        if predictions is not None and len(predictions):
            kind = (
                CATEGORICAL
                if output.get("classes") is not None or predictions.dtype.kind in "USbO"
                else NUMERIC
            )
            prediction = FeatureProfile.fit("prediction", predictions, np.zeros(len(predictions), bool), kind)
        from registry.monitoring.multivariate import fit_reference

        return cls(features, prediction, fit_reference(sample, signature))

    def to_bytes(self) -> bytes:
        """Pickle-free `.npz`: quantile arrays as arrays, everything else as one JSON header."""
        everything = [*self.features, *([self.prediction] if self.prediction else [])]
        arrays = {f"q{i}": f.quantiles for i, f in enumerate(everything) if f.quantiles is not None}
        header = [{k: v for k, v in asdict(f).items() if k != "quantiles"} for f in everything]
        meta = {"features": header, "has_prediction": self.prediction is not None}
        if self.multivariate is not None:
            meta["multivariate"] = self.multivariate.header()
            arrays.update(self.multivariate.arrays())
        buffer = io.BytesIO()
        np.savez_compressed(buffer, header=np.array(json.dumps(meta)), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        from registry.monitoring.multivariate import MultivariateProfile

        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["header"]))
            everything = [
                FeatureProfile(**item, quantiles=npz[f"q{i}"] if f"q{i}" in npz.files else None)
                for i, item in enumerate(meta["features"])
            ]
            multivariate = MultivariateProfile.load(meta.get("multivariate"), npz)
        prediction = everything.pop() if meta["has_prediction"] else None
        return cls(everything, prediction, multivariate)


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


def feature_drift(profile: FeatureProfile, values: Any, missing: Any | None = None) -> FeatureDrift:
    """Drift of one column of the window against its reference profile."""
    values = np.asarray(values)
    missing = np.zeros(len(values), bool) if missing is None else np.asarray(missing, dtype=bool)
    if profile.kind == NUMERIC:
        numbers = values.astype(np.float64)
        missing = missing | np.isnan(numbers)
        present = numbers[~missing]
    else:
        present = values[~missing].astype(str)
    rows = len(values)
    result = FeatureDrift(
        profile.name, profile.kind, rows, NOT_ENOUGH, missing_share=float(missing.mean()) if rows else 0.0
    )
    if len(present) == 0:
        return result
    if profile.kind == NUMERIC:
        ordered = np.sort(present)
        shares = np.diff(np.searchsorted(ordered, profile.edges), prepend=0, append=len(ordered))
        shares = shares / len(ordered)
        result.psi = psi(profile.shares, shares)
        distance = float(np.mean(np.abs(_quantile_function(ordered) - profile.quantiles)))
        result.wasserstein = distance / profile.std if profile.std > 0 else distance
        if len(present) <= MAX_P_VALUE_WINDOW:
            result.p_value = _ks_p_value(profile, ordered)
    else:
        shares = profile.bin_shares(present)
        result.psi = psi(profile.shares, shares)
        result.jensen_shannon = jensen_shannon(profile.shares, shares)
        result.unseen_share = float(shares[-1]) if profile.categories else 1.0
        if len(present) <= MAX_P_VALUE_WINDOW:
            result.p_value = _chi_square_p_value(profile, shares, len(present))
    if len(present) >= MIN_WINDOW:
        result.status = DRIFT if result.psi >= PSI_DRIFT else WARN if result.psi >= PSI_WARN else OK
    return result


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
    multivariate = profile.multivariate.drift(columns, missing) if profile.multivariate else None
    judged = [f for f in features if f.status != NOT_ENOUGH]
    if rows < MIN_WINDOW or not judged:
        return DriftReport(NOT_ENOUGH, rows, 0.0, features, prediction, multivariate=multivariate)
    drifted = sum(f.status == DRIFT for f in judged) / len(judged)
    signals = [*judged, *([prediction] if prediction is not None and prediction.status in _LEVEL else [])]
    worst = max(_LEVEL[f.status] for f in signals)
    status = DRIFT if drifted >= DATASET_DRIFT_SHARE else (WARN if worst > 0 else OK)
    return DriftReport(status, rows, drifted, features, prediction, multivariate=multivariate)


def _quantile_function(ordered: Any) -> Any:
    """QUANTILES evenly spaced quantiles of a sorted array (linear interpolation, like np.quantile)."""
    positions = np.linspace(0, len(ordered) - 1, QUANTILES)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (positions - below)


def _ks_p_value(profile: FeatureProfile, current_sorted: Any) -> float:
    """Two-sample KS p-value, the reference's CDF read from its quantile function (asymptotic, as
    scipy's `ks_2samp` computes it for samples of these sizes)."""
    from scipy.stats import kstwo

    grid = np.linspace(0, 1, QUANTILES)
    n = len(current_sorted)
    below = np.interp(current_sorted, profile.quantiles, grid, left=0.0, right=1.0)
    ecdf_after = np.arange(1, n + 1) / n
    ecdf_before = np.arange(0, n) / n
    statistic = float(max(np.max(np.abs(ecdf_after - below)), np.max(np.abs(below - ecdf_before))))
    m = profile.rows * (1 - profile.missing_share)
    effective = round(n * m / (n + m))
    return float(kstwo.sf(statistic, max(1, effective)))


def _chi_square_p_value(profile: FeatureProfile, shares: Any, n: int) -> float:
    from scipy.stats import chisquare

    expected = np.maximum(np.asarray(profile.shares), _EPSILON)
    expected = expected / expected.sum() * n
    return float(chisquare(np.asarray(shares) * n, expected).pvalue)
