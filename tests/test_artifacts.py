"""Artifacts on disk: content-addressed and atomic, checked on every read, loaded only with the
types trusted at registration; and the model files users bring (skops, pickle, joblib, MLflow)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io as sio
from helpers import hostile_skops, lose_artifact
from sqlmodel import select

from registry import ArtifactError, NotAModel, PickleRefused, Registry
from registry.artifacts import ArtifactStore, dump_model, sha256_of, types_needing_trust
from registry.schema import ModelVersion


def double(x):
    """A custom function: skops records it by module and name, and never trusts it by default."""
    return x * 2


def _custom_pipeline(X, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(double), LogisticRegression(max_iter=1000)).fit(X, y)


DOUBLE = f"{double.__module__}.double"


def _set_trusted_types(registry: Registry, version: int, types: list[str]) -> None:
    with registry.db.write() as session:
        row = session.exec(select(ModelVersion).where(ModelVersion.version == version)).one()
        row.trusted_types = types
        session.add(row)


# ---------------------------------------------------------------------- the store
def test_put_is_idempotent_and_leaves_no_temporary_files(tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put(b"model bytes")
    assert digest == sha256_of(b"model bytes")
    assert store.put(b"model bytes") == digest
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files == [store.path_of(digest)]
    assert store.path_of(digest).read_bytes() == b"model bytes"
    assert store.get(digest, "x") == b"model bytes"

    store.discard(digest)
    store.discard(digest)  # gone already: fine
    assert not store.path_of(digest).exists()


def test_a_failed_write_leaves_neither_the_blob_nor_a_temporary_file(tmp_path: Path, monkeypatch):
    store = ArtifactStore(tmp_path / "artifacts")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.put(b"half written")
    monkeypatch.undo()
    assert not [p for p in store.root.rglob("*") if p.is_file()]
    digest = store.put(b"half written")  # and a retry works
    assert store.get(digest, "x") == b"half written"


def test_put_replaces_a_truncated_blob(tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    digest = store.put(b"complete bytes")
    store.path_of(digest).write_bytes(b"compl")  # e.g. a crash of an older, non-atomic writer
    store.put(b"complete bytes")
    assert store.get(digest, "x") == b"complete bytes"


# ---------------------------------------------------------------------- reads are checked
def test_a_model_changed_on_disk_is_refused_before_it_is_loaded(registry: Registry, iris_model, array_model):
    info = registry.register(iris_model, "iris")
    other = registry.register(array_model[0], "ridge")
    # Swap in another *valid* model's bytes: without the checksum this would load and predict.
    path = registry.artifacts.path_of(info.artifact_sha256)
    path.write_bytes(registry.artifacts.path_of(other.artifact_sha256).read_bytes())

    with pytest.raises(ArtifactError, match="artifact of model 'iris' version 1 was changed on disk"):
        registry.load("iris:1")
    with pytest.raises(ArtifactError, match="changed on disk"):
        registry.export("iris:1", registry.settings.home / "iris.zip")
    assert not (registry.settings.home / "iris.zip").exists()
    assert registry.load("ridge").predict(array_model[1][:2]).shape == (2,)


def test_a_flipped_byte_in_a_model_is_refused(registry: Registry, iris_model):
    info = registry.register(iris_model, "iris")
    path = registry.artifacts.path_of(info.artifact_sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"registered {info.artifact_sha256[:12]}"):
        registry.load("iris")


def test_a_reference_sample_changed_on_disk_is_refused(registry: Registry, iris, iris_model):
    X, _ = iris
    info = registry.register(iris_model, "iris", reference=X)
    other = registry.register(iris_model, "iris", reference=X.iloc[:10])
    path = registry.artifacts.path_of(info.reference_sha256)
    path.write_bytes(registry.artifacts.path_of(other.reference_sha256).read_bytes())

    with pytest.raises(ArtifactError, match="reference sample of iris:1 was changed on disk"):
        registry.reference("iris:1")
    assert registry.reference("iris:2").rows == 10


def test_a_missing_artifact_file_is_a_clear_error(registry: Registry, iris, iris_model):
    X, _ = iris
    info = registry.register(iris_model, "iris", reference=X)
    lose_artifact(registry, info.artifact_sha256)
    lose_artifact(registry, info.reference_sha256)
    with pytest.raises(
        ArtifactError, match=r"artifact of model 'iris' version 1 is missing: .*" + info.artifact_sha256
    ):
        registry.load("iris")
    with pytest.raises(ArtifactError, match="reference sample of iris:1 is missing"):
        registry.reference("iris")


# ---------------------------------------------------------------------- trusted types
def test_a_model_needing_types_not_recorded_at_registration_is_refused(registry: Registry, iris):
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    assert dump_model(model)[1] == ["sklearn.tree._tree.Tree"]
    info = registry.register(model, "tree")
    assert info.trusted_types == ["sklearn.tree._tree.Tree"]
    assert (registry.load("tree").predict(X) == model.predict(X)).all()

    _set_trusted_types(registry, 1, [])
    with pytest.raises(
        ArtifactError, match=r"contains types not trusted at registration: sklearn\.tree\._tree\.Tree"
    ):
        registry.load("tree")


def test_a_model_with_a_custom_function_records_it_and_loads(registry: Registry, iris):
    X, y = iris
    model = _custom_pipeline(X, y)
    info = registry.register(model, "custom")
    assert DOUBLE in info.trusted_types
    assert (registry.load("custom").predict(X) == model.predict(X)).all()

    _set_trusted_types(registry, 1, [t for t in info.trusted_types if t != DOUBLE])
    with pytest.raises(ArtifactError, match=f"not trusted at registration: {DOUBLE}"):
        registry.load("custom")


def test_only_scikit_learn_classes_are_trusted_without_asking():
    assert types_needing_trust(["sklearn.tree._tree.Tree", "sklearn.neighbors._kd_tree.KDTree"]) == []
    risky = [
        "numpy.memmap",  # a class, but one that can create or truncate files
        "scipy.io.netcdf_file",
        "builtins.eval",  # a function skops would call with arguments from the file
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "numpy.clip",
        "sklearn.no_such_module.Thing",
        "os.system",
        "sklearn_evil.Model",
        DOUBLE,
    ]
    assert types_needing_trust(risky) == risky
    assert types_needing_trust(risky, extra_trusted=["numpy.clip", DOUBLE]) == [
        t for t in risky if t not in {"numpy.clip", DOUBLE}
    ]


# ---------------------------------------------------------------------- register_file
@pytest.fixture
def iris_files(tmp_path: Path, iris_model) -> dict[str, Path]:
    files = {
        "skops": tmp_path / "iris.skops",
        "pkl": tmp_path / "iris.pkl",
        "joblib": tmp_path / "iris.joblib",
        "sniffed": tmp_path / "iris.bin",  # a pickle by its content, whatever the suffix
    }
    sio.dump(iris_model, files["skops"])
    files["pkl"].write_bytes(pickle.dumps(iris_model))
    joblib.dump(iris_model, files["joblib"])
    files["sniffed"].write_bytes(pickle.dumps(iris_model, protocol=4))
    return files


def _mlflow_dir(path: Path, model, pickled: str = "model.pkl", **flavor) -> Path:
    path.mkdir()
    sklearn_flavor = {
        "pickled_model": pickled,
        "serialization_format": "cloudpickle",
        "sklearn_version": "1.9.1",
    }
    spec = {
        "artifact_path": "model",
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.sklearn",
                "model_path": pickled,
                "python_version": "3.11",
            },
            "sklearn": sklearn_flavor | flavor,
        },
        "mlflow_version": "2.14.0",
    }
    import yaml

    (path / "MLmodel").write_text(yaml.safe_dump(spec))
    if model is not None:
        (path / pickled).write_bytes(pickle.dumps(model))
    return path


def test_a_skops_file_registers(registry: Registry, iris, iris_model, iris_files):
    X, _ = iris
    info = registry.register_file(iris_files["skops"], "iris", reference=X, tags={"from": "file"})
    assert info.version == 1 and info.tags == {"from": "file"}
    assert info.source == str(iris_files["skops"].resolve())
    assert info.reference_rows == 150
    assert (registry.load("iris").predict(X) == iris_model.predict(X)).all()


def test_a_skops_pipeline_with_sklearn_internal_types_needs_no_trust_flag(registry: Registry, iris, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    sio.dump(model, tmp_path / "forest.skops")
    registry.register_file(tmp_path / "forest.skops", "forest")
    assert (registry.load("forest").predict(X) == model.predict(X)).all()


@pytest.mark.parametrize("kind", ["pkl", "joblib", "sniffed"])
def test_pickles_are_refused_unless_trusted_then_stored_as_skops(
    registry: Registry, iris, iris_model, iris_files, kind, monkeypatch
):
    X, _ = iris
    with pytest.raises(
        PickleRefused, match=r"is a pickle: loading it runs any code it contains.*trust_pickle=True"
    ):
        registry.register_file(iris_files[kind], "iris")
    assert registry.list_models() == []

    info = registry.register_file(iris_files[kind], "iris", trust_pickle=True)
    with registry.db.read() as session:
        assert session.exec(select(ModelVersion.artifact_format)).one() == "skops"
    stored = registry.artifacts.path_of(info.artifact_sha256).read_bytes()
    assert stored[:4] == b"PK\x03\x04" and sio.get_untrusted_types(data=stored) == []

    def no_pickle(*args, **kwargs):
        raise AssertionError("the registry unpickled a stored model")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    monkeypatch.setattr(joblib, "load", no_pickle)
    assert (registry.load("iris").predict(X) == iris_model.predict(X)).all()


def test_a_pickle_of_something_that_is_not_a_model_is_refused_even_when_trusted(registry: Registry, tmp_path):
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"coef": [1.0, 2.0]}))
    with pytest.raises(NotAModel, match=r"weights.pkl is not a scikit-learn model \(a dict\)"):
        registry.register_file(path, "iris", trust_pickle=True)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(np.arange(3))[:-5])
    with pytest.raises(NotAModel, match="could not be unpickled"):
        registry.register_file(broken, "iris", trust_pickle=True)
    assert registry.list_models() == []


def test_an_mlflow_model_directory_needs_trust_pickle(registry: Registry, iris, iris_model, tmp_path):
    X, _ = iris
    directory = _mlflow_dir(tmp_path / "mlflow-model", iris_model)
    with pytest.raises(PickleRefused, match="pass trust_pickle=True"):
        registry.register_file(directory, "iris")
    assert registry.list_models() == []

    info = registry.register_file(directory, "iris", trust_pickle=True, reference=X)
    assert info.estimator_class == "sklearn.linear_model._logistic.LogisticRegression"
    assert (registry.load("iris").predict(X) == iris_model.predict(X)).all()


def test_broken_mlflow_directories_are_refused_with_the_reason(registry: Registry, iris_model, tmp_path):
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps(iris_model))
    cases = {
        "no sklearn flavor": (
            _mlflow_dir(tmp_path / "a", None, pickled="model.pkl"),
            "an MLflow model without the sklearn flavor",
        ),
        "escapes": (
            _mlflow_dir(tmp_path / "b", None, pickled="../outside.pkl"),
            "names a model file that is not in the directory",
        ),
        "missing file": (
            _mlflow_dir(tmp_path / "c", None, pickled="model.pkl"),
            "names a model file that is not in the directory: model.pkl",
        ),
        "other format": (
            _mlflow_dir(tmp_path / "d", iris_model, serialization_format="onnx"),
            "unsupported MLflow serialization 'onnx'",
        ),
    }
    spec = (tmp_path / "a" / "MLmodel").read_text().replace("sklearn:", "xgboost:")
    (tmp_path / "a" / "MLmodel").write_text(spec)
    (tmp_path / "bad-yaml").mkdir()
    (tmp_path / "bad-yaml" / "MLmodel").write_text("flavors: [unclosed\n")
    cases["bad yaml"] = (tmp_path / "bad-yaml", "is not valid YAML")

    for directory, message in cases.values():
        with pytest.raises(NotAModel, match=message):
            registry.register_file(directory, "iris", trust_pickle=True)
    assert registry.list_models() == []


def test_files_that_are_not_models_are_refused_clearly(registry: Registry, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(7, 256)) * 4)
    empty_dir = tmp_path / "just-a-directory"
    empty_dir.mkdir()
    (empty_dir / "model.pkl").write_bytes(b"irrelevant")

    expected = "is not a model file: expected a .skops file, a pickle/joblib file"
    for path, message in [
        (text, expected),
        (noise, expected),
        (empty_dir, "is a directory but not an MLflow model \\(no MLmodel file\\)"),
        (tmp_path / "missing.skops", "no such file or directory"),
    ]:
        with pytest.raises(NotAModel, match=message):
            registry.register_file(path, "iris", trust_pickle=True)
    assert registry.list_models() == []


def test_a_corrupt_or_non_model_skops_file_is_refused(registry: Registry, tmp_path):
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"\x00not a zip at all")
    with pytest.raises(ArtifactError, match="not a readable skops file"):
        registry.register_file(garbage, "iris")
    settings = tmp_path / "settings.skops"
    sio.dump({"alpha": 1.0}, settings)
    with pytest.raises(NotAModel, match=r"is not a scikit-learn model \(a dict\)"):
        registry.register_file(settings, "iris")
    assert registry.list_models() == []


def test_a_skops_file_with_a_custom_type_needs_trust_types(registry: Registry, iris, tmp_path):
    X, y = iris
    model = _custom_pipeline(X, y)
    path = tmp_path / "custom.skops"
    sio.dump(model, path)

    with pytest.raises(
        ArtifactError, match=f"needs types that are not scikit-learn classes: {DOUBLE}.*--trust-type"
    ):
        registry.register_file(path, "custom")
    assert registry.list_models() == []

    info = registry.register_file(path, "custom", trust_types=[DOUBLE])
    assert DOUBLE in info.trusted_types
    assert (registry.load("custom").predict(X) == model.predict(X)).all()


def test_a_skops_file_that_runs_code_while_loading_is_refused(registry: Registry, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "innocent.skops"
    path.write_bytes(hostile_skops(marker))
    assert sio.get_untrusted_types(file=path) == ["builtins.eval"]

    with pytest.raises(ArtifactError, match=r"builtins\.eval"):
        registry.register_file(path, "innocent")
    assert not marker.exists()
    assert registry.list_models() == []


def test_put_repairs_a_damaged_copy_of_the_same_size(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    digest = store.put(b"model bytes")
    store.path_of(digest).write_bytes(b"MODEL BYTES")  # same size, different content
    assert store.put(b"model bytes") == digest
    assert store.get(digest, "model 'm' version 1") == b"model bytes"


def test_deleting_a_version_keeps_a_blob_that_a_new_version_shares(registry: Registry, iris_model):
    from registry.capture import capture

    captured = capture(iris_model)
    first = registry.add_version(captured, "iris")
    assert registry.add_version(captured, "copy").artifact_sha256 == first.artifact_sha256
    registry.delete("iris:1")
    assert registry.artifacts.path_of(first.artifact_sha256).exists()
    registry.load("copy:1")
