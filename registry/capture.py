"""What registration records about a fitted model: its bytes, types, signature and reference."""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass, field
from typing import Any

from registry import reference as reference_sample
from registry.artifacts import dump_model
from registry.errors import ReferenceMismatch
from registry.signature import (
    check_is_model,
    infer_signature,
    json_params,
    model_feature_names,
    output_spec,
    to_frame,
)


@dataclass
class Captured:
    """A version ready to be stored: artifact bytes plus everything the DB row records."""

    model_bytes: bytes
    trusted_types: list[str]
    estimator_class: str
    params: dict[str, Any]
    python_version: str
    sklearn_version: str
    numpy_version: str
    signature: dict[str, Any]
    output: dict[str, Any]
    reference_bytes: bytes | None = None
    reference_rows: int = 0
    profile_bytes: bytes | None = None
    origin: dict[str, Any] = field(default_factory=dict)


def capture(estimator: Any, reference: Any | None = None, reference_labels: Any | None = None) -> Captured:
    """Serialize `estimator` with skops and describe it; `reference` is a sample of the data the
    model was built on, `reference_labels` its rows' true classes (calibrating estimated performance)."""
    import numpy
    import sklearn

    check_is_model(estimator, "the object to register")
    signature = infer_signature(estimator, reference)
    output = output_spec(estimator)
    reference_bytes, rows, profile_bytes = None, 0, None
    if reference_labels is not None and reference is None:
        raise ReferenceMismatch("reference labels need a reference sample (the rows they label)")
    if reference is not None:
        arrays = reference_arrays(estimator, reference, signature, reference_labels)
        # the profile is fitted on the very arrays stored (an `.npz` gives them back as they were)
        reference_bytes, sample = reference_sample.to_bytes(arrays), reference_sample.from_arrays(arrays)
        rows, profile_bytes = sample.rows, profile_of(sample, signature, output)
    model_bytes, trusted = dump_model(estimator)
    cls = type(estimator)
    return Captured(
        model_bytes=model_bytes,
        trusted_types=trusted,
        estimator_class=f"{cls.__module__}.{cls.__qualname__}",
        params=json_params(estimator),
        python_version=platform.python_version(),
        sklearn_version=sklearn.__version__,
        numpy_version=numpy.__version__,
        signature=signature,
        output=output,
        reference_bytes=reference_bytes,
        reference_rows=rows,
        profile_bytes=profile_bytes,
    )


def profile_of(
    sample: reference_sample.ReferenceSample, signature: dict[str, Any], output: dict[str, Any]
) -> bytes:
    """The drift profile of a reference sample, as stored bytes."""
    from registry.profile import Profile

    return Profile.fit(sample, signature, output).to_bytes()


def reference_arrays(
    estimator: Any, reference: Any, signature: dict[str, Any], labels: Any | None = None
) -> dict[str, Any]:
    """Up to 10,000 rows of `reference` with the model's predictions on them (and, with `labels`,
    their labels and the calibration of the model's probabilities on them), as the arrays to store
    (`registry.reference.arrays_of`)."""
    import numpy as np

    names = [c["name"] for c in signature["columns"]]
    frame = to_frame(reference, names)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(frame):
            raise ReferenceMismatch(
                f"{labels.shape} reference labels for {len(frame)} reference rows: give one label per row"
            )
    picked = reference_sample.sample_positions(len(frame))
    frame = frame.iloc[picked]
    if model_feature_names(estimator) is not None:
        frame = frame[names]
    model_input = frame if model_feature_names(estimator) is not None else frame.to_numpy()
    try:
        predictions = estimator.predict(model_input)
    except Exception as exc:  # whatever the estimator raises on data it cannot take
        text_columns = [c["name"] for c in signature["columns"] if c["kind"] == "categorical"]
        hint = f" (non-numeric columns in the sample: {text_columns})" if text_columns else ""
        raise ReferenceMismatch(f"the model cannot predict on its reference sample: {exc}{hint}") from exc
    extra = {}
    if labels is not None:
        labels = labels[picked]
        extra = calibration_arrays(estimator, model_input, labels)
    return reference_sample.arrays_of(frame, signature, predictions, labels, extra)


def calibration_arrays(estimator: Any, model_input: Any, labels: Any) -> dict[str, Any]:
    """The calibration of the classifier's probabilities on its labelled reference, as arrays to store
    with it ({} for a model without `predict_proba`)."""
    from registry.calibration import MIN_LABELLED, Calibration, CalibrationWarning

    if getattr(estimator, "classes_", None) is None:
        raise ReferenceMismatch("reference labels are for classifiers: this model has no classes")
    if len(labels) < MIN_LABELLED:
        raise ReferenceMismatch(
            f"{len(labels)} labelled reference rows; calibrating the estimated performance needs at least "
            f"{MIN_LABELLED} (without labels, the model's raw probabilities are used)"
        )
    if not callable(getattr(estimator, "predict_proba", None)):
        return {}
    try:
        calibration = Calibration.fit(estimator.predict_proba(model_input), labels, estimator.classes_)
    except ValueError as exc:  # labels that are not the model's classes
        raise ReferenceMismatch(str(exc)) from exc
    if calibration.reference_accuracy == 1.0:
        warnings.warn(
            f"the model is right on all {len(labels):,} labelled reference rows: if it was trained on them, "
            "its estimated performance will read too high; give labelled rows it was not trained on",
            CalibrationWarning,
            stacklevel=5,  # the caller of Registry.register
        )
    return calibration.to_arrays()
