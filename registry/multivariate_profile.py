"""The multivariate profile of a reference sample: how its features vary together.

At profile fit the reference sample's inputs are encoded as one numeric matrix: numeric features centred
on their median and scaled by their IQR / 1.349 (their standard deviation when the IQR is 0; constant
columns are left out), categorical features one-hot over their `MAX_LEVELS` most frequent levels with at
least `MIN_LEVEL_SHARE` of the rows (the rest share the all-zero row), each indicator standardised by its
reference share; missing and infinite values take the reference median (numeric) or mode (categorical).
A PCA (numpy SVD, run on one BLAS thread) keeps the fewest components explaining `VARIANCE_KEPT` of the
variance (at least 1, fewer than the inputs' numerical rank, so that a real residual remains when inputs
are exactly dependent, such as a categorical's one-hot levels or a derived `total = a + b`; a rank below 2
gives no multivariate profile). The null distribution is each reference row's
reconstruction error (squared distance to the PCA subspace) under a PCA of the same size fitted without
it (`FOLDS` folds, seeded): what the error of an unseen row from the reference distribution looks like,
free of the PCA's overfit to its own rows (a fold's PCA, from fewer rows, errs slightly more: the
null leans conservative), on every reference row rather than a held-out half.

The registry core fits it at registration and owns its stored arrays; the drift of a window against it
(`registry.monitoring.multivariate`) encodes the window's rows the same way (`MultivariateProfile.errors`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

VARIANCE_KEPT = 0.9
MAX_LEVELS = 20
MIN_LEVEL_SHARE = 0.01
#: Fewer reference rows than this (or fewer than two usable inputs): no multivariate profile.
MIN_REFERENCE_ROWS = 50
_SEED = 0
#: Singular values below `RANK_TOLERANCE` x numpy's rank tolerance count as zero (see `numerical_rank`).
RANK_TOLERANCE = 100
FOLDS = 5
_PREFIX = "mv_"
_ARRAYS = ("centre", "scale", "mean", "components", "null_errors")


@dataclass
class MultivariateProfile:
    """Encoding and PCA of the reference inputs. `inputs` names each encoded column: `[feature, None]`
    (numeric) or `[feature, level]` (a categorical's indicator); the arrays are plain float arrays."""

    inputs: list[list[Any]]
    centre: Any  # per input: median (numeric) or share of the level (indicator)
    scale: Any  # per input: robust scale (numeric) or the indicator's std
    mean: Any  # the reference rows' mean after encoding
    components: Any  # k x inputs, orthonormal rows
    null_errors: Any  # each reference row's out-of-fold reconstruction error, sorted
    fill: dict[str, Any]  # per feature: the value a missing one takes (median / mode)

    @classmethod
    def fit(
        cls, columns: dict[str, Any], missing: dict[str, Any], numeric: dict[str, bool]
    ) -> MultivariateProfile | None:
        """From the reference `columns` (name → values), their `missing` masks and which are numeric;
        None when there are too few rows or usable inputs for a PCA."""
        rows = len(next(iter(columns.values()))) if columns else 0
        if rows < MIN_REFERENCE_ROWS:
            return None
        inputs: list[list[Any]] = []
        fill: dict[str, Any] = {}
        for name, values in columns.items():
            absent = _missing(values, missing.get(name), numeric.get(name, True))
            if numeric.get(name, True):
                present = np.asarray(values, dtype=np.float64)[~absent]
                if len(present) and np.ptp(present) > 0:
                    fill[name] = float(np.median(present))
                    inputs.append([name, None])
            else:
                labels, counts = np.unique(np.asarray(values)[~absent].astype(str), return_counts=True)
                if len(labels):
                    order = np.argsort(-counts, kind="stable")
                    fill[name] = str(labels[order[0]])
                    top = [str(labels[i]) for i in order[:MAX_LEVELS] if counts[i] >= MIN_LEVEL_SHARE * rows]
                    inputs += [[name, level] for level in top]
        raw = _raw(inputs, fill, columns, missing, numeric)
        centre, scale = _centre_and_scale(raw, inputs)
        usable = scale > 0
        inputs = [spec for spec, keep in zip(inputs, usable, strict=True) if keep]
        if len(inputs) < 2:
            return None
        encoded = (raw[:, usable] - centre[usable]) / scale[usable]
        mean, vectors, singular = _pca(encoded)
        rank = numerical_rank(singular, encoded.shape)
        if rank < 2:
            return None
        explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-300)
        kept = min(max(int(np.searchsorted(explained, VARIANCE_KEPT) + 1), 1), rank - 1)
        profile = cls(inputs, centre[usable], scale[usable], mean, vectors[:kept], np.zeros(0), fill)
        profile.null_errors = np.sort(_out_of_fold_errors(encoded, kept))
        return profile

    def errors(self, columns: dict[str, Any], missing: dict[str, Any]) -> Any:
        """Each row's reconstruction error: `columns` (name → values, every input's feature present)
        encoded as the reference was, `missing` their masks."""
        numeric = {name: level is None for name, level in self.inputs}
        raw = _raw(self.inputs, self.fill, columns, missing, numeric)
        return _reconstruction_errors((raw - self.centre) / self.scale, self.mean, self.components)

    def header(self) -> dict[str, Any]:
        """What JSON holds (the arrays go to `arrays()`)."""
        return {"inputs": self.inputs, "fill": self.fill}

    def arrays(self) -> dict[str, Any]:
        """The arrays, named for a profile's `.npz`."""
        return {_PREFIX + key: np.asarray(getattr(self, key), dtype=np.float64) for key in _ARRAYS}

    @classmethod
    def load(cls, header: dict[str, Any] | None, npz: Any) -> MultivariateProfile | None:
        """From `header()` and an `.npz` holding `arrays()`; None for profiles saved without them."""
        if header is None or any(_PREFIX + key not in npz.files for key in _ARRAYS):
            return None
        return cls(header["inputs"], **{key: npz[_PREFIX + key] for key in _ARRAYS}, fill=header["fill"])


def fit_reference(sample: Any, signature: dict[str, Any]) -> MultivariateProfile | None:
    """The multivariate profile of a `ReferenceSample`, its columns typed by the version's signature."""
    kinds = {c["name"]: c["kind"] == "numeric" for c in signature["columns"]}
    numeric = {name: kinds.get(name, True) for name in sample.columns}
    return MultivariateProfile.fit(sample.columns, sample.missing, numeric)


def numerical_rank(singular: Any, shape: tuple[int, ...]) -> int:
    """Singular values above round-off (numpy's `matrix_rank` tolerance times `RANK_TOLERANCE`): the
    dimensions the inputs really span. Exactly dependent inputs (one-hot levels summing to 1, a derived
    `total = a + b`) span fewer than their number; components past the rank would leave only round-off
    (~1e-16) to compare, and a verdict on round-off is chance."""
    if not len(singular):
        return 0
    return int(np.sum(singular > singular[0] * max(shape) * np.finfo(np.float64).eps * RANK_TOLERANCE))


def _missing(values: Any, mask: Any | None, numeric: bool) -> Any:
    """Rows to fill: missing, and (numeric) NaN or infinite (an infinity has no place in a PCA)."""
    absent = np.zeros(len(values), bool) if mask is None else np.asarray(mask, dtype=bool)
    if numeric:
        absent = absent | ~np.isfinite(np.asarray(values, dtype=np.float64))
    return absent


def _raw(
    inputs: list[list[Any]],
    fill: dict[str, Any],
    columns: dict[str, Any],
    missing: dict[str, Any],
    numeric: dict[str, bool],
) -> Any:
    """Rows x inputs before centring: numeric values and 0/1 indicators, missing ones filled."""
    rows = len(next(iter(columns.values())))
    raw = np.empty((rows, len(inputs)), order="F")  # filled column by column
    filled: dict[str, Any] = {}
    for name in dict.fromkeys(name for name, _ in inputs):
        is_number = numeric.get(name, True)
        absent = _missing(columns[name], missing.get(name), is_number)
        values = np.asarray(columns[name], dtype=np.float64 if is_number else str)
        filled[name] = np.where(absent, fill[name], values)
    for index, (name, level) in enumerate(inputs):
        raw[:, index] = filled[name] if level is None else filled[name] == level
    return raw


def _centre_and_scale(raw: Any, inputs: list[list[Any]]) -> tuple[Any, Any]:
    """Median and IQR / 1.349 (the std when the IQR is 0) of numeric inputs; share and std of indicators."""
    centre, scale = np.median(raw, axis=0), raw.std(axis=0)
    low, high = np.percentile(raw, [25, 75], axis=0)
    for index, (_, level) in enumerate(inputs):
        if level is not None:
            centre[index] = raw[:, index].mean()
        elif high[index] > low[index]:
            scale[index] = (high[index] - low[index]) / 1.349
    return centre, scale


@functools.cache
def _blas() -> Any:
    """The process's BLAS thread pools. Drift runs them on one thread: the supervisor shares the host
    with the model servers, and OpenBLAS threads on a busy host made a window 5-10x slower (measured
    with 2 cores and load 8: 35 ms instead of 6 ms for 10,000 rows of 20 features)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _pca(encoded: Any) -> tuple[Any, Any, Any]:
    """Mean, principal directions (rows, by falling variance) and singular values of the rows."""
    mean = encoded.mean(axis=0)
    with _blas().limit(limits=1, user_api="blas"):
        _, singular, vectors = np.linalg.svd(encoded - mean, full_matrices=False)
    return mean, vectors, singular


def _reconstruction_errors(encoded: Any, mean: Any, components: Any) -> Any:
    """Squared distance of each row to the subspace: its squared norm less its projection's (the
    components are orthonormal; a contiguous basis keeps the product one fast BLAS call)."""
    centred = encoded - mean
    with _blas().limit(limits=1, user_api="blas"):
        projected = centred @ np.ascontiguousarray(components.T)
    errors = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", projected, projected)
    return np.maximum(errors, 0.0)


def _out_of_fold_errors(encoded: Any, kept: int) -> Any:
    """Each reference row's error under a PCA (of `kept` components) fitted without it, FOLDS folds
    split at random (seeded): the errors of rows the PCA has not seen, for every reference row."""
    fold = np.random.default_rng(_SEED).permutation(len(encoded)) % FOLDS
    errors = np.empty(len(encoded))
    for k in range(FOLDS):
        mean, vectors, _ = _pca(encoded[fold != k])
        errors[fold == k] = _reconstruction_errors(encoded[fold == k], mean, vectors[:kept])
    return errors
