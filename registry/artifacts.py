"""Content-addressed artifact store and safe (skops) model serialization.

Files are named by their sha256 and written atomically (temp file, fsync, rename). Every read checks
the sha256 before the bytes are used, and models are only ever loaded with skops, trusting exactly
the types the registry recorded at registration.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from registry.errors import ArtifactDamaged, ArtifactError
from registry.files import private_dirs

#: Module roots whose *classes* are trusted when a model arrives as a .skops file or an export
#: archive (beyond skops' own defaults, which cover numpy and scipy basics). Only scikit-learn:
#: numpy.memmap or scipy's file readers would let a crafted file touch the disk. Anything else
#: must be trusted explicitly (`--trust-type`).
SAFE_MODULE_ROOTS = frozenset({"sklearn"})


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Immutable blobs under `root/sha256/<2 hex>/<64 hex>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256; a no-op if an intact copy is already there, while a
        damaged copy (tampered or truncated) is replaced."""
        return self.cache(data)[0]

    def cache(self, data: bytes) -> tuple[str, bool]:
        """Store `data` in this host's files, as `put`; its sha256 and whether it was written now."""
        digest = sha256_of(data)
        target = self.path_of(digest)
        if target.exists() and sha256_of(target.read_bytes()) == digest:
            return digest, False
        private_dirs(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, True

    def get(self, sha256: str, what: str) -> bytes:
        """The bytes stored under `sha256`, refused unless they still hash to it.

        `what` names the owner in errors, e.g. "model 'iris' version 3".
        """
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactDamaged(f"artifact of {what} is missing: {path}", "missing") from None
        actual = sha256_of(data)
        if actual != sha256:
            raise ArtifactDamaged(
                f"artifact of {what} was changed on disk after registration "
                f"(sha256 {actual[:12]}..., registered {sha256[:12]}...); refusing to load it",
                "sha256 mismatch",
            )
        return data

    def ensure(self, sha256: str, data: bytes) -> None:
        """Store `data` (whose sha256 is `sha256`) in this host's files again if it is not there (a
        concurrent delete)."""
        if not self.path_of(sha256).exists():
            self.put(data)

    def discard(self, sha256: str, conn: Any = None) -> None:
        """Remove a blob nothing refers to any more (`conn`: the database transaction deciding it,
        which a store that keeps blobs in the database uses)."""
        self.path_of(sha256).unlink(missing_ok=True)


def dump_model(estimator: Any) -> tuple[bytes, list[str]]:
    """Serialize with skops; return the bytes and the non-default types they need trusted."""
    import skops.io as sio

    data = sio.dumps(estimator)
    return data, sorted(sio.get_untrusted_types(data=data))


def untrusted_types_of(data: bytes) -> list[str]:
    """Types in a skops payload that skops does not trust by default."""
    import skops.io as sio

    try:
        return sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises several types for a payload it cannot read
        raise ArtifactError(f"not a readable skops file: {exc}") from exc


def recorded_sklearn_version(data: bytes) -> str | None:
    """The scikit-learn version an estimator was fitted under, as skops recorded it in the file's
    schema (scikit-learn keeps it in every estimator's state); None when the file does not say."""
    import io
    import json
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
        node = schema["content"]["content"]["_sklearn_version"]
        version = json.loads(node["content"]) if node.get("is_json") else node["content"]
    except Exception:  # any other layout: not recorded
        return None
    return version if isinstance(version, str) and len(version) < 32 and version.isprintable() else None


def untrusted_message(source: object, unknown: list[str]) -> str:
    """The refusal for a file or archive that needs types the user has not trusted."""
    return (
        f"{source} needs types that are not scikit-learn classes: {', '.join(unknown)}; "
        "pass --trust-type NAME for each one you trust"
    )


def types_needing_trust(types: list[str], extra_trusted: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Those of `types` not explicitly trusted and not a class of the safe module roots."""
    return [t for t in types if t not in extra_trusted and not _is_safe_class(t)]


def _is_safe_class(name: str) -> bool:
    """True for a class (not a function) under the safe module roots.

    A trusted name is something skops may *call* with arguments read from the file, so a module
    root alone is not enough: `builtins.eval`, or a helper function deep inside scikit-learn,
    would run attacker-chosen code while the file is being loaded.
    """
    import importlib

    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in SAFE_MODULE_ROOTS:
        return False
    try:
        obj = getattr(importlib.import_module(module), attr)
    except Exception:  # not importable: skops could not load it either
        return False
    return isinstance(obj, type)


def load_model(data: bytes, trusted_types: list[str], what: str) -> Any:
    """Load skops bytes, trusting only `trusted_types` (as recorded in the registry)."""
    import skops.io as sio

    needed = set(untrusted_types_of(data))
    unexpected = sorted(needed - set(trusted_types))
    if unexpected:
        raise ArtifactError(
            f"artifact of {what} contains types not trusted at registration: {', '.join(unexpected)}"
        )
    try:
        return sio.loads(data, trusted=sorted(needed))
    except Exception as exc:
        raise ArtifactError(f"cannot load artifact of {what}: {exc}") from exc
