"""Reading models from files users bring: skops, and (opt-in) pickle, joblib and MLflow directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.artifacts import types_needing_trust, untrusted_message, untrusted_types_of
from registry.errors import ArtifactError, NotAModel, PickleRefused
from registry.signature import check_is_model
from registry.unpacking import check_zip

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".jbl"}
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


def read_model_file(path: Path, trust_pickle: bool = False, trust_types: tuple[str, ...] = ()) -> Any:
    """The fitted estimator in `path`; pickles are loaded only when `trust_pickle` is set."""
    if not path.exists():
        raise NotAModel(f"no such file or directory: {path}")
    if path.is_dir():
        estimator = _read_mlflow_dir(path, trust_pickle)
    else:
        if path.stat().st_size == 0:
            kind = "a .skops model" if path.suffix == ".skops" else "a model file"
            raise NotAModel(f"{path} is empty (0 bytes), not {kind}")
        with path.open("rb") as handle:
            head = handle.read(4)
        if path.suffix == ".skops" or head == _ZIP_MAGIC:
            estimator = _read_skops(path, trust_types)
        elif path.suffix in PICKLE_SUFFIXES or head[:1] == _PICKLE_MAGIC:
            estimator = _read_pickle(path, trust_pickle)
        else:
            raise NotAModel(
                f"{path} is not a model file: expected a .skops file, a pickle/joblib file "
                "(with trust_pickle=True / --trust-pickle) or an MLflow model directory"
            )
    check_is_model(estimator, str(path))
    return estimator


def _read_skops(path: Path, trust_types: tuple[str, ...]) -> Any:
    import skops.io as sio

    check_zip(path, str(path))
    data = path.read_bytes()
    types = untrusted_types_of(data)
    unknown = types_needing_trust(types, trust_types)
    if unknown:
        raise ArtifactError(untrusted_message(path, unknown))
    try:
        return sio.loads(data, trusted=types)
    except Exception as exc:
        raise NotAModel(f"{path} is not a loadable skops model: {exc}") from exc


def _read_pickle(path: Path, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise PickleRefused(path)
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:
        raise NotAModel(f"{path} could not be unpickled: {exc}") from exc


def _read_mlflow_dir(path: Path, trust_pickle: bool) -> Any:
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise NotAModel(f"{path} is a directory but not an MLflow model (no MLmodel file)")
    import yaml

    try:
        spec = yaml.safe_load(mlmodel.read_text()) or {}
    except yaml.YAMLError as exc:
        raise NotAModel(f"{mlmodel} is not valid YAML: {exc}") from exc
    flavor = (spec.get("flavors") or {}).get("sklearn")
    if not flavor:
        raise NotAModel(f"{path} is an MLflow model without the sklearn flavor")
    if flavor.get("serialization_format", "cloudpickle") not in {"cloudpickle", "pickle"}:
        raise NotAModel(f"{path}: unsupported MLflow serialization {flavor['serialization_format']!r}")
    pickled = path / str(flavor.get("pickled_model", "model.pkl"))
    if not pickled.resolve().is_relative_to(path.resolve()) or not pickled.is_file():
        raise NotAModel(f"{path}: MLmodel names a model file that is not in the directory: {pickled.name}")
    return _read_pickle(pickled, trust_pickle)
