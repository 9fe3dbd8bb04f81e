"""Least privilege on a shared PostgreSQL registry: three group roles and exactly what each may do.

- the **reader** browses and watches (the console, `models`, `versions`, `show`, `history`, `hosts`):
  SELECT on the registry's tables, also on those later migrations add (default privileges);
- the **operator** (a person's CLI or console) registers, imports, aliases, tags, archives and deletes
  versions, requests deployment changes through the database (`registry.placement`), sets
  objectives, silences and the webhook, forgets a host: the reader's rights plus those writes;
- the **supervisor** (`python -m registry.serving.control`) writes deployments, the ledger, rollups,
  alerts and their outbox and its host's heartbeat: the reader's rights plus those writes.

The ledger (`event`) is append-only for all of them, a version's row can only be archived, and
the schema (DDL, `alembic_version`) stays with its owner, who runs `modeldeck db upgrade`. The
roles are NOLOGIN groups: a person or a service logs in as a role of its own made a member of one.
A process whose role may not append to the ledger is read-only (`registry.write_access`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from registry.errors import DatabaseError, RegistryError
from registry.reader import SCHEMA_HEAD
from registry.settings import Settings
from registry.store import make_engine, translate_errors

#: The default names of the three group roles.
READER, OPERATOR, SUPERVISOR = "modeldeck_reader", "modeldeck_operator", "modeldeck_supervisor"

#: Every table of the schema at its head revision (the reader may SELECT each).
TABLES = (
    "alembic_version",
    "alert",
    "alert_delivery",
    "blob",
    "blob_chunk",
    "deployment",
    "event",
    "host",
    "metric_rollup",
    "model_alias",
    "model_tag",
    "model_version",
    "objective",
    "performance_rollup",
    "registered_model",
    "setting",
    "silence",
    "version_tag",
)

#: Tables whose `id` is a serial: an INSERT takes the next value of `<table>_id_seq` (USAGE).
SERIAL = frozenset(
    {
        "alert",
        "alert_delivery",
        "deployment",
        "event",
        "metric_rollup",
        "model_version",
        "objective",
        "performance_rollup",
        "registered_model",
        "silence",
    }
)

# Privileges per table: "INSERT", "UPDATE", "DELETE", or "UPDATE (col, ...)" for those columns only.
#: What an operator writes, and why.
OPERATOR_WRITES: dict[str, tuple[tuple[str, ...], str]] = {
    "registered_model": (
        ("INSERT", "UPDATE (description, next_version, updated_at)"),
        "a new model; its version counter, description and time (never its name)",
    ),
    "model_version": (("INSERT", "DELETE", "UPDATE (archived_at)"), "register, delete; archive and restore"),
    "model_alias": (("INSERT", "UPDATE", "DELETE"), "aliases"),
    "model_tag": (("INSERT", "UPDATE", "DELETE"), "a model's tags"),
    "version_tag": (("INSERT", "UPDATE", "DELETE"), "a version's tags"),
    "blob": (("INSERT", "DELETE"), "artifacts kept in the database, stored and discarded"),
    "blob_chunk": (("INSERT", "DELETE"), "their chunks"),
    "event": (("INSERT",), "the ledger: appended to, never changed"),
    "deployment": (("INSERT", "UPDATE"), "deployment requests through the database (registry.placement)"),
    "objective": (("INSERT", "UPDATE", "DELETE"), "objectives set and reset"),
    "silence": (("INSERT", "UPDATE"), "silences added and ended"),
    "setting": (("INSERT", "UPDATE"), "the alert webhook"),
    "alert_delivery": (("UPDATE",), "turning the webhook off discards the queued notifications"),
    "host": (("DELETE",), "modeldeck hosts forget (a host's own row is its supervisor's)"),
}

#: What a supervisor writes, and why.
SUPERVISOR_WRITES: dict[str, tuple[tuple[str, ...], str]] = {
    "registered_model": (
        ("UPDATE (updated_at)",),
        "the model's row lock a deployment change takes (SELECT ... FOR UPDATE needs an UPDATE right)",
    ),
    "deployment": (("INSERT", "UPDATE", "DELETE"), "the desired state it reconciles to, and stops"),
    "event": (("INSERT",), "the ledger: appended to, never changed"),
    "metric_rollup": (("INSERT", "UPDATE", "DELETE"), "10 s and 1 min rollups, merged and pruned"),
    "performance_rollup": (("INSERT", "DELETE"), "realised performance per minute, rewritten and pruned"),
    "alert": (("INSERT", "UPDATE", "DELETE"), "alert states, pruned when old"),
    "alert_delivery": (("INSERT", "UPDATE", "DELETE"), "the webhook's outbox"),
    "host": (("INSERT", "UPDATE"), "its host's row: join, heartbeat, leave"),
}

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class RoleNames:
    """The names of the three group roles (lower-case SQL identifiers)."""

    reader: str = READER
    operator: str = OPERATOR
    supervisor: str = SUPERVISOR

    def __post_init__(self) -> None:
        for what, name in (
            ("reader", self.reader),
            ("operator", self.operator),
            ("supervisor", self.supervisor),
        ):
            if not _NAME.fullmatch(name):
                raise RegistryError(
                    f"--{what} {name!r}: a role name here is 1-63 lower-case letters, digits and _ "
                    "(not starting with a digit)"
                )
        if len({self.reader, self.operator, self.supervisor}) != 3:
            raise RegistryError("the reader, operator and supervisor roles need three different names")

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.reader, self.operator, self.supervisor)


@dataclass(frozen=True)
class Target:
    """Where the registry's tables are: database, schema, and the role that owns them."""

    database: str
    schema: str
    owner: str


def quote(name: str) -> str:
    """A SQL identifier, double-quoted unless it is a plain lower-case one."""
    return name if _NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def plan(names: RoleNames, target: Target) -> list[tuple[str, str]]:
    """The statements, each with what it is for (a comment, or ""), that create the roles (when
    missing) and set their grants exactly: every earlier grant of theirs on the schema's tables and
    sequences is revoked first, so running them again after an upgrade leaves each role with what
    this release needs."""
    schema, everyone = quote(target.schema), ", ".join(names.all)
    creates = "".join(
        f"\n  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} NOLOGIN;"
        " END IF;"
        for role in names.all
    )
    out = [
        (f"DO $$ BEGIN{creates}\nEND $$", "the three groups (NOLOGIN), made when missing"),
        (f"GRANT {names.reader} TO {names.operator}, {names.supervisor}", "both also read everything"),
        (f"GRANT CONNECT ON DATABASE {quote(target.database)} TO {names.reader}", ""),
        (f"GRANT USAGE ON SCHEMA {schema} TO {names.reader}", ""),
        (f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {everyone}", "start from nothing"),
        (f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {everyone}", ""),
        (
            f"GRANT SELECT ON {', '.join(f'{schema}.{t}' for t in TABLES)} TO {names.reader}",
            "browse and watch: the console, models, versions, show, history, hosts",
        ),
        (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote(target.owner)} IN SCHEMA {schema}"
            f" GRANT SELECT ON TABLES TO {names.reader}",
            "tables later migrations add are readable too (for their writes, run this again)",
        ),
    ]
    for role, writes in ((names.operator, OPERATOR_WRITES), (names.supervisor, SUPERVISOR_WRITES)):
        for table, (privileges, why) in writes.items():
            out.append((f"GRANT {', '.join(privileges)} ON {schema}.{table} TO {role}", why))
        sequences = sorted(
            f"{schema}.{t}_id_seq" for t, (p, _) in writes.items() if t in SERIAL and "INSERT" in p
        )
        out.append((f"GRANT USAGE ON SEQUENCE {', '.join(sequences)} TO {role}", "serial ids of its inserts"))
    return out


def statements(names: RoleNames, target: Target) -> list[str]:
    """The statements of `plan`, without their comments."""
    return [statement for statement, _ in plan(names, target)]


def script(names: RoleNames, target: Target) -> str:
    """`plan` as a commented SQL script in one transaction, to review or to pipe into psql."""
    lines = [
        f"-- modeldeck's least-privilege roles on database {target.database}, schema {target.schema}, whose",
        f"-- tables {target.owner} owns (and keeps: DDL, `modeldeck db upgrade`). Run it as that owner with",
        '-- CREATEROLE, or as a superuser:  modeldeck db roles | psql -v ON_ERROR_STOP=1 "$URL"',
        "-- Then give each person or service a LOGIN role of its own in one group:",
        f"--   CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE {names.reader};  -- browses and watches",
        f"--   CREATE ROLE bob LOGIN PASSWORD '...' IN ROLE {names.operator};  -- registers, requests",
        f"--   CREATE ROLE host1 LOGIN PASSWORD '...' IN ROLE {names.supervisor};  -- a host's supervisor",
        "BEGIN;",
    ]
    for statement, why in plan(names, target):
        lines.append(f"{statement};" + (f"  -- {why}" if why else ""))
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def target(settings: Settings) -> Target:
    """Where the registry of `settings` keeps its tables (one query); RegistryError on SQLite, or
    when its schema is missing or not at this release's head."""
    with _engine(settings) as engine, translate_errors(settings), engine.connect() as conn:
        return _target(settings, conn)


def apply(settings: Settings, names: RoleNames) -> Target:
    """Create the roles and set their grants on the registry of `settings`, in one transaction."""
    with _engine(settings) as engine, translate_errors(settings):
        try:
            with engine.begin() as conn:
                found = _target(settings, conn)
                for statement in statements(names, found):
                    conn.exec_driver_sql(statement)
        except sa_exc.ProgrammingError as exc:  # e.g. permission denied to create role
            problem = str(exc.orig or exc).strip().splitlines()[0]
            raise DatabaseError(
                f"cannot set up the roles on {settings.display_url}: {problem}; run it as the owner of "
                "the registry's tables with CREATEROLE, or pipe `modeldeck db roles` into psql as a "
                "superuser (nothing was changed)"
            ) from None
    return found


_TARGET = (
    "SELECT current_database(), n.nspname, pg_get_userbyid(c.relowner),"
    " (SELECT version_num FROM alembic_version)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.oid = to_regclass('alembic_version')"
)


def _target(settings: Settings, conn: Connection) -> Target:
    # the table is looked for first: a query naming it fails on a database without it
    schema = conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    row = conn.exec_driver_sql(_TARGET).first() if schema is not None else None
    if row is None or row[3] != SCHEMA_HEAD:
        at = "has no modeldeck schema" if row is None else f"is at schema revision {row[3]}"
        raise DatabaseError(
            f"registry database {settings.display_url} {at}, not {SCHEMA_HEAD}: run `modeldeck db upgrade` "
            "first, as the role that is to own the tables"
        )
    return Target(database=row[0], schema=row[1], owner=row[2])


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    if settings.is_sqlite:
        raise RegistryError(
            "database roles are for a PostgreSQL registry (MODELDECK_DB_URL=postgresql+psycopg://...); "
            "a SQLite registry's access control is its file's permissions"
        )
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


__all__ = [
    "OPERATOR",
    "OPERATOR_WRITES",
    "READER",
    "SERIAL",
    "SUPERVISOR",
    "SUPERVISOR_WRITES",
    "TABLES",
    "RoleNames",
    "Target",
    "apply",
    "plan",
    "quote",
    "script",
    "statements",
    "target",
]
