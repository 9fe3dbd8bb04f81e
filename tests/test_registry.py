"""The Registry as a user scripts it: versions, references, aliases, tags, archive, delete,
what registration records (signature, reference sample, metadata) and the errors for bad input."""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from helpers import lose_artifact
from sqlmodel import select

from registry import (
    InvalidName,
    InvalidReference,
    ModelNotFound,
    NotAModel,
    ReferenceMismatch,
    Registry,
    SklearnVersionWarning,
    VersionInUse,
    VersionNotFound,
)
from registry.capture import capture
from registry.refs import Ref, parse_ref
from registry.schema import Deployment, ModelVersion, RegisteredModel


def _row(registry: Registry, name: str, version: int) -> ModelVersion:
    with registry.db.read() as session:
        return session.exec(
            select(ModelVersion)
            .join(RegisteredModel, RegisteredModel.id == ModelVersion.model_id)
            .where(RegisteredModel.name == name, ModelVersion.version == version)
        ).one()


def _numbers(registry: Registry, name: str, include_archived: bool = False) -> list[int]:
    return [v.version for v in registry.versions(name, include_archived=include_archived)]


def _mixed_frame(rows: int = 80) -> tuple[pd.DataFrame, pd.Series]:
    """A frame with a string column (one value missing), a numeric column and one with NaNs."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], rows),
            "size": rng.normal(size=rows),
            "weight": rng.normal(size=rows),
        }
    )
    frame.loc[[3, 7], "weight"] = np.nan
    frame.loc[5, "color"] = None
    return frame, (frame["size"] > 0).astype(int)


@pytest.fixture(scope="module")
def mixed():
    """(frame, Pipeline(ColumnTransformer(OneHotEncoder, imputed StandardScaler), LogisticRegression))."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, y = _mixed_frame()
    columns = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
            ("scale", make_pipeline(SimpleImputer(), StandardScaler()), ["size", "weight"]),
        ]
    )
    return frame, make_pipeline(columns, LogisticRegression()).fit(frame, y)


# ---------------------------------------------------------------------- versions and references
def test_versions_are_numbered_from_one_and_references_resolve(registry: Registry, iris_model):
    assert [registry.register(iris_model, "iris").version for _ in range(3)] == [1, 2, 3]
    registry.set_alias("iris", "champion", 2)

    assert registry.get("iris").version == 3
    assert registry.get("iris@latest").version == 3
    assert registry.get("iris:1").version == 1
    assert registry.get("iris@champion").version == 2
    assert registry.get(" iris:2 ").version == 2
    assert _numbers(registry, "iris") == [1, 2, 3]
    [model] = registry.list_models()
    assert (model.name, model.versions, model.latest_version) == ("iris", 3, 3)
    assert model.aliases == {"champion": 2}

    other = registry.register(iris_model, "wine", alias=["champion", "staging"])
    assert (other.version, other.aliases) == (1, ["champion", "staging"]), "each model counts from 1"
    assert registry.get("wine@staging").version == 1
    assert registry.get("iris@champion").version == 2, "aliases belong to one model"
    assert [m.name for m in registry.list_models()] == ["iris", "wine"]


def test_references_parse_to_a_name_and_a_version_or_an_alias():
    assert parse_ref("iris") == Ref("iris")
    assert parse_ref("iris@latest") == Ref("iris")
    assert parse_ref("iris:12") == Ref("iris", version=12)
    assert parse_ref("iris@champion") == Ref("iris", alias="champion")
    assert [str(parse_ref(r)) for r in ["iris", "iris:3", "iris@champion"]] == [
        "iris",
        "iris:3",
        "iris@champion",
    ]


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        (
            "iris:0",
            InvalidReference,
            "bad reference 'iris:0': the version after ':' must be a number from 1 up",
        ),
        ("iris:x", InvalidReference, "bad reference 'iris:x'"),
        ("iris:-1", InvalidReference, "bad reference 'iris:-1'"),
        ("iris:", InvalidReference, "bad reference 'iris:'"),
        ("iris:1:2", InvalidReference, "bad reference 'iris:1:2'"),
        ("iris:\u00b2", InvalidReference, "bad reference"),  # a digit to str.isdigit, not to int()
        ("a b", InvalidName, "bad model name 'a b'"),
        ("", InvalidName, "bad model name ''"),
        (":3", InvalidName, "bad model name ''"),
        ("iris@", InvalidName, "bad alias ''"),
        ("iris@2x", InvalidName, "bad alias '2x'"),
    ],
)
def test_bad_reference_strings_are_refused_with_a_clear_message(ref, error, message):
    with pytest.raises(error, match=message):
        parse_ref(ref)


def test_lookups_refuse_bad_references(registry: Registry, iris_model):
    registry.register(iris_model, "iris")
    with pytest.raises(InvalidReference, match="bad reference 'iris:0'"):
        registry.get("iris:0")
    with pytest.raises(InvalidReference, match="bad reference 'iris:x'"):
        registry.load("iris:x")
    with pytest.raises(InvalidName, match="bad model name 'a b'"):
        registry.get("a b")
    with pytest.raises(InvalidReference):
        registry.set_alias("iris", "champion", "\u00b2")
    assert registry.get("iris:1").aliases == []


# ---------------------------------------------------------------------- aliases
def test_latest_and_malformed_aliases_are_refused(registry: Registry, iris_model):
    with pytest.raises(InvalidName, match="'latest' is reserved: it always means the newest version"):
        registry.register(iris_model, "iris", alias="latest")
    assert registry.list_models() == [], "refused before anything was stored"

    registry.register(iris_model, "iris")
    with pytest.raises(InvalidName, match="'latest' is reserved"):
        registry.set_alias("iris", "latest", 1)
    for alias in ["1st", "bad alias", "", "x" * 65]:
        with pytest.raises(InvalidName, match="bad alias"):
            registry.set_alias("iris", alias, 1)
    assert registry.get("iris:1").aliases == []


def test_moving_an_alias_leaves_it_on_one_version_and_records_the_move(registry: Registry, iris_model):
    registry.register(iris_model, "iris", alias="champion")
    registry.register(iris_model, "iris")
    moved = registry.set_alias("iris", "champion", 2, reason="better recall")

    assert (moved.version, moved.aliases) == (2, ["champion"])
    assert {v.version: v.aliases for v in registry.versions("iris")} == {1: [], 2: ["champion"]}
    assert registry.get("iris@champion").version == 2
    last = registry.history("iris").events[-1]
    assert (last.kind, last.alias, last.from_version, last.to_version) == ("alias_set", "champion", 1, 2)
    assert last.reason == "better recall"
    assert "@" in last.actor

    registry.set_alias("iris", "staging", 1)
    assert registry.set_alias("iris", "champion", "staging").version == 1, "another alias as the target"

    events = len(registry.history("iris").events)
    with pytest.raises(VersionNotFound, match="no version 7"):
        registry.set_alias("iris", "champion", 7)
    assert registry.get("iris@champion").version == 1, "a failed move leaves the alias where it was"
    assert len(registry.history("iris").events) == events


def test_the_ledger_names_who_changed_it_as_they_are_named_then(
    registry: Registry, iris_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`user@host`: the login name of the moment (kept per login variables, never stale), else the
    account's name."""
    import os
    import pwd

    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELDECK_HOST_NAME", "bench-7")
    registry.register(iris_model, "iris")
    monkeypatch.setenv("USER", "ana")
    registry.set_alias("iris", "champion", 1)
    monkeypatch.setenv("LOGNAME", "ben")
    registry.set_alias("iris", "champion", 1)
    actors = [event.actor for event in registry.history("iris").events]
    assert actors == [f"{pwd.getpwuid(os.getuid()).pw_name}@bench-7", "ana@bench-7", "ben@bench-7"]


def test_remove_alias(registry: Registry, iris_model):
    registry.register(iris_model, "iris", alias=["champion", "staging"])
    registry.remove_alias("iris", "champion", reason="retired")

    with pytest.raises(VersionNotFound, match="no alias 'champion'; its aliases: staging"):
        registry.get("iris@champion")
    assert registry.get("iris:1").aliases == ["staging"]
    last = registry.history("iris").events[-1]
    assert (last.kind, last.alias, last.from_version, last.reason) == (
        "alias_removed",
        "champion",
        1,
        "retired",
    )
    with pytest.raises(VersionNotFound, match="no alias 'champion'"):
        registry.remove_alias("iris", "champion")


# ---------------------------------------------------------------------- archive and delete
def test_archive_hides_a_version_until_restored(registry: Registry, iris_model):
    for _ in range(3):
        registry.register(iris_model, "iris")
    archived = registry.archive("iris:3", reason="bad data")
    events = len(registry.history("iris").events)
    assert registry.archive("iris:3").archived, "archiving again changes nothing"
    assert len(registry.history("iris").events) == events
    with pytest.raises(VersionNotFound, match=r"say which version to archive, e\.g\. iris:3"):
        registry.archive("iris")

    assert archived.archived
    assert _numbers(registry, "iris") == [1, 2]
    assert _numbers(registry, "iris", include_archived=True) == [1, 2, 3]
    assert registry.get("iris").version == 2, "an archived version is not the latest"
    assert registry.get("iris@latest").version == 2
    assert registry.get("iris:3").archived
    [model] = registry.list_models()
    assert (model.versions, model.latest_version) == (2, 2)
    assert registry.list_models(include_archived=True)[0].versions == 3
    with pytest.raises(VersionInUse, match="archived"):
        registry.set_alias("iris", "champion", 3)

    restored = registry.archive("iris:3", restore=True)
    assert not restored.archived
    assert registry.get("iris").version == 3
    assert _numbers(registry, "iris") == [1, 2, 3]
    assert [e.kind for e in registry.history("iris").events][-2:] == ["archived", "restored"]

    registry.set_alias("iris", "champion", 1)
    with pytest.raises(VersionInUse, match="cannot archive iris:1: held by alias 'champion'"):
        registry.archive("iris:1")
    assert not registry.get("iris:1").archived


def test_delete_refuses_a_version_an_alias_holds(registry: Registry, iris_model):
    registry.register(iris_model, "iris", alias=["champion", "staging"])
    with pytest.raises(VersionInUse, match="cannot delete iris:1: held by alias 'champion', alias 'staging'"):
        registry.delete("iris:1")
    with pytest.raises(VersionNotFound, match=r"delete takes NAME:VERSION .*e\.g\. iris:3"):
        registry.delete("iris")
    with pytest.raises(VersionNotFound, match="delete takes NAME:VERSION"):
        registry.delete("iris@champion")
    assert registry.get("iris:1").version == 1


def test_delete_refuses_a_version_a_deployment_serves_or_keeps_as_standby(registry: Registry, iris_model):
    for _ in range(3):
        registry.register(iris_model, "iris")
    v1, v2 = _row(registry, "iris", 1), _row(registry, "iris", 2)
    with registry.db.write() as session:
        session.add(
            Deployment(name="iris-prod", model_id=v1.model_id, version_id=v2.id, standby_version_id=v1.id)
        )

    for ref in ["iris:1", "iris:2"]:
        with pytest.raises(VersionInUse, match=f"cannot delete {ref}: held by deployment 'iris-prod'"):
            registry.delete(ref)
        with pytest.raises(VersionInUse, match="deployment 'iris-prod'"):
            registry.archive(ref)
    assert _numbers(registry, "iris") == [1, 2, 3]
    registry.delete("iris:3")
    assert _numbers(registry, "iris") == [1, 2]


def test_delete_removes_the_version_and_its_number_is_never_reused(registry: Registry, iris, iris_model):
    X, _ = iris
    registry.register(iris_model, "iris")
    doomed = registry.register(iris_model, "iris", reference=X, tags={"k": "v"})
    registry.delete("iris:2", reason="leaked labels")

    with pytest.raises(VersionNotFound, match="no version 2; its versions: 1"):
        registry.get("iris:2")
    assert _numbers(registry, "iris", include_archived=True) == [1]
    assert not registry.artifacts.path_of(doomed.artifact_sha256).exists()
    assert not registry.artifacts.path_of(doomed.reference_sha256).exists()
    assert registry.register(iris_model, "iris").version == 3
    deleted = [e for e in registry.history("iris").events if e.kind == "deleted"]
    assert [(e.from_version, e.reason) for e in deleted] == [(2, "leaked labels")]

    registry.archive("iris:1")
    registry.delete("iris:1")  # an archived version can be deleted too
    assert _numbers(registry, "iris", include_archived=True) == [3]


def test_delete_keeps_an_artifact_file_another_version_still_uses(registry: Registry, iris, iris_model):
    X, _ = iris
    shared = capture(iris_model, X)  # the same bytes stored twice: one file, two versions
    first = registry.add_version(shared, "iris")
    second = registry.add_version(shared, "iris")
    assert first.artifact_sha256 == second.artifact_sha256

    registry.delete("iris:1")
    assert registry.artifacts.path_of(second.artifact_sha256).exists()
    assert registry.artifacts.path_of(second.reference_sha256).exists()
    assert (registry.load("iris:2").predict(X) == iris_model.predict(X)).all()
    assert registry.reference("iris:2").rows == len(X)

    registry.delete("iris:2")
    assert not registry.artifacts.path_of(second.artifact_sha256).exists()
    assert not registry.artifacts.path_of(second.reference_sha256).exists()


# ---------------------------------------------------------------------- tags and metadata
def test_tags_on_a_model_and_on_a_version(registry: Registry, iris_model):
    registry.register(iris_model, "iris", tags={"data": "2024-q1"})
    registry.register(iris_model, "iris", alias="champion")
    registry.tag("iris", {"team": "fraud", "tier": 1})
    registry.tag("iris:2", {"reviewed": "yes"})
    registry.tag("iris@champion", {"approved_by": "ana"})

    assert registry.list_models()[0].tags == {"team": "fraud", "tier": "1"}
    assert registry.get("iris:1").tags == {"data": "2024-q1"}
    assert registry.get("iris:2").tags == {"reviewed": "yes", "approved_by": "ana"}
    assert {v.version: v.tags for v in registry.versions("iris")}[2] == {
        "reviewed": "yes",
        "approved_by": "ana",
    }

    registry.tag("iris", {"tier": "2"}, remove=["team"])
    registry.tag("iris:2", {}, remove=["reviewed", "never-set"])
    assert registry.list_models()[0].tags == {"tier": "2"}
    assert registry.get("iris:2").tags == {"approved_by": "ana"}
    assert registry.get("iris:1").tags == {"data": "2024-q1"}
    assert registry.history("iris").events[-1].kind == "tagged"


def test_bad_tag_keys_are_refused_and_nothing_is_half_written(registry: Registry, iris_model):
    registry.register(iris_model, "iris")
    for key in ["", "a=b", "x" * 129, "tab\there"]:
        with pytest.raises(InvalidName, match="bad tag key"):
            registry.tag("iris:1", {"good": "yes", key: "v"})
        with pytest.raises(InvalidName, match="bad tag key"):
            registry.register(iris_model, "iris", tags={key: "v"})
    assert registry.get("iris:1").tags == {}
    assert _numbers(registry, "iris") == [1]
    assert registry.register(iris_model, "iris").version == 2, "refused registrations used no number"


def test_a_metric_that_is_not_a_finite_number_is_refused_by_name(registry: Registry, iris_model):
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InvalidName, match=r"metric 'auc' is .*: a metric must be a finite number"):
            registry.register(iris_model, "iris", metrics={"accuracy": 0.9, "auc": value})
    assert registry.list_models() == []
    assert registry.register(iris_model, "iris", metrics={"auc": 0.5}).version == 1


def test_registration_records_what_the_model_is_and_was_built_with(registry: Registry, iris_model):
    info = registry.register(
        iris_model,
        "iris",
        description="baseline",
        metrics={"accuracy": 0.97, "f1": np.float32(0.5)},
        source="notebooks/train.ipynb",
    )
    for seen in (info, registry.get("iris:1")):
        assert seen.estimator_class == "sklearn.linear_model._logistic.LogisticRegression"
        assert seen.params["max_iter"] == 1000 and seen.params["C"] == 1.0
        assert seen.metrics == {"accuracy": 0.97, "f1": 0.5}
        assert seen.description == "baseline"
        assert seen.source == "notebooks/train.ipynb"
        assert seen.sklearn_version == sklearn.__version__
        assert seen.numpy_version == np.__version__
        assert seen.python_version == platform.python_version()
        assert "@" in seen.created_by
        assert seen.created_at.tzinfo is not None
    assert info.artifact_size == registry.artifacts.path_of(info.artifact_sha256).stat().st_size
    assert info.reference_sha256 is None and registry.reference("iris") is None
    assert registry.versions("iris")[0].metrics == {"accuracy": 0.97, "f1": 0.5}

    assert registry.register(iris_model, "iris", parent=1).parent_version == 1
    with pytest.raises(VersionNotFound, match="parent version 5"):
        registry.register(iris_model, "iris", parent=5)
    registry.register(iris_model, "iris")
    registry.delete("iris:3")
    for gone in (3, 0, -7):  # deleted, and never possible
        with pytest.raises(VersionNotFound, match=f"parent version {gone} of 'iris' does not exist"):
            registry.register(iris_model, "iris", parent=gone)
    assert _numbers(registry, "iris") == [1, 2]
    registry.describe("iris", "flower classifier")
    assert registry.list_models()[0].description == "flower classifier"


# ---------------------------------------------------------------------- signatures
def test_signature_of_a_frame_with_categorical_and_missing_values(registry: Registry, mixed):
    frame, model = mixed
    info = registry.register(model, "mixed", reference=frame)
    assert info.signature["named"] is True
    columns = {c["name"]: c for c in registry.get("mixed").signature["columns"]}
    assert list(columns) == ["color", "size", "weight"]
    assert (columns["color"]["kind"], columns["color"]["nullable"]) == ("categorical", True)
    assert columns["size"] == {"name": "size", "dtype": "float64", "kind": "numeric", "nullable": False}
    assert columns["weight"] == {"name": "weight", "dtype": "float64", "kind": "numeric", "nullable": True}


def test_signature_of_numbers_held_as_strings_and_of_reordered_columns(registry: Registry, iris, iris_model):
    X, _ = iris
    as_objects = X.astype(object)
    as_objects.iloc[0, 0] = "5.1"
    info = registry.register(iris_model, "iris", reference=as_objects)
    assert {c["kind"] for c in info.signature["columns"]} == {"numeric"}

    shuffled = X[list(reversed(X.columns))]
    info = registry.register(iris_model, "iris", reference=shuffled)
    assert [c["name"] for c in info.signature["columns"]] == list(X.columns), "the model's order"
    assert list(registry.reference("iris").to_frame().columns) == list(X.columns)


def test_signature_of_a_model_fitted_on_a_plain_array(registry: Registry, array_model):
    model, X = array_model
    expected = {
        "named": False,
        "columns": [
            {"name": f"x{i}", "dtype": "float64", "kind": "numeric", "nullable": False} for i in range(3)
        ],
    }
    assert registry.register(model, "ridge", reference=X).signature == expected
    assert registry.register(model, "ridge").signature == expected, "without a reference too"
    assert registry.get("ridge:1").signature == expected


def test_output_spec_of_a_classifier_and_of_a_regressor(registry: Registry, iris_model, array_model):
    from sklearn.svm import SVC

    X = np.random.default_rng(0).normal(size=(30, 2))
    labels = np.where(X[:, 0] > 0, "yes", "no")
    registry.register(iris_model, "iris")
    registry.register(SVC().fit(X, labels), "svc")
    registry.register(array_model[0], "ridge")

    assert registry.get("iris").output == {
        "kind": "classification",
        "classes": [0, 1, 2],
        "predict_proba": True,
    }
    assert registry.get("svc").output == {
        "kind": "classification",
        "classes": ["no", "yes"],
        "predict_proba": False,
    }
    assert registry.get("ridge").output == {"kind": "regression"}


def test_a_column_transformer_pipeline_registers_loads_and_predicts_the_same(registry: Registry, mixed):
    frame, model = mixed
    info = registry.register(model, "mixed", reference=frame)
    loaded = registry.load("mixed")

    assert info.estimator_class == "sklearn.pipeline.Pipeline"
    assert loaded is not model
    assert (loaded.predict(frame) == model.predict(frame)).all()
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))


# ---------------------------------------------------------------------- reference samples
def test_reference_sample_is_capped_and_stored_with_the_models_predictions(registry: Registry, array_model):
    model, _ = array_model
    X = np.random.default_rng(3).normal(size=(12_000, 3))
    X[:, 0] = np.arange(12_000)  # a row id, to find each sampled row again
    info = registry.register(model, "ridge", reference=X)
    sample = registry.reference("ridge")
    frame = sample.to_frame()

    assert info.reference_rows == sample.rows == len(frame) == 10_000
    ids = frame["x0"].to_numpy().astype(int)
    assert len(set(ids)) == 10_000 and (np.diff(ids) > 0).all(), "distinct rows, kept in order"
    np.testing.assert_array_equal(frame.to_numpy(), X[ids])
    np.testing.assert_allclose(sample.predictions, model.predict(X[ids]))


def test_a_small_reference_is_kept_whole(registry: Registry, iris, iris_model):
    X, _ = iris
    info = registry.register(iris_model, "iris", reference=X)
    sample = registry.reference("iris")
    assert info.reference_rows == sample.rows == 150
    pd.testing.assert_frame_equal(sample.to_frame(), X.reset_index(drop=True), check_dtype=False)
    np.testing.assert_array_equal(sample.predictions, iris_model.predict(X))

    info = registry.register(iris_model, "iris", reference=X.to_numpy())  # an array for named columns
    assert [c["name"] for c in info.signature["columns"]] == list(X.columns)
    np.testing.assert_array_equal(registry.reference("iris:2").predictions, iris_model.predict(X))


def test_reference_round_trips_with_missing_values_and_strings(registry: Registry, mixed):
    frame, model = mixed
    registry.register(model, "mixed", reference=frame)
    sample = registry.reference("mixed")
    back = sample.to_frame()

    assert list(back.columns) == ["color", "size", "weight"]
    assert back["color"].isna().tolist() == frame["color"].isna().tolist()
    assert back["weight"].isna().tolist() == frame["weight"].isna().tolist()
    present = frame["color"].notna()
    assert back["color"][present].tolist() == frame["color"][present].tolist()
    np.testing.assert_array_equal(back["size"], frame["size"])
    np.testing.assert_array_equal(back["weight"], frame["weight"])  # NaN == NaN here
    np.testing.assert_array_equal(sample.predictions, model.predict(frame))


def test_stored_arrays_read_back_exactly_make_the_same_bytes_twice_and_never_pickle():
    """The `.npz` writer of reference samples and drift profiles (registry/npz.py)."""
    import io
    import zipfile

    from registry.npz import npz_bytes

    rng = np.random.default_rng(0)
    arrays = {
        "floats": rng.normal(size=1000),
        "whole": rng.integers(0, 3, size=(1000, 20)).astype(np.float64),  # counts, one-hot: shrink
        "prices": np.round(rng.uniform(1, 100, size=1000), 2),  # two decimals: shrink too
        "mask": rng.random(1000) < 0.1,
        "ints": np.arange(1000),
        "text": np.array(["paris", "lyon", ""] * 10, dtype=str),
        "header": np.array('{"format": 3}'),
    }
    data = npz_bytes(arrays)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(arrays)
        for name, array in arrays.items():
            assert npz[name].dtype == array.dtype
            np.testing.assert_array_equal(npz[name], array)
    assert npz_bytes(arrays) == data, "equal arrays, equal bytes (and sha256)"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        kinds = {info.filename: info.compress_type for info in archive.infolist()}
    assert kinds["floats.npy"] == zipfile.ZIP_STORED  # many digits barely shrink: not worth deflating
    deflated = ("whole.npy", "prices.npy", "mask.npy", "text.npy")
    assert {kinds[name] for name in deflated} == {zipfile.ZIP_DEFLATED}
    assert len(data) < 8 * 1000 + 20_000, "the whole numbers and prices were deflated (168 KB as they are)"
    with pytest.raises(ValueError, match="pickle"):
        npz_bytes({"objects": np.array([{"a": 1}], dtype=object)})


def test_string_class_labels_are_stored_as_predictions(registry: Registry, iris):
    from sklearn.tree import DecisionTreeClassifier

    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, labels)
    registry.register(model, "iris", reference=X)
    assert registry.reference("iris").predictions.tolist() == model.predict(X).tolist()


# ---------------------------------------------------------------------- errors for bad input
def test_unknown_model_lists_the_known_ones(registry: Registry, iris_model):
    with pytest.raises(ModelNotFound, match="no model 'iris'; the registry is empty"):
        registry.get("iris")
    registry.register(iris_model, "iris")
    registry.register(iris_model, "wine")
    with pytest.raises(ModelNotFound, match="no model 'irsi'; known: iris, wine"):
        registry.load("irsi")
    for action in (
        lambda: registry.versions("irsi"),
        lambda: registry.set_alias("irsi", "champion", 1),
        lambda: registry.history("irsi"),
        lambda: registry.tag("irsi", {"a": "b"}),
        lambda: registry.delete("irsi:1"),
    ):
        with pytest.raises(ModelNotFound, match="known: iris, wine"):
            action()


def test_unknown_version_or_alias_lists_what_there_is(registry: Registry, iris_model):
    for _ in range(3):
        registry.register(iris_model, "iris")
    with pytest.raises(VersionNotFound, match="no alias 'champion'; it has no aliases"):
        registry.get("iris@champion")
    registry.register(iris_model, "iris")
    registry.delete("iris:3")
    with pytest.raises(VersionNotFound, match=r"model 'iris' has no version 9; its versions: 1-2, 4$"):
        registry.get("iris:9")
    with pytest.raises(VersionNotFound, match="no version 3"):
        registry.load("iris:3")
    registry.set_alias("iris", "staging", 1)
    registry.set_alias("iris", "canary", 1)
    with pytest.raises(VersionNotFound, match="no alias 'champion'; its aliases: canary, staging"):
        registry.load("iris@champion")


def test_bad_model_names_are_refused_before_anything_is_stored(registry: Registry, iris_model):
    for name in ["a b", "-iris", "x" * 129, "iris/1"]:
        with pytest.raises(InvalidName, match="bad model name"):
            registry.register(iris_model, name)
    assert registry.list_models() == []
    assert not any(p.is_file() for p in registry.artifacts.root.rglob("*"))


def test_reference_with_the_wrong_columns_is_refused(registry: Registry, iris, iris_model, array_model):
    X, _ = iris
    with pytest.raises(ReferenceMismatch, match=r"missing \['petal width \(cm\)'\]"):
        registry.register(iris_model, "iris", reference=X.drop(columns="petal width (cm)"))
    with pytest.raises(ReferenceMismatch, match=r"unexpected \['row_id'\]"):
        registry.register(iris_model, "iris", reference=X.assign(row_id=1))
    renamed = X.rename(columns={"sepal length (cm)": "sepal_length"})
    with pytest.raises(
        ReferenceMismatch, match=r"missing \['sepal length \(cm\)'\]; unexpected \['sepal_length'\]"
    ):
        registry.register(iris_model, "iris", reference=renamed)

    model, A = array_model
    with pytest.raises(ReferenceMismatch, match="reference sample has 2 columns; the model expects 3"):
        registry.register(model, "ridge", reference=A[:, :2])
    with pytest.raises(ReferenceMismatch, match="must be 2-dimensional"):
        registry.register(model, "ridge", reference=A.reshape(10, 20, 3))
    assert registry.list_models() == []


def test_registering_something_that_is_not_a_fitted_model_is_refused(registry: Registry):
    from sklearn.linear_model import LogisticRegression

    cases = [
        ({"coef": [1, 2]}, r"the object to register is not a scikit-learn model \(a dict\)"),
        ("model.pkl", r"not a scikit-learn model \(a str\)"),
        (LogisticRegression(), "is not fitted .*fit it before registering"),
        (LogisticRegression, "is not fitted"),
    ]
    for thing, message in cases:
        with pytest.raises(NotAModel, match=message):
            registry.register(thing, "iris")
    assert registry.list_models() == []


def test_loading_a_model_registered_under_another_sklearn_warns(registry: Registry, iris, iris_model):
    X, _ = iris
    registry.register(iris_model, "iris")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnVersionWarning)
        registry.load("iris")  # the same version: silent

    row = _row(registry, "iris", 1)
    with registry.db.write() as session:
        row.sklearn_version = "0.0.1"
        session.add(row)
    with pytest.warns(SklearnVersionWarning, match=r"registered with scikit-learn 0\.0\.1; loading it under"):
        loaded = registry.load("iris:1")
    assert (loaded.predict(X) == iris_model.predict(X)).all()


def test_deployments_are_saved_with_their_ledger_event_and_removed_with_one(registry, iris_model) -> None:
    from registry.deployments import get_deployment, list_deployments, remove_deployment, save_deployment
    from registry.info import DeploymentInfo

    registry.register(iris_model, "iris")
    registry.register(iris_model, "iris")
    spec = DeploymentInfo("iris-prod", "iris", 2, 1, "127.0.0.1", 8080, 2, {"auth": False})
    save_deployment(registry, spec, "switched", actor="ana@laptop", from_version=1, reason="retrained")
    stored = get_deployment(registry, "iris-prod")
    assert (stored.version, stored.standby_version, stored.port, stored.workers) == (2, 1, 8080, 2)
    assert list_deployments(registry) == [stored]  # the one-statement list reads the same fields
    assert stored.options == {"auth": False} and stored.updated_at is not None
    last = registry.history("iris").events[-1]
    assert (last.kind, last.deployment, last.from_version, last.to_version, last.actor) == (
        "switched",
        "iris-prod",
        1,
        2,
        "ana@laptop",
    )
    assert registry.history("iris").state.serving == {"iris-prod": 2}
    with pytest.raises(VersionInUse, match="deployment 'iris-prod'"):
        registry.delete("iris:1")  # the standby is held too
    save_deployment(registry, DeploymentInfo("iris-dev", "iris", 1, None, "127.0.0.1", 8081, 1), "switched")
    assert [(d.name, d.version, d.standby_version) for d in list_deployments(registry)] == [
        ("iris-dev", 1, None),
        ("iris-prod", 2, 1),
    ]
    assert remove_deployment(registry, "iris-dev", "stopped").version == 1
    assert remove_deployment(registry, "iris-prod", "stopped").version == 2
    assert get_deployment(registry, "iris-prod") is None
    assert registry.history("iris").state.serving == {}
    assert remove_deployment(registry, "iris-prod", "stopped") is None
    with pytest.raises(VersionNotFound):
        save_deployment(registry, DeploymentInfo("x", "iris", 9, None, "127.0.0.1", 1, 1), "switched")
    assert get_deployment(registry, "x") is None


def test_a_switch_records_ready_with_it_and_open_actions_are_found(registry, iris_model) -> None:
    from registry.deployments import open_actions, save_deployment
    from registry.info import DeploymentInfo

    registry.register(iris_model, "iris")
    registry.register(iris_model, "iris")
    spec = DeploymentInfo("a", "iris", 1, None, "127.0.0.1", 8080, 1)
    save_deployment(registry, spec, "switched", preceding=[("ready", {"deployment": "a", "to_version": 1})])
    assert [e.kind for e in registry.history("iris").events][-2:] == ["ready", "switched"]
    assert open_actions(registry) == []
    # A deploy killed while loading: its request and its load are open; one outcome closes both.
    registry.record_event("iris", "deploy_requested", deployment="a", from_version=1, to_version=2)
    registry.record_event("iris", "loading", deployment="a", to_version=2)
    registry.record_event("iris", "loading", deployment="b", to_version=1)  # a restart's load
    registry.record_event("iris", "ready", deployment="c", to_version=1)  # closed: no action open
    opened = {(e["deployment"], e["kind"], e["to_version"]) for e in open_actions(registry)}
    assert opened == {("a", "deploy_requested", 2), ("b", "loading", 1)}
    registry.record_event("iris", "failed", deployment="a", from_version=1, to_version=2)
    registry.record_event("iris", "ready", deployment="b", to_version=1)
    assert open_actions(registry) == []
    # A switch reverted after its promotion failed: the history serves the version put back.
    save_deployment(
        registry, DeploymentInfo("a", "iris", 2, 1, "127.0.0.1", 8080, 1), "switched", from_version=1
    )
    save_deployment(registry, spec, "reverted", from_version=2)
    assert registry.history("iris").state.serving == {"a": 1}


def test_a_drift_profile_is_fitted_at_registration_and_deleted_with_its_version(
    registry, iris, iris_model
) -> None:
    X, _ = iris
    info = registry.register(iris_model, "iris", reference=X)
    assert info.profile_sha256 is not None
    profile = registry.profile("iris:1")
    assert [f.name for f in profile.features] == list(X.columns)
    assert profile.prediction is not None and profile.prediction.kind == "categorical"
    blob = registry.artifacts.path_of(info.profile_sha256)
    assert blob.exists()
    registry.register(iris_model, "iris")  # no reference: no profile, and drift will say so
    assert registry.get("iris:2").profile_sha256 is None and registry.profile("iris:2") is None
    registry.delete("iris:1")
    assert not blob.exists()


def test_a_drift_profile_of_an_older_format_is_refitted_from_the_reference(
    registry, iris, iris_model
) -> None:
    """Versions registered before the two-sample tests stored decile and quantile profiles only."""
    import io
    import json

    import numpy as np
    from sqlmodel import select

    from registry.schema import ModelVersion

    X, _ = iris
    registry.register(iris_model, "iris", reference=X)
    buffer = io.BytesIO()
    header = {
        "features": [{"name": "x", "kind": "numeric", "rows": 1, "missing_share": 0.0}],
        "has_prediction": False,
    }
    np.savez_compressed(buffer, header=np.array(json.dumps(header)), q0=np.zeros(1001))
    old = registry.artifacts.put(buffer.getvalue())
    with registry.db.write() as session:
        session.exec(select(ModelVersion)).one().profile_sha256 = old
    assert registry.get("iris:1").profile_sha256 == old
    profile = registry.profile("iris:1")  # not "damaged": refitted
    assert [f.name for f in profile.features] == list(X.columns)
    assert len(profile.features[0].values) == len(X)  # the sorted reference values the tests need


def test_a_profile_stored_before_multivariate_drift_gets_it_from_the_reference_sample(
    registry, iris, iris_model
) -> None:
    from registry.monitoring.drift import Profile
    from registry.schema import ModelVersion

    X, _ = iris
    registry.register(iris_model, "iris", reference=X)
    assert registry.profile("iris:1").multivariate is not None  # fitted at registration
    stored = registry.profile("iris:1")
    stored.multivariate = None  # what a version registered before multivariate drift has stored
    old = registry.artifacts.put(stored.to_bytes())
    assert Profile.from_bytes(registry.artifacts.get(old, "old profile")).multivariate is None
    with registry.db.write() as session:
        row = session.get(ModelVersion, queries_version_id(registry, "iris:1"))
        row.profile_sha256 = old
        session.add(row)
    refitted = registry.profile("iris:1")
    assert refitted.multivariate is not None and len(refitted.multivariate.inputs) == 4
    lose_artifact(registry, registry.get("iris:1").reference_sha256)
    assert registry.profile("iris:1").multivariate is None  # no sample: per-feature drift still works


def test_a_damaged_drift_profile_says_damaged_not_no_reference(registry, iris, iris_model) -> None:
    """A reference whose stored bytes were changed, removed or cannot be read is reported as damaged,
    and the supervisor's drift verdict for it says so (not "no reference", which means none exists)."""
    import asyncio
    from types import SimpleNamespace

    from registry.errors import ArtifactDamaged
    from registry.monitoring.window import DriftWindow
    from registry.serving.scraper import Scraper

    X, _ = iris
    info = registry.register(iris_model, "iris", reference=X)
    blob = registry.artifacts.path_of(info.profile_sha256)
    original = blob.read_bytes()
    blob.write_bytes(original[:-10] + b"tampered!!")
    with pytest.raises(ArtifactDamaged, match=r"^reference sample of iris:1 is damaged \(sha256 mismatch\)$"):
        registry.profile("iris:1")

    scraper = Scraper(SimpleNamespace(registry=registry))
    profile = asyncio.run(scraper._profile(("iris", 1)))
    window = DriftWindow()
    window.add([[5.1, 3.5, 1.4, 0.2]] * 10, [0] * 10)
    report = window.report(profile, list(X.columns), [True] * 4)
    assert (report.status, report.message) == (
        "damaged reference",
        "reference sample of iris:1 is damaged (sha256 mismatch)",
    )

    lose_artifact(registry, info.profile_sha256)
    with pytest.raises(ArtifactDamaged, match=r"is damaged \(missing\)"):
        registry.profile("iris:1")
    bad = registry.artifacts.put(b"not an npz at all")
    with registry.db.write() as session:
        from registry.schema import ModelVersion

        row = session.get(ModelVersion, queries_version_id(registry, "iris:1"))
        row.profile_sha256 = bad
        session.add(row)
    with pytest.raises(ArtifactDamaged, match=r"is damaged \(unreadable: "):
        registry.profile("iris:1")


def queries_version_id(registry, ref: str) -> int:
    from registry import queries
    from registry.refs import parse_ref

    with registry.db.connect() as conn:
        return queries.version_id(conn, parse_ref(ref))


def test_a_reference_with_category_columns_keeps_the_labels_it_was_given_and_none_otherwise(
    registry: Registry,
) -> None:
    """The stored sample's `labels` are the rows' true labels, or absent: never the texts of a category
    column (encoding a category column once overwrote them with its texts)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"city": rng.choice(["paris", "lyon", "nice"], 150), "x": rng.normal(size=150)})
    labels = (frame["x"] > 0).astype(int).to_numpy()
    encode = ColumnTransformer([("c", OneHotEncoder(), ["city"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame, labels)
    unlabelled = registry.register(model, "shop", reference=frame)
    labelled = registry.register(model, "shop", reference=frame, reference_labels=labels)
    assert registry.reference(unlabelled.ref).labels is None
    stored = registry.reference(labelled.ref)
    assert stored.labels.tolist() == labels.tolist()
    assert stored.columns["city"].tolist() == frame["city"].tolist()
