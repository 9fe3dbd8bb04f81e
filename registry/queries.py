"""Read paths of the registry in plain SQLAlchemy Core: one join per lookup, no ORM objects.

Reads are what the CLI and console do all day, so they avoid the ORM's per-row cost: `get` is two
statements (the version with its model, then its aliases and tags together) and `versions` reads
summary columns only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, and_, bindparam, literal, select, type_coerce, union_all

from registry.errors import ModelNotFound, VersionNotFound
from registry.info import VersionInfo, VersionSummary
from registry.refs import Ref
from registry.schema import ModelAlias, ModelVersion, RegisteredModel, VersionTag

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


_ROW_BY = _version_statements(VERSIONS)
_ID_BY = _version_statements(VERSIONS.c.id)
_LABELS = union_all(
    select(literal("a"), ALIASES.c.alias, literal("")).where(ALIASES.c.version_id == bindparam("vid")),
    select(literal("t"), TAGS.c.key, TAGS.c.value).where(TAGS.c.version_id == bindparam("vid")),
)


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
    """The full version a reference points at, with its aliases and tags."""
    row = conn.execute(*_lookup(_ROW_BY, ref, include_archived)).mappings().first()
    if row is None:
        raise not_found(conn, ref)
    aliases: list[str] = []
    tags: dict[str, str] = {}
    for kind, key, value in conn.execute(_LABELS, {"vid": row["id"]}):
        if kind == "a":
            aliases.append(key)
        else:
            tags[key] = value
    return version_info(ref.name, row, sorted(aliases), tags)


def not_found(conn: Connection, ref: Ref) -> Exception:
    """The error for a reference that matched nothing, naming what does exist."""
    mid = model_id(conn, ref.name)
    if ref.alias is not None:
        names = conn.execute(select(ALIASES.c.alias).where(ALIASES.c.model_id == mid)).scalars().all()
        known = f"; its aliases: {', '.join(sorted(names))}" if names else "; it has no aliases"
        return VersionNotFound(f"model {ref.name!r} has no alias {ref.alias!r}{known}")
    numbers = (
        conn.execute(
            select(VERSIONS.c.version).where(VERSIONS.c.model_id == mid).order_by(VERSIONS.c.version)
        )
        .scalars()
        .all()
    )
    if ref.version is None:
        return VersionNotFound(
            f"model {ref.name!r} has no versions" + (" that are not archived" if numbers else "")
        )
    known = f"; its versions: {number_ranges(list(numbers))}" if numbers else "; it has no versions"
    return VersionNotFound(f"model {ref.name!r} has no version {ref.version}{known}")


def number_ranges(numbers: list[int]) -> str:
    """`[1, 2, 3, 5]` as `'1-3, 5'`."""
    parts: list[list[int]] = []
    for n in numbers:
        if parts and parts[-1][-1] == n - 1:
            parts[-1].append(n)
        else:
            parts.append([n])
    return ", ".join(str(p[0]) if len(p) == 1 else f"{p[0]}-{p[-1]}" for p in parts)


def _summary_statements(sqlite: bool) -> dict[str, Any]:
    """The listing's statements, built once per dialect with bind parameters."""
    created = type_coerce(VERSIONS.c.created_at, String) if sqlite else VERSIONS.c.created_at
    rows = (
        select(
            VERSIONS.c.id,
            VERSIONS.c.version,
            VERSIONS.c.estimator_class,
            VERSIONS.c.description,
            type_coerce(VERSIONS.c.metrics, String),
            created,
            VERSIONS.c.created_by,
            VERSIONS.c.archived_at.is_not(None),
            VERSIONS.c.artifact_sha256,
            VERSIONS.c.parent_version,
        )
        .where(VERSIONS.c.model_id == bindparam("mid"))
        .order_by(VERSIONS.c.version)
    )
    return {
        "all": rows,
        "visible": rows.where(VERSIONS.c.archived_at.is_(None)),
        "aliases": select(ALIASES.c.version_id, ALIASES.c.alias)
        .where(ALIASES.c.model_id == bindparam("mid"))
        .order_by(ALIASES.c.alias),
        "tags": select(TAGS.c.version_id, TAGS.c.key, TAGS.c.value)
        .join(VERSIONS, VERSIONS.c.id == TAGS.c.version_id)
        .where(VERSIONS.c.model_id == bindparam("mid")),
    }


_SUMMARY = {True: _summary_statements(sqlite=True), False: _summary_statements(sqlite=False)}


def list_versions(conn: Connection, name: str, include_archived: bool = False) -> list[VersionSummary]:
    """Summaries of a model's versions, oldest first."""
    params = {"mid": model_id(conn, name)}
    sqlite = conn.dialect.name == "sqlite"
    statements = _SUMMARY[sqlite]
    aliases: dict[int, list[str]] = {}
    for version_id, alias in conn.execute(statements["aliases"], params):
        aliases.setdefault(version_id, []).append(alias)
    tags: dict[int, dict[str, str]] = {}
    for version_id, key, value in conn.execute(statements["tags"], params):
        tags.setdefault(version_id, {})[key] = value
    loads, parse = json.loads, _parse_sqlite_time if sqlite else _as_utc
    rows = conn.execute(statements["all" if include_archived else "visible"], params)
    return [
        VersionSummary(
            name=name,
            version=version,
            estimator_class=cls,
            description=description,
            metrics=loads(metrics) if isinstance(metrics, str) else (metrics or {}),
            created_at=parse(created),
            created_by=by,
            archived=bool(archived),
            artifact_sha256=sha,
            parent_version=parent,
            aliases=aliases.get(vid, []),
            tags=tags.get(vid, {}),
        )
        for vid, version, cls, description, metrics, created, by, archived, sha, parent in rows
    ]


def _parse_sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def version_info(name: str, row: Any, aliases: list[str], tags: dict[str, str]) -> VersionInfo:
    """A VersionInfo from a `model_version` row (a Core mapping or the dict just inserted)."""
    get = row.__getitem__
    return VersionInfo(
        name=name,
        version=get("version"),
        estimator_class=get("estimator_class"),
        created_at=get("created_at"),
        created_by=get("created_by"),
        artifact_sha256=get("artifact_sha256"),
        artifact_size=get("artifact_size"),
        trusted_types=list(get("trusted_types")),
        params=dict(get("params")),
        signature=dict(get("signature")),
        output=dict(get("output")),
        metrics=dict(get("metrics")),
        description=get("description"),
        python_version=get("python_version"),
        sklearn_version=get("sklearn_version"),
        numpy_version=get("numpy_version"),
        reference_sha256=get("reference_sha256"),
        reference_rows=get("reference_rows"),
        source=get("source"),
        origin=dict(get("origin") or {}),
        parent_version=get("parent_version"),
        archived=get("archived_at") is not None,
        aliases=aliases,
        tags=tags,
        profile_sha256=row.get("profile_sha256"),
    )
