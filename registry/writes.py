"""Write paths that run on every registration and alias move.

Each runs inside the caller's write transaction; nothing here commits. `lock_model`, `move_alias`
and `record` take a SQLAlchemy connection (`store.Database.write`); registration and PostgreSQL's
alias move run on the driver's own connection (`store.Database.driver_write`), where SQLAlchemy's
per-statement work cost as much as the statements.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from registry import history as ledger
from registry import reads
from registry.actor import host_label
from registry.blobs import LOCK_SHARED
from registry.errors import ModelNotFound
from registry.info import VersionInfo
from registry.queries import ALIASES, MODELS, VERSIONS
from registry.refs import Ref
from registry.schema import Event, utcnow
from registry.store import artifact_lock_key

# SQLModel sets __table__ on every table class but does not declare it to type checkers.
EVENTS = Event.__table__  # type: ignore[attr-defined]

_LOCK_MODEL = (
    select(MODELS.c.id, MODELS.c.next_version).where(MODELS.c.name == bindparam("name")).with_for_update()
)
_ALIAS_TARGET = (
    select(ALIASES.c.version_id, VERSIONS.c.version)
    .join(VERSIONS, VERSIONS.c.id == ALIASES.c.version_id)
    .where(ALIASES.c.model_id == bindparam("model_id"), ALIASES.c.alias == bindparam("alias"))
)


def lock_model(conn: Connection, name: str) -> tuple[int, int]:
    """`(id, next_version)` of a model, its row locked for this transaction (PostgreSQL; SQLite's
    writer lock covers it); ModelNotFound naming the known models if there is none."""
    found = conn.execute(_LOCK_MODEL, {"name": name}).first()
    if found is None:
        from registry.queries import model_id

        model_id(conn, name)  # raises ModelNotFound naming the known models
        raise ModelNotFound(f"no model {name!r}")  # pragma: no cover - model_id raised
    return found[0], found[1]


# Built once with bind parameters: building (and cache-keying) a statement per call cost more than
# running it.
_TOUCH = update(MODELS).where(MODELS.c.id == bindparam("mid")).values(updated_at=bindparam("now"))
_INSERT_EVENT = insert(EVENTS)


def move_alias(
    conn: Connection,
    model: tuple[int, str],
    alias: str,
    version: tuple[int, int],
    actor: str,
    reason: str = "",
) -> None:
    """Point `alias` of `model` (id, name) at `version` (row id, number), and record the move."""
    model_id, name = model
    version_id, number = version
    now = utcnow()
    previous = conn.execute(_ALIAS_TARGET, {"model_id": model_id, "alias": alias}).first()
    if previous is None:
        conn.execute(
            insert(ALIASES).values(model_id=model_id, alias=alias, version_id=version_id, updated_at=now)
        )
    else:
        conn.execute(
            update(ALIASES)
            .where(ALIASES.c.model_id == model_id, ALIASES.c.alias == alias)
            .values(version_id=version_id, updated_at=now)
        )
    conn.execute(_TOUCH, {"mid": model_id, "now": now})
    record(
        conn,
        name,
        ledger.ALIAS_SET,
        actor,
        alias=alias,
        from_version=previous[1] if previous else None,
        to_version=number,
        reason=reason,
    )


def record(conn: Connection, name: str, kind: str, actor: str, **fields: Any) -> None:
    """Append one event to the ledger."""
    row = {
        "deployment": None,
        "alias": None,
        "from_version": None,
        "to_version": None,
        "reason": "",
        **fields,
        "at": utcnow(),
        "model_name": name,
        "kind": kind,
        "actor": actor,
    }
    row["detail"] = fields.get("detail") or {}
    if conn.dialect.name == "postgresql" and "host" not in row["detail"]:
        row["detail"] = {**row["detail"], "host": host_label()}  # a shared registry: where it happened
    conn.execute(_INSERT_EVENT, row)


# ---------------------------------------------------------------------- PostgreSQL: one statement each
# On PostgreSQL a registration is one data-modifying statement (BEGIN, it, COMMIT: three round trips
# where the steps above take seven) and an alias move one statement after the model's row lock. They
# run on the psycopg connection itself (`store.Database.driver_write`: SQLAlchemy's per-statement work
# cost as much as a round trip), in one transaction, so an error or a crash before COMMIT leaves nothing.
# Placeholders are psycopg's (%(name)s); the statements are prepared by psycopg after a few runs.

_VERSION_VALUES = (
    "artifact_sha256",
    "artifact_size",
    "artifact_format",
    "trusted_types",
    "estimator_class",
    "params",
    "python_version",
    "sklearn_version",
    "numpy_version",
    "signature",
    "output",
    "metrics",
    "description",
    "reference_sha256",
    "reference_rows",
    "profile_sha256",
    "source",
    "origin",
    "parent_version",
    "created_by",
)
_JSON_VALUES = frozenset({"trusted_types", "params", "signature", "output", "metrics", "origin"})


def _value(column: str) -> str:
    return f"CAST(%({column})s AS json)" if column in _JSON_VALUES else f"%({column})s"


# The model's counter moves under its row lock (the UPDATE waits for a concurrent registration and
# then reads its committed counter), so concurrent registrations get distinct numbers; a model that
# does not exist yet is inserted, and when another transaction inserts it first the statement returns
# no row and is run again (it then finds the row). It runs after the blobs' shared locks were taken
# (`blobs.LOCK_SHARED`, an earlier statement: its snapshot is later), and says which the database holds.
_PG_REGISTER = (
    "WITH bumped AS ("
    " UPDATE registered_model SET next_version = next_version + 1, updated_at = %(now)s"
    " WHERE name = %(name)s RETURNING id, next_version - 1 AS number"
    "), created AS ("
    " INSERT INTO registered_model (name, description, next_version, created_at, updated_at)"
    " SELECT %(name)s, '', 2, %(now)s, %(now)s WHERE NOT EXISTS (SELECT FROM bumped)"
    " ON CONFLICT (name) DO NOTHING RETURNING id, 1 AS number"
    "), model AS (SELECT id, number FROM bumped UNION ALL SELECT id, number FROM created"
    "), added AS ("
    f" INSERT INTO model_version (model_id, version, {', '.join(_VERSION_VALUES)}, created_at, archived_at)"
    f" SELECT model.id, model.number, {', '.join(map(_value, _VERSION_VALUES))}, %(now)s, NULL FROM model"
    " RETURNING id, version"
    "), tagged AS ("
    " INSERT INTO version_tag (version_id, key, value)"
    " SELECT added.id, t.key, t.value FROM added,"
    " unnest(CAST(%(tag_keys)s AS varchar[]), CAST(%(tag_values)s AS varchar[])) AS t(key, value)"
    "), logged AS ("
    " INSERT INTO event (at, model_name, kind, actor, deployment, alias, from_version, to_version,"
    " reason, detail)"
    " SELECT %(now)s, %(name)s, %(kind)s, %(created_by)s, NULL, NULL, NULL, added.version, '',"
    " CAST(%(detail)s AS json) FROM added"
    ")"
    " SELECT model.id, added.id, added.version,"
    " ARRAY(SELECT sha256 FROM blob WHERE sha256 = ANY(CAST(%(shas)s AS varchar[])))"
    " FROM model JOIN added ON added.version = model.number"
)


def register_postgres(
    raw: Any,
    name: str,
    values: dict[str, Any],
    tags: dict[str, str],
    detail: dict[str, Any],
    blobs: list[str],
) -> tuple[dict[str, Any], list[str]]:
    """Add the next version of `name` (created if missing) with its tags and ledger entry, in one
    statement on the psycopg connection `raw` (in a READ COMMITTED transaction), after taking the
    shared locks of `blobs` (before the model's row: a registration waiting for a delete of its blobs
    holds nothing else); return its row and those of `blobs` the database does not hold (a delete took
    them). The lock and the statement are pipelined: one round trip."""
    now = utcnow()
    params = {
        **{k: json.dumps(values[k]) if k in _JSON_VALUES else values[k] for k in _VERSION_VALUES},
        "name": name,
        "now": now,
        "kind": ledger.REGISTERED,
        "tag_keys": list(tags),
        "tag_values": list(tags.values()),
        "detail": json.dumps(detail),
        "shas": blobs,
    }
    with raw.pipeline():
        raw.execute(LOCK_SHARED, {"keys": [artifact_lock_key(sha) for sha in blobs]})
        registered = raw.execute(_PG_REGISTER, params)
    found = registered.fetchone()
    for _ in range(2):  # a lost race to create the model: at most once in practice
        if found is not None:
            break
        found = raw.execute(_PG_REGISTER, params).fetchone()
    if found is None:  # pragma: no cover - the model's row exists after the first conflict
        raise ModelNotFound(f"model {name!r} could not be created")
    model_id, version_id, number, held = found
    return _version_row(values, version_id, model_id, number, now), [s for s in blobs if s not in held]


_PG_LOCK_MODEL = "SELECT id FROM registered_model WHERE name = %(name)s FOR UPDATE"


def _pg_move_alias(by_alias: bool) -> str:
    """The alias move as one statement, run after `_PG_LOCK_MODEL` (so it reads what the lock's
    previous holder committed): the target version's row, its aliases and tags, and, when the target
    exists and is not archived, the alias upserted, the model touched and the move recorded."""
    columns = ", ".join(f"model_version.{c}" for c in reads.VERSION_COLUMNS)
    target = (
        f"SELECT {columns} FROM model_version JOIN model_alias ON model_alias.version_id = model_version.id"
        " AND model_alias.model_id = (SELECT id FROM model) AND model_alias.alias = %(by)s"
        if by_alias
        else f"SELECT {columns} FROM model_version WHERE model_version.model_id = (SELECT id FROM model)"
        " AND model_version.version = %(by)s"
    )
    return (
        "WITH model AS (SELECT id FROM registered_model WHERE name = %(name)s"
        f"), target AS ({target}"
        "), previous AS ("
        " SELECT model_version.version FROM model_alias"
        " JOIN model_version ON model_version.id = model_alias.version_id"
        " WHERE model_alias.model_id = (SELECT id FROM model) AND model_alias.alias = %(alias)s"
        "), moved AS ("
        " INSERT INTO model_alias (model_id, alias, version_id, updated_at)"
        " SELECT target_model.id, %(alias)s, target.id, %(now)s FROM target, model AS target_model"
        " WHERE target.archived_at IS NULL"
        " ON CONFLICT (model_id, alias) DO UPDATE"
        " SET version_id = EXCLUDED.version_id, updated_at = EXCLUDED.updated_at RETURNING version_id"
        "), touched AS ("
        " UPDATE registered_model SET updated_at = %(now)s"
        " WHERE id = (SELECT id FROM model) AND EXISTS (SELECT FROM moved)"
        "), logged AS ("
        " INSERT INTO event (at, model_name, kind, actor, deployment, alias, from_version, to_version,"
        " reason, detail)"
        " SELECT %(now)s, %(name)s, %(kind)s, %(actor)s, NULL, %(alias)s, (SELECT version FROM previous),"
        " target.version, %(reason)s, CAST('{}' AS json)"
        " FROM target JOIN moved ON moved.version_id = target.id"
        ")"
        " SELECT target.*,"
        " ARRAY(SELECT alias FROM model_alias WHERE version_id = target.id ORDER BY alias),"
        " ARRAY(SELECT key FROM version_tag WHERE version_id = target.id ORDER BY key),"
        " ARRAY(SELECT value FROM version_tag WHERE version_id = target.id ORDER BY key)"
        " FROM target"
    )


_PG_MOVE_ALIAS = {False: _pg_move_alias(False), True: _pg_move_alias(True)}


def lock_model_postgres(raw: Any, name: str) -> bool:
    """Lock the row of model `name` for this transaction on the psycopg connection `raw`; False if
    there is no such model."""
    return raw.execute(_PG_LOCK_MODEL, {"name": name}).fetchone() is not None


def move_alias_postgres(
    raw: Any, name: str, alias: str, target: Ref, actor: str, reason: str = ""
) -> VersionInfo | None:
    """Point `alias` of model `name` (its row locked by `lock_model_postgres`) at the version
    `target` names (by number or by another alias) and record the move, in one statement on the
    psycopg connection `raw`. Returns the target as it was before the move (None: no such version);
    an archived target is returned, unmoved."""
    by_alias = target.alias is not None
    params = {
        "by": target.alias if by_alias else target.version,
        "alias": alias,
        "now": utcnow(),
        "name": name,
        "kind": ledger.ALIAS_SET,
        "actor": actor,
        "reason": reason,
    }
    found = raw.execute(_PG_MOVE_ALIAS[by_alias], params).fetchone()
    if found is None:
        return None
    width = len(reads.VERSION_COLUMNS)
    row = reads.version_row(found[:width])
    aliases, keys, values = found[width:]
    return reads.version_info(name, row, list(aliases), dict(zip(keys, values, strict=True)))


# ---------------------------------------------------------------------- SQLite: straight to sqlite3
# A registration's steps (the model's counter, the version, its tags, the ledger) and `move_alias`, on
# the sqlite3 connection itself (`store.Database.driver_write`, inside BEGIN IMMEDIATE: the writer
# lock covers the model's counter and the blobs): SQLAlchemy's work was most of a registration's time.
# Times are stored as SQLAlchemy stores them on SQLite: UTC text with microseconds.

_SQ_COLUMNS = ("model_id", "version", *_VERSION_VALUES, "created_at", "archived_at")
_SQ_MODEL = "SELECT id, next_version FROM registered_model WHERE name = ?"
_SQ_NEW_MODEL = (
    "INSERT INTO registered_model (name, description, next_version, created_at, updated_at)"
    " VALUES (?, '', 1, ?, ?)"
)
_SQ_ADVANCE = "UPDATE registered_model SET next_version = ?, updated_at = ? WHERE id = ?"
_SQ_VERSION = (
    f"INSERT INTO model_version ({', '.join(_SQ_COLUMNS)}) VALUES ({', '.join('?' * len(_SQ_COLUMNS))})"
)
_SQ_TAG = "INSERT INTO version_tag (version_id, key, value) VALUES (?, ?, ?)"
_SQ_EVENT = (
    "INSERT INTO event (at, model_name, kind, actor, deployment, alias, from_version, to_version,"
    " reason, detail) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)"
)
_SQ_PREVIOUS = (
    "SELECT model_version.version FROM model_alias JOIN model_version"
    " ON model_version.id = model_alias.version_id WHERE model_alias.model_id = ? AND model_alias.alias = ?"
)
_SQ_UPSERT_ALIAS = (
    "INSERT INTO model_alias (model_id, alias, version_id, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (model_id, alias) DO UPDATE SET version_id = excluded.version_id,"
    " updated_at = excluded.updated_at"
)
_SQ_TOUCH = "UPDATE registered_model SET updated_at = ? WHERE id = ?"


def _sqlite_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def register_sqlite(
    raw: Any, name: str, values: dict[str, Any], tags: dict[str, str], detail: dict[str, Any]
) -> dict[str, Any]:
    """Add the next version of `name` (created if missing) with its tags and ledger entry, on the
    sqlite3 connection `raw` inside its write transaction; return the version's full row."""
    now = utcnow()
    stamp = _sqlite_time(now)
    found = raw.execute(_SQ_MODEL, (name,)).fetchone()
    if found is None:
        model_id, number = raw.execute(_SQ_NEW_MODEL, (name, stamp, stamp)).lastrowid, 1
    else:
        model_id, number = found
    raw.execute(_SQ_ADVANCE, (number + 1, stamp, model_id))
    stored = [json.dumps(values[k]) if k in _JSON_VALUES else values[k] for k in _VERSION_VALUES]
    version_id = raw.execute(_SQ_VERSION, (model_id, number, *stored, stamp, None)).lastrowid
    if tags:
        raw.executemany(_SQ_TAG, [(version_id, k, v) for k, v in tags.items()])
    event = (stamp, name, ledger.REGISTERED, values["created_by"], None, None, number, "", json.dumps(detail))
    raw.execute(_SQ_EVENT, event)
    return _version_row(values, version_id, model_id, number, now)


def move_alias_sqlite(
    raw: Any, model: tuple[int, str], alias: str, version: tuple[int, int], actor: str
) -> None:
    """`move_alias` on the sqlite3 connection `raw`, inside its write transaction."""
    (model_id, name), (version_id, number) = model, version
    stamp = _sqlite_time(utcnow())
    previous = raw.execute(_SQ_PREVIOUS, (model_id, alias)).fetchone()
    raw.execute(_SQ_UPSERT_ALIAS, (model_id, alias, version_id, stamp))
    raw.execute(_SQ_TOUCH, (stamp, model_id))
    moved = (stamp, name, ledger.ALIAS_SET, actor, alias, previous[0] if previous else None, number, "", "{}")
    raw.execute(_SQ_EVENT, moved)


def _version_row(
    values: dict[str, Any], version_id: int, model_id: int, number: int, now: datetime
) -> dict[str, Any]:
    """The new version's row, as a registration returns it."""
    return {
        **values,
        "id": version_id,
        "model_id": model_id,
        "version": number,
        "created_at": now,
        "archived_at": None,
    }
