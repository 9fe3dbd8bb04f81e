"""Export one version to a single archive file, and import it into another registry.

The archive is a zip holding `manifest.json` (metadata, signature and the sha256 of every other
member), `model.skops` and, if the version has one, `reference.npz`. Import verifies every checksum
before anything is stored and registers the model as the next version of its name, keeping where it
came from in `origin`.
"""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.artifacts import (
    load_model,
    sha256_of,
    types_needing_trust,
    untrusted_message,
    untrusted_types_of,
)
from registry.capture import Captured, profile_of
from registry.errors import ArtifactError
from registry.info import VersionInfo
from registry.schema import utcnow
from registry.signature import check_is_model

if TYPE_CHECKING:
    from registry.core import Registry

FORMAT = "modeldeck-export"
FORMAT_VERSION = 1
MODEL_MEMBER = "model.skops"
REFERENCE_MEMBER = "reference.npz"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
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
    """The manifest and member bytes of an archive, each member checked against its sha256."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            if manifest.get("format") != FORMAT:
                raise ArtifactError(f"{path} is not a modeldeck export (format {manifest.get('format')!r})")
            if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
                raise ArtifactError(f"{path} was exported by a newer modeldeck; upgrade to import it")
            expected: dict[str, str] = manifest.get("files") or {}
            if MODEL_MEMBER not in expected:
                raise ArtifactError(f"{path} has no {MODEL_MEMBER} in its manifest")
            files = {member: archive.read(member) for member in expected}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable modeldeck export: {exc}") from exc
    for member, data in files.items():
        if sha256_of(data) != expected[member]:
            raise ArtifactError(
                f"{path}: {member} does not match its checksum (archive corrupted or tampered with); "
                "nothing was imported"
            )
    return manifest, files


def import_version(
    registry: Registry, path: Path, name: str | None = None, trust_types: tuple[str, ...] = ()
) -> VersionInfo:
    """Register the archive at `path` as the next version of `name` (default: its exported name)."""
    manifest, files = read_archive(path)
    meta = manifest["version"]
    model_bytes = files[MODEL_MEMBER]
    types = untrusted_types_of(model_bytes)
    unknown = types_needing_trust(types, trust_types)
    if unknown:
        raise ArtifactError(untrusted_message(path, unknown))
    # Checksums prove the archive is intact, not that it holds a model: load it (safely, with the
    # types just checked) so a non-model is refused now rather than at the first `load`.
    check_is_model(load_model(model_bytes, types, f"{path}: {MODEL_MEMBER}"), f"{path}: {MODEL_MEMBER}")
    origin = {
        "imported_from": {
            "model": meta["name"],
            "version": meta["version"],
            "sha256": meta["artifact_sha256"],
            "host": manifest["exported_from"].get("host"),
            "registry": manifest["exported_from"].get("registry"),
            "exported_at": manifest["exported_at"],
            "created_at": meta.get("created_at"),
            "created_by": meta.get("created_by"),
        },
    }
    if meta.get("origin"):
        origin["previous_origin"] = meta["origin"]
    captured = Captured(
        model_bytes=model_bytes,
        trusted_types=types,
        estimator_class=meta["estimator_class"],
        params=meta.get("params", {}),
        python_version=meta["python_version"],
        sklearn_version=meta["sklearn_version"],
        numpy_version=meta["numpy_version"],
        signature=meta["signature"],
        output=meta["output"],
        reference_bytes=files.get(REFERENCE_MEMBER),
        reference_rows=int(meta.get("reference_rows", 0)) if REFERENCE_MEMBER in files else 0,
        profile_bytes=profile_of(files.get(REFERENCE_MEMBER), meta["signature"], meta["output"]),
        origin=origin,
    )
    return registry.add_version(
        captured,
        name or meta["name"],
        description=meta.get("description", ""),
        tags=meta.get("tags") or {},
        metrics=meta.get("metrics") or {},
        source=str(path.resolve()),
    )
