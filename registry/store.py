"""Settings, the database engine, sessions and schema upgrades on open.

SQLite (the default, `$MODELDECK_HOME/registry.db`) runs in WAL mode with a busy timeout and foreign
keys on; write transactions start with `BEGIN IMMEDIATE` so concurrent writers queue instead of
failing. PostgreSQL is used when `MODELDECK_DB_URL` says `postgresql+psycopg://...`.

A SQLite file this process cannot write (its mode, its directory's, or a read-only mount) is opened
read-only, so a home can still be browsed: `mode=ro` when the WAL's `-shm` file exists or can be
created, else `immutable=1` (no writer has it open). Writes are refused
up front with the reason, and schema upgrades are skipped. So is a PostgreSQL database whose role may
only read it (`registry.roles`; asked once, on open). A database with no schema is only created
next to an empty artifact store (else the registry's database was lost: `modeldeck db init --force`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool
from sqlmodel import Session

from registry.errors import DatabaseError, SchemaTooNew
from registry.files import private_dirs, tighten
from registry.reader import SCHEMA_HEAD
from registry.reads import Run
from registry.settings import Settings, default_home, with_psycopg
from registry.write_access import postgres_access, read_only_reason, read_only_uri, sqlite_path

__all__ = ["SCHEMA_HEAD", "Database", "Settings", "default_home", "with_psycopg"]

_WRITE = "modeldeck_write"
_PG_MIGRATION_LOCK = 0x6D6F64656C  # an arbitrary, fixed advisory-lock key ("model")


def make_engine(settings: Settings) -> Engine:
    """A new engine for the settings' database, configured for safe concurrent use."""
    try:
        url = make_url(settings.db_url)
    except sa_exc.ArgumentError:
        raise DatabaseError(
            f"MODELDECK_DB_URL {settings.display_url!r} is not a database URL; use "
            "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        ) from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseError(
            f"MODELDECK_DB_URL {settings.display_url!r}: modeldeck supports SQLite and PostgreSQL only"
        )
    try:
        if settings.is_sqlite:
            return _sqlite_engine(settings)
        return _postgres_engine(settings)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"no driver for {settings.display_url!r}: {exc}; use postgresql+psycopg://"
        ) from exc
    except OSError as exc:
        raise DatabaseError(f"cannot create the registry home for {settings.display_url}: {exc}") from exc


def _postgres_engine(settings: Settings) -> Engine:
    logging.getLogger("psycopg").addFilter(_not_pipeline_exit_noise)
    engine = create_engine(
        settings.db_url,
        pool_recycle=3600,
        connect_args={"connect_timeout": max(1, int(settings.db_timeout))},
    )
    _ping_when_idle(engine)
    from psycopg.types.json import set_json_loads

    @event.listens_for(engine, "connect")
    def _fast_json(dbapi_conn: Any, _record: Any) -> None:
        set_json_loads(_json_loads, dbapi_conn)

    return engine


def _not_pipeline_exit_noise(record: logging.LogRecord) -> bool:
    """psycopg logs "error ignored terminating <Pipeline>" when a statement of a pipeline failed and
    that error is being raised: the same failure said twice, on stderr (over the console's screen)."""
    return not record.getMessage().startswith("error ignored terminating")


def _json_loads(data: bytes | memoryview | str) -> Any:
    """psycopg's JSON parser on our connections: orjson (the standard library's parser was most of
    listing 2,000 versions), else the standard library for what orjson refuses (integers beyond 64
    bits). A module function, not a closure: psycopg caches its loader per function."""
    import orjson  # imported where PostgreSQL is used; a cached module after the first call

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def _ping_when_idle(engine: Engine, idle_seconds: float = 10.0) -> None:
    """Check a pooled connection that sat idle before handing it out, so a long-running process
    (console, supervisor) survives a PostgreSQL restart; busy connections skip the round trip."""

    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in", time.monotonic()) < idle_seconds:
            return
        try:
            dbapi_conn.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            raise sa_exc.DisconnectionError() from exc


def _sqlite_engine(settings: Settings) -> Engine:
    url = settings.db_url
    # The file's own path, whatever the URL's spelling (`sqlite+pysqlite:///`, `?timeout=` ...);
    # `file:` URIs (`?mode=ro&uri=true`) and in-memory databases have no directory to make.
    path = sqlite_path(settings)
    private = [str(path), f"{path}-wal", f"{path}-shm"] if path is not None else []
    if path is not None and read_only_reason(settings):
        private = []
        uri = read_only_uri(path)[0]
        timeout = settings.db_timeout
        engine = create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False),
            poolclass=QueuePool,
        )
    else:
        if path is not None and not path.parent.exists():
            private_dirs(path.parent)
        engine = create_engine(url, connect_args={"timeout": settings.db_timeout, "check_same_thread": False})
    busy_ms = int(settings.db_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        except Exception:  # a read-only or locked file keeps its journal mode
            pass
        cursor.close()
        for name in private:  # SQLite made them with the umask's mode; -wal/-shm then copy the db's
            tighten(Path(name))

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


#: PostgreSQL writes' isolation (the ORM's through the write engine, `driver_write`'s through its BEGIN).
WRITE_ISOLATION = "READ COMMITTED"


class Database:
    """An engine plus the sessions the registry uses; the schema is upgraded on open."""

    def __init__(self, settings: Settings, upgrade: bool = True, new_over_artifacts: bool = False) -> None:
        self.settings = settings
        tighten(settings.home)  # the home is the user's alone (an older modeldeck made it 0755)
        #: Why writes are refused (None: they are not): a read-only SQLite file or directory, or a
        #: PostgreSQL role that may only read (asked below, on the engine's connection).
        self.read_only = read_only_reason(settings) if settings.is_sqlite else None
        #: The PostgreSQL role this process works as (None: SQLite).
        self.role: str | None = None
        path = sqlite_path(settings)
        #: How a read-only database is opened ("read-only", or "... immutable ..."), for notes.
        self.opened_as = read_only_uri(path)[1] if self.read_only and path is not None else "read-write"
        self.engine = make_engine(settings)
        # PostgreSQL writes pin READ COMMITTED whatever the database's default: each statement after
        # a lock (the model's row, a blob's advisory lock) must see what the lock's previous holder
        # committed, which a repeatable-read snapshot (taken before the lock was granted) would not.
        self._write_engine = self.engine.execution_options(
            **{_WRITE: True}, **({} if settings.is_sqlite else {"isolation_level": WRITE_ISOLATION})
        )
        # PostgreSQL reads skip BEGIN/ROLLBACK: two network round trips saved on every lookup.
        # (SQLite keeps its deferred BEGIN: a consistent snapshot across statements costs nothing.)
        self._read_engine = (
            self.engine if settings.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        #: The older schema revision a read-only database was left at (None: it is current).
        self.stale_schema: str | None = None
        if not settings.is_sqlite:  # one statement: the role, and whether it may write
            with translate_errors(settings), self._read_engine.connect() as conn:
                self.role, self.read_only = postgres_access(runner(conn))
        if upgrade:
            with translate_errors(settings):
                if self.read_only:
                    self._check_read_only_schema()
                else:
                    self._upgrade(new_over_artifacts)

    def _upgrade(self, new_over_artifacts: bool) -> None:
        """Upgrade the schema; a PostgreSQL role that may write rows but not change the schema (an
        operator's, a supervisor's: `registry.roles`) is told who can."""
        try:
            upgrade_schema(self, new_over_artifacts=new_over_artifacts)
        except sa_exc.ProgrammingError as exc:
            if self.role is None or getattr(exc.orig, "sqlstate", None) != "42501":
                raise
            found = current_revision(self) or "none (empty)"
            raise DatabaseError(
                f"registry database {self.settings.display_url} is at schema revision {found} and this "
                f"modeldeck needs {SCHEMA_HEAD}, which role {self.role} may not make ({_first_line(exc)}); "
                "run `modeldeck db upgrade` as the owner of its tables (nothing was changed)"
            ) from None

    def _check_read_only_schema(self) -> None:
        """A read-only database is never upgraded: one from a newer modeldeck is refused, an older
        one is read as it is (writes, which would need the upgrade, are refused)."""
        found = current_revision(self)
        if found is not None and found > SCHEMA_HEAD:  # revisions are zero-padded numbers
            raise SchemaTooNew(
                f"registry database {self.settings.display_url} has schema revision {found!r}, "
                "written by a newer modeldeck; upgrade modeldeck to use it (nothing was changed)"
            )
        if found != SCHEMA_HEAD:
            self.stale_schema = found or "none"

    def check_writable(self) -> None:
        """Refuse, with the reason, a change to a registry this process may not write."""
        if self.read_only:
            upgrade = (
                f" (and its schema, at revision {self.stale_schema}, would need upgrading to {SCHEMA_HEAD})"
                if self.stale_schema
                else ""
            )
            where = self.settings.home if self.settings.is_sqlite else self.settings.display_url
            raise DatabaseError(
                f"registry {where} is read-only: {self.read_only}{upgrade}; nothing was changed"
            )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never takes a write lock."""
        with translate_errors(self.settings), Session(self._read_engine) as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection for Core reads (no ORM session); rolled back when done."""
        with translate_errors(self.settings), self._read_engine.connect() as conn:
            yield conn

    @contextmanager
    def reads(self) -> Iterator[Run]:
        """A runner of `registry.reads` queries on the driver's own connection (SQLAlchemy's result
        rows cost more than the driver's tuples on long listings): SQLite in one deferred
        transaction (a consistent snapshot across statements), PostgreSQL in autocommit (no BEGIN
        round trip). Driver errors are translated as `connect`'s are."""
        with translate_errors(self.settings), self._read_engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None  # a checked-out connection always has its driver connection
            driver_error = conn.dialect.loaded_dbapi.Error
            sqlite = self.settings.is_sqlite
            try:
                if sqlite:
                    raw.execute("BEGIN")
                yield driver_runner(raw, postgres=not sqlite)
            except driver_error as exc:
                raise sa_exc.DBAPIError.instance(None, None, exc, driver_error) from exc
            finally:
                if sqlite:
                    _roll_back(raw)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        self.check_writable()
        with (
            translate_errors(self.settings),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def driver_write(self) -> Iterator[Any]:
        """The pooled driver connection itself (psycopg or sqlite3) in a write transaction that
        commits on success and rolls back on any error (SQLite: `BEGIN IMMEDIATE`, as `write`), for
        the hot write paths in `registry.writes`: SQLAlchemy's per-statement work cost as much as
        the statements. Driver errors are translated as `write`'s are; a PostgreSQL connection they
        broke is not returned to the pool."""
        self.check_writable()
        with translate_errors(self.settings), self._write_engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None  # a checked-out connection always has its driver connection
            driver_error = conn.dialect.loaded_dbapi.Error
            try:
                if self.settings.is_sqlite:
                    raw.execute("BEGIN IMMEDIATE")
                    yield raw
                else:  # autocommit until checkin (the write engine's isolation option resets it)
                    raw.autocommit = True  # the transaction is the one `BeginsWithFirstStatement` opens
                    yield BeginsWithFirstStatement(raw)
                raw.commit()
            except driver_error as exc:
                _roll_back(raw)
                if getattr(raw, "broken", False) or getattr(raw, "closed", False) is True:
                    conn.invalidate()
                raise sa_exc.DBAPIError.instance(None, None, exc, driver_error) from exc
            except BaseException:
                _roll_back(raw)
                raise

    def dispose(self) -> None:
        self.engine.dispose()


class BeginsWithFirstStatement:
    """A psycopg connection in autocommit mode whose transaction opens with its first statement:
    `BEGIN` is pipelined with it (psycopg's own `BEGIN` waits for its answer, a round trip more on
    every write). `commit` and `rollback` end the transaction (psycopg sends them whenever the
    server reports one open); everything else is the connection's own."""

    BEGIN = f"BEGIN ISOLATION LEVEL {WRITE_ISOLATION}"

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._begun = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _begin(self) -> None:
        if not self._begun:
            self._begun = True
            self._raw.execute(self.BEGIN)

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        """The connection's pipeline, `BEGIN` first if the transaction is not open yet."""
        with self._raw.pipeline() as pipeline:
            self._begin()
            yield pipeline

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        if self._begun:
            return self._raw.execute(query, params, **options)
        with self.pipeline():
            return self._raw.execute(query, params, **options)

    def cursor(self, *args: Any, **options: Any) -> Any:
        self._begin()
        return self._raw.cursor(*args, **options)


def _roll_back(raw: Any) -> None:
    """Roll back a psycopg connection's transaction; a connection already lost has none to keep."""
    with suppress(Exception):  # the error being raised says what happened
        raw.rollback()


def driver_runner(raw: Any, postgres: bool = True) -> Run:
    """`registry.reads`' runner on a driver's connection (psycopg, or sqlite3 with `postgres=False`)."""

    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return raw.execute(sql.replace("?", "%s") if postgres else sql, tuple(params)).fetchall()

    return run


def runner(conn: Connection) -> Run:
    """`registry.reads`' runner on a SQLAlchemy connection: the same SQL, straight to the driver."""
    postgres = conn.dialect.name == "postgresql"

    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return conn.exec_driver_sql(sql.replace("?", "%s") if postgres else sql, tuple(params)).all()  # type: ignore[return-value]

    return run


def current_revision(db: Database) -> str | None:
    """The schema revision stamped in the database, or None for an empty database."""
    with db.engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Any) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_schema(db: Database, target: str = "head", new_over_artifacts: bool = False) -> str:
    """Bring the database to `target` (default: newest); return the revision it is at now.

    Concurrent openers are serialised (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock)
    and a database stamped by a newer modeldeck is refused untouched. A database with no schema
    at all is only created when the artifact store is empty, or `new_over_artifacts` says so.
    """
    if target == "head" and current_revision(db) == SCHEMA_HEAD:
        return SCHEMA_HEAD
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
    with db._write_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        found = _revision(conn)
        if found is None and not new_over_artifacts and not inspect(conn).get_table_names():
            _refuse_new_over_artifacts(db.settings)
        if found is not None and found not in known:
            raise SchemaTooNew(
                f"registry database {db.settings.display_url} has schema revision {found!r}, "
                "written by a newer modeldeck; upgrade modeldeck to use it (nothing was changed)"
            )
        config.attributes["connection"] = conn
        command.upgrade(config, target)
        return _revision(conn) or ""


def _refuse_new_over_artifacts(settings: Settings) -> None:
    """A database without a schema beside an artifact store holding blobs is a lost database (a
    zero-length file after a crash, a bad copy), not a new registry: starting one would reuse
    version numbers over the stored artifacts."""
    blobs = settings.artifacts_dir / "sha256"
    count = sum(1 for p in blobs.glob("*/*") if not p.name.startswith(".")) if blobs.is_dir() else 0
    if count:
        raise DatabaseError(
            f"registry database {settings.display_url} is empty but the artifact store at "
            f"{settings.artifacts_dir} holds {count} artifact{'s' if count != 1 else ''}; restore the "
            "database, or run `modeldeck db init --force` to start a new registry over them"
        )


def artifact_lock_key(sha256: str) -> int:
    """The PostgreSQL advisory-lock key of an artifact: the first 60 bits of its sha256."""
    return int(sha256[:15], 16)


def lock_artifact(session: Session, sha256: str, exclusive: bool) -> None:
    """Serialise "is this blob still used?" against new versions using it (PostgreSQL; on SQLite
    every write transaction already holds the database's single writer lock)."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {function}(:key)"), {"key": artifact_lock_key(sha256)})


@contextmanager
def translate_errors(settings: Settings) -> Iterator[None]:
    """Turn driver errors about locks, permissions and connections into one-line DatabaseErrors."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        raise DatabaseError(describe_operational_error(settings, exc)) from exc
    except sa_exc.DatabaseError as exc:  # e.g. "file is not a database"
        if getattr(exc.orig, "sqlstate", None) == "42501":  # a PostgreSQL role without this right
            raise DatabaseError(
                f"registry database {settings.display_url}: {_first_line(exc)} (this role's grants do not "
                "allow it: see `modeldeck db roles`); nothing was changed"
            ) from exc
        raise DatabaseError(f"registry database {settings.display_url}: {exc.orig or exc}") from exc
    except sa_exc.TimeoutError as exc:  # every pooled connection busy (this process's own threads)
        raise DatabaseError(
            f"registry database {settings.display_url}: no connection of this process came free in time "
            "(every one is in use, e.g. by operations waiting for a lock); try again"
        ) from exc


def _first_line(exc: sa_exc.DBAPIError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]


def describe_operational_error(settings: Settings, exc: sa_exc.OperationalError) -> str:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    where = settings.display_url
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return (
            f"registry database {where} is locked by another process "
            f"(waited {settings.db_timeout:g} s); nothing was changed, try again"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return f"registry database {where} is read-only; nothing was changed"
    if "unable to open" in lowered:
        return f"cannot open registry database {where}: {message}"
    if settings.is_sqlite:
        return f"registry database {where}: {message}"
    return f"cannot use PostgreSQL registry {where}: {message.strip().splitlines()[0]}"
