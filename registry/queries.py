"""The lookups the write paths run inside their transactions, in SQLAlchemy Core (no ORM objects).

The read queries themselves (listings, `get`, the ledger) are plain SQL in `registry.reads`, shared
with the light reader of the CLI and console; `get_version` and `not_found` run them here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, select

from registry import reads
from registry.errors import ModelNotFound
from registry.info import VersionInfo
from registry.refs import Ref
from registry.schema import ModelAlias, ModelVersion, RegisteredModel, VersionTag
from registry.store import runner

# SQLModel sets __table__ on every table class but does not declare it to type checkers.
MODELS = RegisteredModel.__table__  # type: ignore[attr-defined]
VERSIONS = ModelVersion.__table__  # type: ignore[attr-defined]
ALIASES = ModelAlias.__table__  # type: ignore[attr-defined]
TAGS = VersionTag.__table__  # type: ignore[attr-defined]


_MODEL_ID = select(MODELS.c.id).where(MODELS.c.name == bindparam("name"))


def model_id(conn: Connection, name: str) -> int:
    """The row id of a model; ModelNotFound naming the known models if there is none."""
    found = conn.execute(_MODEL_ID, {"name": name}).scalar()
    if found is None:
        known = conn.execute(select(MODELS.c.name).order_by(MODELS.c.name).limit(20)).scalars().all()
        hint = f"; known: {', '.join(known)}" if known else "; the registry is empty"
        raise ModelNotFound(f"no model {name!r}{hint}")
    return found


def _version_statements(columns: Any) -> dict[str, Any]:
    """The lookups by version, by alias and of the newest version, built once with bind parameters
    (building a statement costs more than running it on SQLite)."""
    base = (
        select(columns)
        .join(MODELS, MODELS.c.id == VERSIONS.c.model_id)
        .where(MODELS.c.name == bindparam("name"))
    )
    newest = base.order_by(VERSIONS.c.version.desc()).limit(1)
    return {
        "version": base.where(VERSIONS.c.version == bindparam("version")),
        "alias": base.join(
            ALIASES, and_(ALIASES.c.version_id == VERSIONS.c.id, ALIASES.c.alias == bindparam("alias"))
        ),
        "latest": newest.where(VERSIONS.c.archived_at.is_(None)),
        "latest_any": newest,
    }


_ID_BY = _version_statements(VERSIONS.c.id)


def _lookup(statements: dict[str, Any], ref: Ref, include_archived: bool) -> tuple[Any, dict[str, Any]]:
    if ref.alias is not None:
        return statements["alias"], {"name": ref.name, "alias": ref.alias}
    if ref.version is not None:
        return statements["version"], {"name": ref.name, "version": ref.version}
    return statements["latest_any" if include_archived else "latest"], {"name": ref.name}


def version_id(conn: Connection, ref: Ref, include_archived: bool = False) -> int:
    """The row id of the version a reference points at; a clear error if there is none."""
    found = conn.execute(*_lookup(_ID_BY, ref, include_archived)).scalar()
    if found is None:
        raise not_found(conn, ref)
    return found


def get_version(conn: Connection, ref: Ref, include_archived: bool = False) -> VersionInfo:
    """The full version a reference points at, with its aliases and tags (`registry.reads`)."""
    return reads.get_version(runner(conn), ref, include_archived)


def not_found(conn: Connection, ref: Ref) -> Exception:
    """The error for a reference that matched nothing, naming what does exist."""
    return reads.not_found(runner(conn), ref)


version_info = reads.version_info
