"""A version's reference profile: what drift compares live windows with.

Fitted once, at registration, from the version's reference sample and stored with it (`Profile.to_bytes`,
a pickle-free `.npz`): per numeric feature, its sorted non-missing values (at most the sample's 10,000),
its distinct decile edges and a robust scale; per categorical feature, the count of every category; the
missing share of each; the same for the model's predictions; and the multivariate profile
(`registry.multivariate_profile`). The registry core owns the profile's fitting and its stored format;
the tests that compare a window with it live in `registry.monitoring.drift`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from registry.multivariate_profile import MultivariateProfile, fit_reference
from registry.npz import npz_bytes

#: Decile edges of numeric features (PSI's bins; repeated edges are merged).
BINS = 10
#: Stored profiles of this format carry what the tests need; older ones are refitted (`OutdatedProfile`).
#: 3: infinite reference values count as missing, and the PCA keeps components within the numerical rank.
FORMAT = 3
NUMERIC, CATEGORICAL = "numeric", "categorical"


class OutdatedProfile(ValueError):
    """A stored profile of an older format: refit it from the reference sample."""


@dataclass
class FeatureProfile:
    """What drift needs to know of one reference column."""

    name: str
    kind: str
    rows: int
    missing_share: float
    edges: list[float] = field(default_factory=list)  # numeric: distinct inner decile edges
    std: float = 0.0
    scale: float = 0.0  # numeric: robust scale (see `robust_scale`)
    values: Any = None  # numeric: np.ndarray, the sorted non-missing reference values
    categories: list[str] = field(default_factory=list)  # categorical: every category, commonest first
    counts: list[int] = field(default_factory=list)  # categorical: reference count of each category
    shares: list[float] = field(default_factory=list)  # bins (numeric) or categories + other

    @classmethod
    def fit(cls, name: str, values: Any, missing: Any, kind: str) -> FeatureProfile:
        values, missing = np.asarray(values), np.asarray(missing, dtype=bool)
        if kind == NUMERIC:
            values, missing = finite_or_missing(values, missing)
        present = values[~missing]
        rows = len(values)
        missing_share = float(missing.mean()) if rows else 0.0
        if kind == NUMERIC:
            ordered = np.sort(present)
            if len(ordered) == 0:
                return cls(name, kind, rows, missing_share, values=ordered, shares=[1.0])
            deciles = sorted_quantiles(ordered, np.linspace(0, 1, BINS + 1)[1:-1])
            profile = cls(
                name,
                kind,
                rows,
                missing_share,
                edges=[float(e) for e in np.unique(deciles)],
                std=float(ordered.std()),
                scale=robust_scale(ordered),
                values=ordered,
            )
            profile.shares = [float(s) for s in profile.bin_shares(ordered)]
            return profile
        labels, counts = np.unique(present.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        total = max(1, len(present))
        return cls(
            name,
            kind,
            rows,
            missing_share,
            categories=[str(labels[i]) for i in order],
            counts=[int(counts[i]) for i in order],
            shares=[*(float(counts[i] / total) for i in order), 0.0],
        )

    @property
    def present(self) -> int:
        """Non-missing reference values."""
        return len(self.values) if self.kind == NUMERIC else sum(self.counts)

    def bin_shares(self, present: Any) -> Any:
        """Share of `present` (non-missing values) in each reference bin (numeric) or category + other."""
        if self.kind == NUMERIC:
            bins = len(self.edges) + 1
            counts = np.bincount(np.searchsorted(self.edges, present, side="right"), minlength=bins)
        else:
            counts = self.category_counts(present)
        return counts / max(1, len(present))

    def category_counts(self, present: Any) -> Any:
        """Window counts of each reference category, then of every category absent from it."""
        other = len(self.categories)
        if other == 0:
            return np.array([len(present)])
        kept = np.asarray(self.categories)
        order = np.argsort(kept)
        labels = np.asarray(present).astype(str)
        at = np.minimum(np.searchsorted(kept[order], labels), other - 1)
        codes = np.where(kept[order][at] == labels, order[at], other)
        return np.bincount(codes, minlength=other + 1)


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
        predictions: Any = np.asarray(sample.predictions)  # None below when not one column
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
        return cls(features, prediction, fit_reference(sample, signature))

    def to_bytes(self) -> bytes:
        """Pickle-free `.npz`: each numeric feature's sorted reference values as an array, everything
        else as one JSON header."""
        everything = [*self.features, *([self.prediction] if self.prediction else [])]
        arrays = {f"v{i}": f.values for i, f in enumerate(everything) if f.values is not None}
        # the fields as they are (asdict would deep-copy each feature's sorted values, then drop them)
        header = [{k.name: getattr(f, k.name) for k in fields(f) if k.name != "values"} for f in everything]
        meta = {"format": FORMAT, "features": header, "has_prediction": self.prediction is not None}
        if self.multivariate is not None:
            meta["multivariate"] = self.multivariate.header()
            arrays.update(self.multivariate.arrays())
        return npz_bytes({"header": np.array(json.dumps(meta)), **arrays})

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """The stored profile; `OutdatedProfile` when it predates `FORMAT` (refit it)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["header"]))
            if meta.get("format", 1) < FORMAT:
                raise OutdatedProfile(f"drift profile of format {meta.get('format', 1)}, not {FORMAT}")
            everything = [
                FeatureProfile(**item, values=npz[f"v{i}"] if f"v{i}" in npz.files else None)
                for i, item in enumerate(meta["features"])
            ]
            multivariate = MultivariateProfile.load(meta.get("multivariate"), npz)
        prediction = everything.pop() if meta["has_prediction"] else None
        return cls(everything, prediction, multivariate)


def sorted_quantiles(ordered: Any, q: Any) -> Any:
    """`np.quantile(ordered, q)` (its default, linear method, to the last bit) of values already
    sorted: no partition of them again (it was most of fitting a profile)."""
    at = q * (len(ordered) - 1)
    below = np.floor(at).astype(np.intp)
    above = np.minimum(below + 1, len(ordered) - 1)
    low, high, t = ordered[below], ordered[above], at - below
    gap = high - low
    return np.where(t >= 0.5, high - gap * (1 - t), low + gap * t)


def robust_scale(ordered: Any) -> float:
    """The scale W1 is divided by: the interquartile range / 1.349 (the std of a normal), else (half
    the values or more tied, e.g. 0/1 or zero-inflated data) the mean absolute deviation from the
    median x sqrt(pi/2) (also the std of a normal), else 0 (a constant). Unlike the std it stays put
    on heavy tails and single outliers."""
    q1, median, q3 = sorted_quantiles(ordered, np.array([0.25, 0.5, 0.75]))
    if q3 > q1:
        return float((q3 - q1) / 1.349)
    return float(np.mean(np.abs(ordered - median)) * math.sqrt(math.pi / 2))


def finite_or_missing(values: Any, missing: Any) -> tuple[Any, Any]:
    """A numeric column as floats, and its missing mask widened to NaN and infinite values: an
    infinity has no distance or quantile, so it counts as missing (as in the multivariate signal)."""
    numbers = np.full(len(values), np.nan)
    numbers[~missing] = values[~missing].astype(np.float64)
    return numbers, missing | ~np.isfinite(numbers)
