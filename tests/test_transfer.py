"""Export one version to an archive file and import it into another registry (another home and
another kind of database), with every checksum verified before anything is stored."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops
import skops.io
from helpers import hostile_skops
from sqlmodel import select

from registry import ArtifactError, NotAModel, Registry
from registry.artifacts import sha256_of
from registry.schema import Event


@pytest.fixture
def other(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Registry]:
    """A second registry in its own home, on the other kind of database than `registry`."""
    if db_url.startswith("sqlite"):
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'other-home' / 'registry.db'}"
    reg = Registry(home=tmp_path / "other-home", db_url=url)
    yield reg
    reg.close()


@pytest.fixture
def exported(registry: Registry, iris, iris_model, tmp_path: Path) -> Path:
    """iris:2 (with reference, tags, metrics, description and an alias) exported to a file."""
    X, _ = iris
    registry.register(iris_model, "iris")
    registry.register(
        iris_model,
        "iris",
        reference=X,
        description="baseline",
        tags={"team": "fraud"},
        metrics={"accuracy": 0.97},
        alias="champion",
    )
    return registry.export("iris@champion", tmp_path / "out" / "iris-2.zip")


def _rewrite(
    archive: Path, target: Path, members: dict[str, bytes | str | None], rehash: bool = True
) -> Path:
    """A copy of `archive` with some members replaced (bytes) or left out (None); a replaced manifest
    gets a matching `manifest.sha256` unless `rehash` is False (an edit by hand)."""
    members = dict(members)
    if rehash and isinstance(members.get("manifest.json"), str | bytes) and "manifest.sha256" not in members:
        manifest = members["manifest.json"]
        members["manifest.sha256"] = sha256_of(manifest.encode() if isinstance(manifest, str) else manifest)
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            if item.filename in members:
                if members[item.filename] is not None:
                    out.writestr(item.filename, members[item.filename])
            else:
                out.writestr(item, source.read(item.filename))
    return target


def _imported_anything(reg: Registry) -> bool:
    with reg.db.read() as session:
        return bool(reg.list_models()) or bool(session.exec(select(Event)).all())


def test_export_then_import_into_another_registry(
    registry: Registry, other: Registry, exported, iris, iris_model
):
    X, _ = iris
    source = registry.get("iris:2")
    other.register(iris_model, "iris")  # the import becomes the next version there
    assert other.settings.db_url != registry.settings.db_url

    imported = other.import_(exported)
    assert imported.version == 2
    assert (other.load("iris:2").predict(X) == iris_model.predict(X)).all()
    assert imported.signature == source.signature
    assert imported.output == source.output
    assert imported.tags == {"team": "fraud"}
    assert imported.metrics == {"accuracy": 0.97}
    assert imported.description == "baseline"
    assert imported.aliases == [], "aliases are local to a registry"
    assert imported.artifact_sha256 == source.artifact_sha256
    assert imported.sklearn_version == source.sklearn_version
    assert imported.source == str(exported.resolve())
    origin = imported.origin["imported_from"]
    assert (origin["model"], origin["version"], origin["sha256"]) == ("iris", 2, source.artifact_sha256)

    sample = other.reference("iris:2")
    assert imported.reference_rows == sample.rows == 150
    pd.testing.assert_frame_equal(sample.to_frame(), registry.reference("iris:2").to_frame())
    np.testing.assert_array_equal(sample.predictions, iris_model.predict(X))
    registered = [e for e in other.history("iris").events if e.kind == "registered"]
    assert registered[-1].detail["origin"]["imported_from"]["sha256"] == source.artifact_sha256


def test_an_archive_holds_a_manifest_with_checksums(registry: Registry, exported):
    with zipfile.ZipFile(exported) as archive:
        assert sorted(archive.namelist()) == [
            "manifest.json",
            "manifest.sha256",
            "model.skops",
            "reference.npz",
        ]
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("manifest.sha256").decode().strip() == sha256_of(archive.read("manifest.json"))
        for member, digest in manifest["files"].items():
            assert sha256_of(archive.read(member)) == digest
    assert manifest["version"]["name"] == "iris" and manifest["version"]["version"] == 2
    assert "aliases" not in manifest["version"]
    assert not list(exported.parent.glob(".*.tmp")), "written via a temporary file, then renamed"


def test_importing_twice_gives_two_versions_and_a_version_without_reference(
    registry: Registry, other: Registry, iris_model, tmp_path
):
    registry.register(iris_model, "iris")
    path = registry.export("iris:1", tmp_path / "iris-1.zip")
    assert [other.import_(path).version for _ in range(2)] == [1, 2]
    assert other.get("iris:2").reference_sha256 is None and other.reference("iris:2") is None
    assert other.get("iris:1").origin["imported_from"]["version"] == 1


def test_import_under_another_name(registry: Registry, other: Registry, exported, iris, iris_model):
    X, _ = iris
    imported = other.import_(exported, name="flowers")
    assert (imported.name, imported.version) == ("flowers", 1)
    assert [m.name for m in other.list_models()] == ["flowers"]
    assert imported.origin["imported_from"]["model"] == "iris"
    assert (other.load("flowers").predict(X) == iris_model.predict(X)).all()


def test_a_reimport_of_an_imported_version_keeps_the_whole_lineage(
    registry: Registry, other: Registry, exported, tmp_path
):
    other.import_(exported)
    again = other.export("iris:1", tmp_path / "again.zip")
    third = registry.import_(again, name="iris-roundtrip")
    assert third.origin["imported_from"]["model"] == "iris"
    assert third.origin["previous_origin"]["imported_from"]["version"] == 2


def test_a_tampered_archive_is_refused_and_nothing_is_registered(
    registry: Registry, other: Registry, exported, array_model, tmp_path
):
    registry.register(array_model[0], "ridge")
    another_model = registry.artifacts.path_of(registry.get("ridge").artifact_sha256).read_bytes()
    swapped = _rewrite(exported, tmp_path / "swapped.zip", {"model.skops": another_model})
    with pytest.raises(
        ArtifactError, match=r"model\.skops does not match its checksum.*nothing was imported"
    ):
        other.import_(swapped)

    reference = _rewrite(exported, tmp_path / "reference.zip", {"reference.npz": b"PK\x03\x04 changed"})
    with pytest.raises(ArtifactError, match=r"reference\.npz does not match its checksum"):
        other.import_(reference)

    missing = _rewrite(exported, tmp_path / "missing.zip", {"model.skops": None})
    with pytest.raises(ArtifactError, match=r"not a readable modeldeck export: it has no model\.skops"):
        other.import_(missing)
    assert not _imported_anything(other)
    assert not any(p.is_file() for p in other.artifacts.root.rglob("*"))


def test_files_that_are_not_exports_are_refused(other: Registry, exported, tmp_path):
    not_zip = tmp_path / "model.zip"
    not_zip.write_text("just text")
    no_manifest = tmp_path / "no-manifest.zip"
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr("model.skops", b"whatever")
    with zipfile.ZipFile(exported) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    foreign = _rewrite(
        exported, tmp_path / "foreign.zip", {"manifest.json": json.dumps(manifest | {"format": "mlflow"})}
    )
    newer = _rewrite(
        exported, tmp_path / "newer.zip", {"manifest.json": json.dumps(manifest | {"format_version": 99})}
    )
    no_model = _rewrite(
        exported, tmp_path / "no-model.zip", {"manifest.json": json.dumps(manifest | {"files": {}})}
    )

    for path, message in [
        (not_zip, "is not a readable modeldeck export"),
        (no_manifest, "is not a readable modeldeck export: it has no manifest.json"),
        (foreign, "is not a modeldeck export \\(format 'mlflow'\\)"),
        (newer, "was exported by a newer modeldeck"),
        (no_model, "has no model.skops in its manifest"),
        (tmp_path / "absent.zip", "is not a readable modeldeck export"),
    ]:
        with pytest.raises(ArtifactError, match=message):
            other.import_(path)
    assert not _imported_anything(other)


def test_an_archive_whose_model_runs_code_is_refused_even_with_matching_checksums(
    other: Registry, exported, tmp_path
):
    marker = tmp_path / "code-ran"
    hostile = hostile_skops(marker)
    with zipfile.ZipFile(exported) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    manifest["files"]["model.skops"] = sha256_of(hostile)
    path = _rewrite(
        exported, tmp_path / "hostile.zip", {"model.skops": hostile, "manifest.json": json.dumps(manifest)}
    )

    with pytest.raises(ArtifactError, match=r"needs types .*builtins\.eval.*--trust-type"):
        other.import_(path)
    assert not _imported_anything(other)
    assert not marker.exists()


def test_an_archive_that_holds_no_model_is_refused_even_with_matching_checksums(
    other: Registry, exported, tmp_path
):
    with zipfile.ZipFile(exported) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    for name, payload, error, message in [
        ("settings", skops.io.dumps({"alpha": 1.0}), NotAModel, r"model\.skops is not a scikit-learn model"),
        ("noise", b"not a skops file", ArtifactError, "not a readable skops file"),
    ]:
        manifest["files"]["model.skops"] = sha256_of(payload)
        path = _rewrite(
            exported,
            tmp_path / f"{name}.zip",
            {"model.skops": payload, "manifest.json": json.dumps(manifest)},
        )
        with pytest.raises(error, match=message):
            other.import_(path)
    assert not _imported_anything(other)


def _manifest(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as opened:
        return json.loads(opened.read("manifest.json"))


def test_a_manifest_edited_after_export_is_refused(other: Registry, exported, tmp_path):
    manifest = _manifest(exported)
    manifest["version"]["metrics"] = {"accuracy": 1.0}
    edited = _rewrite(
        exported, tmp_path / "edited.zip", {"manifest.json": json.dumps(manifest)}, rehash=False
    )
    with pytest.raises(
        ArtifactError, match=r"manifest\.json does not match its checksum.*nothing was imported"
    ):
        other.import_(edited)
    unchecked = _rewrite(exported, tmp_path / "no-sum.zip", {"manifest.sha256": None})
    with pytest.raises(ArtifactError, match=r"it has no manifest\.sha256"):
        other.import_(unchecked)
    assert not _imported_anything(other)


def test_what_the_model_says_is_read_from_the_model_not_the_manifest(
    registry: Registry, other: Registry, exported, tmp_path
):
    source = registry.get("iris:2")
    manifest = _manifest(exported)
    manifest["version"] |= {
        "estimator_class": "sklearn.ensemble.GradientBoostingClassifier",
        "params": {"n_estimators": 5000, "note": "trust me"},
        "sklearn_version": "9.9.9",
        "output": {"kind": "regression"},
        "reference_rows": 10**9,
    }
    lying = _rewrite(exported, tmp_path / "lying.zip", {"manifest.json": json.dumps(manifest)})
    imported = other.import_(lying)
    assert (
        imported.estimator_class
        == source.estimator_class
        == "sklearn.linear_model._logistic.LogisticRegression"
    )
    assert imported.params == source.params
    assert imported.sklearn_version == source.sklearn_version
    assert imported.output == source.output
    assert imported.reference_rows == 150


def test_a_manifest_signature_that_does_not_fit_the_model_is_refused(other: Registry, exported, tmp_path):
    manifest = _manifest(exported)
    columns = manifest["version"]["signature"]["columns"]
    for name, signature in [
        ("renamed", {"columns": [{**c, "name": f"fake{i}"} for i, c in enumerate(columns)]}),
        ("shorter", {"columns": columns[:2]}),
    ]:
        manifest["version"]["signature"] = signature
        path = _rewrite(exported, tmp_path / f"{name}.zip", {"manifest.json": json.dumps(manifest)})
        with pytest.raises(ArtifactError, match=r"signature .* does not match the model's features"):
            other.import_(path)
    assert not _imported_anything(other)


def test_a_format_1_archive_still_imports_with_derived_metadata(other: Registry, exported, tmp_path):
    manifest = _manifest(exported)
    manifest["format_version"] = 1
    manifest["version"]["estimator_class"] = "made.up.Class"
    old = _rewrite(
        exported, tmp_path / "v1.zip", {"manifest.json": json.dumps(manifest), "manifest.sha256": None}
    )
    imported = other.import_(old)
    assert imported.estimator_class.endswith("LogisticRegression")
    assert imported.origin["imported_from"]["manifest_checked"] is False


def _malformed(exported: Path, tmp_path: Path) -> dict[str, Path]:
    """Archives broken in every way a user (or a disk) can break one."""
    data = exported.read_bytes()
    manifest = _manifest(exported)
    made: dict[str, Path] = {}

    def raw(name: str, content: bytes) -> None:
        made[name] = tmp_path / f"{name}.mdx"
        made[name].write_bytes(content)

    def edited(name: str, **members: bytes | str | None) -> None:
        made[name] = _rewrite(exported, tmp_path / f"{name}.mdx", members)

    def fields(name: str, change) -> None:
        copy = json.loads(json.dumps(manifest))
        change(copy)
        edited(name, **{"manifest.json": json.dumps(copy)})

    raw("truncated", data[: len(data) // 2])
    raw("text", b"not an archive at all\n")
    raw("empty", b"")
    raw(
        "zip-without-members",
        _rewrite(exported, tmp_path / "x.zip", dict.fromkeys(_names(exported))).read_bytes(),
    )
    edited("no-manifest", **{"manifest.json": None})
    edited("manifest-not-json", **{"manifest.json": "{not json"})
    edited("manifest-binary", **{"manifest.json": b"\xff\xfe\x00garbage"})
    edited("manifest-a-list", **{"manifest.json": "[1, 2]"})
    edited("checksum-binary", **{"manifest.sha256": b"\x00\xff" * 40})
    edited("model-missing", **{"model.skops": None})
    fields("files-a-list", lambda m: m.__setitem__("files", ["model.skops"]))
    fields("digest-a-number", lambda m: m["files"].__setitem__("model.skops", 12))
    fields("unknown-member", lambda m: m["files"].__setitem__("../../etc/passwd", "0" * 64))
    fields("format-version-text", lambda m: m.__setitem__("format_version", "two"))
    fields("version-a-string", lambda m: m.__setitem__("version", "iris:2"))
    fields("version-number-text", lambda m: m["version"].__setitem__("version", "2"))
    fields("metric-a-string", lambda m: m["version"]["metrics"].__setitem__("accuracy", "high"))
    fields("tag-a-list", lambda m: m["version"]["tags"].__setitem__("team", ["a"]))
    fields("signature-columns-text", lambda m: m["version"]["signature"].__setitem__("columns", "x"))
    fields("bad-model-name", lambda m: m["version"].__setitem__("name", "../../x"))
    fields("exported-from-text", lambda m: m.__setitem__("exported_from", "somewhere"))
    fields("control-tag-key", lambda m: m["version"]["tags"].__setitem__("k\x1b[2J", "v"))
    garbage = b"PK\x03\x04 not a reference"
    fields("reference-garbage", lambda m: m["files"].__setitem__("reference.npz", sha256_of(garbage)))
    made["reference-garbage"] = _rewrite(
        made["reference-garbage"],
        tmp_path / "reference-garbage2.mdx",
        {"reference.npz": garbage},
        rehash=False,
    )
    made["directory"] = tmp_path
    return made


def _names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as opened:
        return opened.namelist()


MALFORMED = [
    "truncated", "text", "empty", "zip-without-members", "no-manifest", "manifest-not-json",
    "manifest-binary", "manifest-a-list", "checksum-binary", "model-missing", "files-a-list",
    "digest-a-number", "unknown-member",
    "format-version-text", "version-a-string", "version-number-text", "metric-a-string", "tag-a-list",
    "signature-columns-text", "bad-model-name", "exported-from-text", "control-tag-key", "reference-garbage",
    "directory",
]  # fmt: skip


@pytest.fixture
def exported_here(tmp_path: Path, iris, iris_model) -> Path:
    """iris:1 with a reference, tags and metrics, exported from a SQLite registry."""
    with Registry(home=tmp_path / "source") as reg:
        reg.register(iris_model, "iris", reference=iris[0], tags={"team": "a"}, metrics={"accuracy": 0.9})
        return reg.export("iris:1", tmp_path / "iris-1.mdx")


@pytest.mark.parametrize("broken", MALFORMED)
def test_a_malformed_archive_is_one_line_and_exit_1_on_the_cli(
    exported_here: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
):
    from typer.testing import CliRunner

    from console.cli import app

    (tmp_path / "made").mkdir()
    path = _malformed(exported_here, tmp_path / "made")[broken]
    target = tmp_path / "target"
    monkeypatch.setenv("MODELDECK_HOME", str(target))
    monkeypatch.delenv("MODELDECK_DB_URL", raising=False)
    result = CliRunner().invoke(app, ["import", str(path)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    with Registry(home=target) as reg:
        assert not _imported_anything(reg)


def test_an_import_can_keep_its_version_number(tmp_path, iris, iris_model) -> None:
    """`keep_number`: an exported iris:3 is iris:3 in a new registry (an image that serves it names the
    same version), and is refused where the model is already past 3."""
    from registry import Registry
    from registry.errors import RegistryError

    X, _ = iris
    with Registry(home=tmp_path / "here") as here:
        for _ in range(3):
            here.register(iris_model, "iris", reference=X)
        archive = here.export("iris:3", tmp_path / "iris-3.mdx")
    with Registry(home=tmp_path / "there") as there:
        kept = there.import_(archive, keep_number=True)
        assert kept.version == 3 and there.versions("iris")[-1].version == 3
        assert there.register(iris_model, "iris", reference=X).version == 4  # numbering goes on from it
        with pytest.raises(
            RegistryError, match="cannot keep version 3: model 'iris' here is already at version 4"
        ):
            there.import_(archive, keep_number=True)
        assert there.import_(archive).version == 5
