"""Write paths that run on every registration and alias move, in SQLAlchemy Core.

Each runs inside the caller's write transaction (see `store.Database.write`); nothing here commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from registry import history as ledger
from registry.errors import ModelNotFound
from registry.queries import ALIASES, MODELS, VERSIONS
from registry.schema import Event, utcnow

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


def lock_model(conn: Connection, name: str, create: bool = False) -> tuple[int, int]:
    """`(id, next_version)` of a model, its row locked for this transaction (PostgreSQL; SQLite's
    writer lock covers it). With `create`, a missing model is created first, safely under races."""
    found = conn.execute(_LOCK_MODEL, {"name": name}).first()
    if found is None and create:
        upsert: Any  # each dialect's insert() has its own type, both with on_conflict_do_nothing()
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        now = utcnow()
        conn.execute(
            upsert(MODELS)
            .values(name=name, description="", next_version=1, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        found = conn.execute(_LOCK_MODEL, {"name": name}).first()
    if found is None:
        from registry.queries import model_id

        model_id(conn, name)  # raises ModelNotFound naming the known models
        raise ModelNotFound(f"no model {name!r}")  # pragma: no cover - model_id raised
    return found[0], found[1]


# Built once with bind parameters: building (and cache-keying) a statement per call cost more than
# running it (a third of a registration on SQLite).
_ADVANCE = (
    update(MODELS)
    .where(MODELS.c.id == bindparam("mid"))
    .values(next_version=bindparam("next_version"), updated_at=bindparam("now"))
)
_TOUCH = update(MODELS).where(MODELS.c.id == bindparam("mid")).values(updated_at=bindparam("now"))
_INSERT_VERSION = insert(VERSIONS)
_INSERT_EVENT = insert(EVENTS)


def insert_version(conn: Connection, model_id: int, number: int, values: dict[str, Any]) -> dict[str, Any]:
    """Insert version `number` of a model and advance its counter; return the full row."""
    now = utcnow()
    row = {**values, "model_id": model_id, "version": number, "created_at": now, "archived_at": None}
    conn.execute(_ADVANCE, {"mid": model_id, "next_version": number + 1, "now": now})
    key = conn.execute(_INSERT_VERSION, row).inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    row["id"] = key[0]
    return row


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
    conn.execute(_INSERT_EVENT, row)
