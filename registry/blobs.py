"""Artifacts every host can read: on a shared (PostgreSQL) registry each blob is also kept in the
database (`blob` and `blob_chunk`, content-addressed, in 1 MiB chunks) and the files under
`artifacts/` are this host's cache of it. A host with an empty cache streams a blob from the database
chunk by chunk into a temporary file, hashing as it goes, and keeps it only when it hashes to its name;
a cached file that was changed is refused, as on a single host (it is never silently replaced).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from registry.artifacts import ArtifactStore, sha256_of
from registry.errors import ArtifactDamaged
from registry.files import private_dirs
from registry.schema import Blob, BlobChunk, utcnow
from registry.store import Database, artifact_lock_key

#: Bytes per stored chunk: small enough to stream, large enough that a model is a few rows.
CHUNK = 1 << 20
log = logging.getLogger("modeldeck.registry")
# SQLModel sets __table__ on every table class but does not declare it to type checkers.
_BLOBS = Blob.__table__  # type: ignore[attr-defined]
_CHUNKS = BlobChunk.__table__  # type: ignore[attr-defined]
#: The shared advisory locks of blobs (`store.artifact_lock_key`, in `keys`) for the transaction:
#: held by whatever stores or registers them, so a delete's exclusive lock waits.
LOCK_SHARED = "SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(CAST(%(keys)s AS bigint[])) AS k"
_INSERT_CHUNK = "INSERT INTO blob_chunk (sha256, seq, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
_INSERT_BLOB = (
    "INSERT INTO blob (sha256, size, chunks, created_at) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_CHUNK = sa.select(_CHUNKS.c.data).where(
    _CHUNKS.c.sha256 == sa.bindparam("sha256"), _CHUNKS.c.seq == sa.bindparam("seq")
)


class SharedArtifactStore(ArtifactStore):
    """An `ArtifactStore` whose blobs live in the registry's database, cached on this host's disk."""

    def __init__(self, root: Path, db: Database) -> None:
        super().__init__(root)
        self.db = db

    def put(self, data: bytes) -> str:
        """Cache `data` here and store it in the database (once: a blob already there is kept)."""
        digest = super().put(data)
        self.store_missing({digest: data})
        return digest

    def store_missing(self, blobs: Mapping[str, bytes]) -> None:
        """Store in the database those of `blobs` (by sha256) it lacks: one query to find them."""
        for sha in self.missing(blobs):
            self._store(sha, blobs[sha])

    def missing(self, shas: Iterable[str]) -> list[str]:
        """Those of `shas` the database does not hold, in their order."""
        wanted = list(shas)
        with self.db.connect() as conn:
            held = set(conn.execute(sa.select(_BLOBS.c.sha256).where(_BLOBS.c.sha256.in_(wanted))).scalars())
        return [sha for sha in wanted if sha not in held]

    def stored(self, sha256: str) -> bool:
        """Whether the database holds the blob `sha256`."""
        return not self.missing([sha256])

    def _store(self, digest: str, data: bytes) -> None:
        with self.db.driver_write() as raw:
            store_blob(raw, digest, data)

    def get(self, sha256: str, what: str) -> bytes:
        """The blob's bytes from this host's cache, fetched from the database first when the cache
        lacks it; refused unless they hash to `sha256`."""
        if not self.path_of(sha256).exists():
            self.fetch(sha256, what)
        return super().get(sha256, what)

    def fetch(self, sha256: str, what: str) -> Path:
        """Stream the blob `sha256` from the database into this host's cache (checked before it is
        kept); ArtifactDamaged when the database lacks it or holds other bytes under its name."""
        target = self.path_of(sha256)
        private_dirs(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".fetch-")
        digest, size, expected = hashlib.sha256(), 0, 0
        try:
            with os.fdopen(fd, "wb") as handle, self.db.connect() as conn:
                head = conn.execute(sa.select(_BLOBS.c.chunks).where(_BLOBS.c.sha256 == sha256)).first()
                if head is None:
                    raise ArtifactDamaged(
                        f"artifact of {what} is missing: {target} (neither in this host's cache nor in "
                        "the registry's database)",
                        "missing",
                    )
                expected = head[0]
                seen = 0
                for seq in range(expected):  # one chunk per query: memory stays one chunk
                    chunk = conn.execute(_CHUNK, {"sha256": sha256, "seq": seq}).scalar()
                    if chunk is None:
                        break
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    seen += 1
                handle.flush()
                os.fsync(handle.fileno())
            if seen != expected or digest.hexdigest() != sha256:
                raise ArtifactDamaged(
                    f"artifact of {what} in the registry's database does not match its checksum "
                    f"({seen} of {expected} chunks, sha256 {digest.hexdigest()[:12]}..., registered "
                    f"{sha256[:12]}...); refusing to load it",
                    "sha256 mismatch",
                )
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("fetched %s (%d bytes) from the registry's database into %s", sha256[:12], size, target)
        return target

    def share_local(self) -> int:
        """Store in the database every blob a version refers to that only this host's cache holds
        (a registry from before artifacts were shared, or a registration that crashed halfway);
        the number stored. A cached file that does not hash to its name is left out."""
        columns = ("artifact_sha256", "reference_sha256", "profile_sha256")
        with self.db.connect() as conn:
            wanted = {
                sha
                for column in columns
                for (sha,) in conn.execute(sa.text(f"SELECT DISTINCT {column} FROM model_version"))
                if sha
            }
            stored = {sha for (sha,) in conn.execute(sa.select(_BLOBS.c.sha256))}
        shared = 0
        for sha in sorted(wanted - stored):
            path = self.path_of(sha)
            if path.exists() and sha256_of(data := path.read_bytes()) == sha:
                self.put(data)
                shared += 1
        return shared

    def discard(self, sha256: str, conn: sa.Connection | None = None) -> None:
        """Remove the blob from this host's cache and from the database, in the transaction of `conn`
        (the one that holds the blob's exclusive lock), else in a transaction of its own."""
        super().discard(sha256)
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.db.write()).connection()
            conn.execute(sa.delete(_CHUNKS).where(_CHUNKS.c.sha256 == sha256))
            conn.execute(sa.delete(_BLOBS).where(_BLOBS.c.sha256 == sha256))


def store_blob(raw: Any, sha256: str, data: bytes) -> None:
    """Store `data` as blob `sha256` (once: a copy already there is kept) in the transaction of the
    psycopg connection `raw`, under the blob's shared lock: a delete (which takes the exclusive lock)
    waits for it to commit, so it never removes the chunks between their insert and the blob's row."""
    raw.execute(LOCK_SHARED, {"keys": [artifact_lock_key(sha256)]})
    count = max(1, -(-len(data) // CHUNK))
    view = memoryview(data)
    with raw.cursor() as cursor:
        rows = ((sha256, seq, bytes(view[seq * CHUNK : (seq + 1) * CHUNK])) for seq in range(count))
        cursor.executemany(_INSERT_CHUNK, rows)
    raw.execute(_INSERT_BLOB, (sha256, len(data), count, utcnow()))


__all__ = ["CHUNK", "LOCK_SHARED", "SharedArtifactStore", "sha256_of", "store_blob"]
