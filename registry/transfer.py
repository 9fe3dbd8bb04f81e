"""Export one version to a single archive file, and import it into another registry.

The archive is a zip holding `manifest.json` (metadata, signature and the sha256 of every other
member), `manifest.sha256` (the sha256 of `manifest.json` itself), `model.skops` and, if the version
has one, `reference.npz`. Import checks the archive's declared sizes before reading anything
(`registry.unpacking`), verifies every checksum, then registers the model as the next version of its
name, keeping where it came from in `origin`.

What the model itself says is never taken from the manifest: the estimator class, its params, its
output (classes) and the scikit-learn version skops recorded are read from the loaded model, the
reference rows from the sample, and the manifest's signature must match the model's features. The
manifest's checksum catches an archive edited after export by anything but modeldeck (or damaged);
it is not a signature: description, tags and metrics remain what the exporter claims.
Archives of format 1 (before manifest checksums) still import: everything derivable is derived, and
the version's origin says the manifest was unchecked.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.artifacts import (
    load_model,
    recorded_sklearn_version,
    sha256_of,
    types_needing_trust,
    untrusted_message,
    untrusted_types_of,
)
from registry.capture import Captured, profile_of
from registry.errors import ArtifactError, ReferenceMismatch, RegistryError
from registry.info import VersionInfo
from registry.schema import utcnow
from registry.signature import check_is_model, json_params, model_feature_names, output_spec
from registry.unpacking import check_zip

if TYPE_CHECKING:
    from registry.core import Registry

FORMAT = "modeldeck-export"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = "manifest.sha256"
MODEL_MEMBER = "model.skops"
REFERENCE_MEMBER = "reference.npz"
_MEMBERS = (MODEL_MEMBER, REFERENCE_MEMBER)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def export_version(registry: Registry, ref: str, path: Path) -> Path:
    """Write `ref` (artifact, reference sample, metadata, checksums) to the archive `path`.

    If `path` is a directory, the file is `<name>-<version>.mdx` inside it."""
    info = registry.get(ref)
    if path.is_dir():
        path = path / f"{info.name}-{info.version}.mdx"
    files = {MODEL_MEMBER: registry.artifacts.get(info.artifact_sha256, f"{info.ref}")}
    if info.reference_sha256:
        files[REFERENCE_MEMBER] = registry.artifacts.get(info.reference_sha256, f"reference of {info.ref}")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": utcnow().isoformat(timespec="seconds"),
        "exported_from": {"host": socket.gethostname(), "registry": registry.settings.display_url},
        "files": {member: sha256_of(data) for member, data in files.items()},
        "version": _exportable(info),
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, manifest_bytes)
            archive.writestr(MANIFEST_CHECKSUM, sha256_of(manifest_bytes) + "\n")
            for member, data in files.items():
                archive.writestr(member, data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _exportable(info: VersionInfo) -> dict[str, Any]:
    data = info.as_dict()
    for local_only in ("aliases", "archived"):
        data.pop(local_only, None)
    return data


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and member bytes of an archive: sizes checked before anything is unpacked,
    the manifest checked against its own sha256 and each member against the manifest's."""
    if not path.is_file():
        why = "it is a directory" if path.is_dir() else "no such file"
        raise ArtifactError(f"{path} is not a readable modeldeck export: {why}")
    check_zip(path, str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            manifest_bytes = _member(archive, MANIFEST, path)
            manifest = _parse_manifest(manifest_bytes, path)
            if manifest["format_version"] >= 2:
                claimed = _member(archive, MANIFEST_CHECKSUM, path).decode("ascii", "replace").strip()
                if claimed != sha256_of(manifest_bytes):
                    raise ArtifactError(
                        f"{path}: {MANIFEST} does not match its checksum (edited after export, or "
                        "corrupted); nothing was imported"
                    )
            files = {
                member: _checked_member(archive, member, digest, path)
                for member, digest in manifest["files"].items()
            }
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable modeldeck export: {exc}") from exc
    return manifest, files


def _member(archive: zipfile.ZipFile, member: str, path: Path) -> bytes:
    try:
        return archive.read(member)
    except KeyError:
        raise ArtifactError(f"{path} is not a readable modeldeck export: it has no {member}") from None


def _checked_member(archive: zipfile.ZipFile, member: str, digest: str, path: Path) -> bytes:
    """A member's bytes, read in chunks while hashing, refused unless they match `digest`."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise ArtifactError(f"{path} is not a readable modeldeck export: it has no {member}") from None
    hasher, chunks = hashlib.sha256(), []
    with archive.open(info) as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            chunks.append(chunk)
    if hasher.hexdigest() != digest:
        raise ArtifactError(
            f"{path}: {member} does not match its checksum (archive corrupted or tampered with); "
            "nothing was imported"
        )
    return b"".join(chunks)


def _parse_manifest(data: bytes, path: Path) -> dict[str, Any]:
    """The manifest, its shape checked field by field (one line naming the field if not)."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"{path} is not a readable modeldeck export: {MANIFEST} is not JSON ({exc})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{path} is not a modeldeck export (format {found!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad(path, "format_version", "a whole number")
    if version > FORMAT_VERSION:
        raise ArtifactError(f"{path} was exported by a newer modeldeck; upgrade to import it")
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_MEMBER not in files:
        raise ArtifactError(f"{path} has no {MODEL_MEMBER} in its manifest")
    for member, digest in files.items():
        if member not in _MEMBERS:
            raise _bad(path, f"files.{member}", f"one of {', '.join(_MEMBERS)}")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise _bad(path, f"files.{member}", "a sha256 (64 hex digits)")
    if not isinstance(manifest.get("exported_from", {}), dict):
        raise _bad(path, "exported_from", "an object")
    meta = manifest.get("version")
    if not isinstance(meta, dict):
        raise _bad(path, "version", "an object")
    for key, kind, what in [
        ("name", str, "a string"),
        ("version", int, "a whole number"),
        ("artifact_sha256", str, "a string"),
        ("signature", dict, "an object"),
        ("python_version", str, "a string"),
        ("numpy_version", str, "a string"),
    ]:
        if not isinstance(meta.get(key), kind):
            raise _bad(path, f"version.{key}", what)
    for key, kind, what in [
        ("description", str, "a string"),
        ("tags", dict, "an object"),
        ("metrics", dict, "an object"),
        ("origin", dict, "an object"),
        ("created_by", str, "a string"),
        ("created_at", str, "a string"),
    ]:
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise _bad(path, f"version.{key}", what)
    for key, value in (meta.get("metrics") or {}).items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _bad(path, f"version.metrics.{key}", "a number")
    for key, value in (meta.get("tags") or {}).items():
        if not isinstance(value, str):
            raise _bad(path, f"version.tags.{key}", "a string")
    return manifest


def _bad(path: Path, field: str, expected: str) -> ArtifactError:
    return ArtifactError(f"{path}: manifest field {field!r} must be {expected}; nothing was imported")


def import_version(
    registry: Registry,
    path: Path,
    name: str | None = None,
    trust_types: tuple[str, ...] = (),
    keep_number: bool = False,
) -> VersionInfo:
    """Register the archive at `path` as the next version of `name` (default: its exported name);
    with `keep_number`, as the version number it was exported with (see `_number_from`)."""
    manifest, files = read_archive(path)
    meta = manifest["version"]
    model_bytes = files[MODEL_MEMBER]
    where = f"{path}: {MODEL_MEMBER}"
    check_zip(model_bytes, where)
    types = untrusted_types_of(model_bytes)
    unknown = types_needing_trust(types, trust_types)
    if unknown:
        raise ArtifactError(untrusted_message(path, unknown))
    # Checksums prove the archive is intact, not that it holds a model: load it (safely, with the
    # types just checked) so a non-model is refused now rather than at the first `load`, and read
    # from it what the manifest merely claims.
    estimator = load_model(model_bytes, types, where)
    check_is_model(estimator, where)
    signature = _checked_signature(meta["signature"], estimator, path)
    output = output_spec(estimator)
    reference_bytes = files.get(REFERENCE_MEMBER)
    reference_rows, profile_bytes = 0, None
    if reference_bytes is not None:
        reference_rows, profile_bytes = _reference(
            reference_bytes, signature, output, f"{path}: {REFERENCE_MEMBER}"
        )
    exported_from = manifest.get("exported_from") or {}
    origin: dict[str, Any] = {
        "imported_from": {
            "model": meta["name"],
            "version": meta["version"],
            "sha256": meta["artifact_sha256"],
            "host": exported_from.get("host"),
            "registry": exported_from.get("registry"),
            "exported_at": manifest.get("exported_at"),
            "created_at": meta.get("created_at"),
            "created_by": meta.get("created_by"),
            "manifest_checked": manifest["format_version"] >= 2,
        },
    }
    if meta.get("origin"):
        origin["previous_origin"] = meta["origin"]
    if keep_number:
        _number_from(registry, name or meta["name"], int(meta["version"]))
    cls = type(estimator)
    captured = Captured(
        model_bytes=model_bytes,
        trusted_types=types,
        estimator_class=f"{cls.__module__}.{cls.__qualname__}",
        params=json_params(estimator),
        python_version=meta["python_version"],
        sklearn_version=recorded_sklearn_version(model_bytes) or str(meta.get("sklearn_version", "unknown")),
        numpy_version=meta["numpy_version"],
        signature=signature,
        output=output,
        reference_bytes=reference_bytes,
        reference_rows=reference_rows,
        profile_bytes=profile_bytes,
        origin=origin,
    )
    return registry.add_version(
        captured,
        name or meta["name"],
        description=meta.get("description") or "",
        tags=meta.get("tags") or {},
        metrics=meta.get("metrics") or {},
        source=str(path.resolve()),
    )


def _number_from(registry: Registry, name: str, number: int) -> None:
    """Make `number` the next version of model `name` (created if new), so an imported version keeps
    the number it had; refused when the model already has a version numbered `number` or higher."""
    from sqlmodel import select

    from registry.refs import check_model_name
    from registry.schema import RegisteredModel

    check_model_name(name)
    with registry.db.write() as session:
        model = session.exec(
            select(RegisteredModel).where(RegisteredModel.name == name).with_for_update()
        ).first()
        if model is None:
            model = RegisteredModel(name=name)
        elif model.next_version > number:
            raise RegistryError(
                f"cannot keep version {number}: model {name!r} here is already at version "
                f"{model.next_version - 1}; import it without keeping its number"
            )
        model.next_version = number
        session.add(model)


def _checked_signature(signature: dict[str, Any], estimator: Any, path: Path) -> dict[str, Any]:
    """The manifest's signature, refused unless its columns are well formed and match the model's
    features (names, when the model has them, and count)."""
    columns = signature.get("columns")
    if not isinstance(columns, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("name"), str)
        and isinstance(c.get("dtype"), str)
        and c.get("kind") in ("numeric", "categorical")
        and isinstance(c.get("nullable"), bool)
        for c in columns
    ):
        raise _bad(path, "version.signature.columns", "a list of {name, dtype, kind, nullable}")
    names = [c["name"] for c in columns]
    model_names = model_feature_names(estimator)
    n_features = getattr(estimator, "n_features_in_", None)
    if (model_names is not None and names != model_names) or (
        n_features is not None and len(names) != n_features
    ):
        raise ArtifactError(
            f"{path}: the manifest's signature ({len(names)} columns: {', '.join(names[:5])}) does not match "
            f"the model's features ({n_features} columns); nothing was imported"
        )
    return {"named": model_names is not None, "columns": columns}


def _reference(
    data: bytes, signature: dict[str, Any], output: dict[str, Any], what: str
) -> tuple[int, bytes]:
    """Rows and drift profile of an archived reference sample (checked for size, then decoded
    without pickles)."""
    from registry.reference import decode

    check_zip(data, what)
    try:
        sample = decode(data)
        return sample.rows, profile_of(sample, signature, output)
    except Exception as exc:  # numpy raises several types for a damaged .npz
        raise ReferenceMismatch(f"{what} is not a readable reference sample: {exc}") from exc
