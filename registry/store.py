"""Settings, the database engine, sessions and schema upgrades on open.

SQLite (the default, `$MODELDECK_HOME/registry.db`) runs in WAL mode with a busy timeout and foreign
keys on; write transactions start with `BEGIN IMMEDIATE` so concurrent writers queue instead of
failing. PostgreSQL is used when `MODELDECK_DB_URL` says `postgresql+psycopg://...`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlmodel import Session

from registry.errors import DatabaseError, SchemaTooNew
from registry.files import private_dirs, tighten

#: The newest schema revision this code knows; must equal the head of `registry/migrations`.
SCHEMA_HEAD = "0005"
_WRITE = "modeldeck_write"
_PG_MIGRATION_LOCK = 0x6D6F64656C  # an arbitrary, fixed advisory-lock key ("model")


def default_home() -> Path:
    """`$MODELDECK_HOME`, else the platform's user data directory for modeldeck."""
    env = os.environ.get("MODELDECK_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("modeldeck", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where the registry lives: its home, database URL and artifact directory."""

    home: Path
    db_url: str
    artifacts_dir: Path
    db_timeout: float = 15.0

    @classmethod
    def from_env(cls, home: str | Path | None = None, db_url: str | None = None) -> Settings:
        """Settings from arguments, falling back to the `MODELDECK_*` environment variables."""
        home_path = Path(home).expanduser() if home is not None else default_home()
        url = db_url or os.environ.get("MODELDECK_DB_URL") or f"sqlite:///{home_path / 'registry.db'}"
        url = with_psycopg(url)
        artifacts = os.environ.get("MODELDECK_ARTIFACTS_DIR")
        raw_timeout = os.environ.get("MODELDECK_DB_TIMEOUT", "15")
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise DatabaseError(f"MODELDECK_DB_TIMEOUT={raw_timeout!r} is not a number of seconds") from None
        return cls(
            home=home_path,
            db_url=url,
            artifacts_dir=Path(artifacts).expanduser() if artifacts else home_path / "artifacts",
            db_timeout=timeout,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def display_url(self) -> str:
        """The database URL with any password hidden."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.db_url)


def with_psycopg(url: str) -> str:
    """`postgres://` and `postgresql://` (what Heroku, libpq and most hosts hand out) name PostgreSQL
    without a driver; modeldeck talks to it through psycopg 3, so they mean `postgresql+psycopg://`."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


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
    engine = create_engine(
        settings.db_url,
        pool_recycle=3600,
        connect_args={"connect_timeout": max(1, int(settings.db_timeout))},
    )
    _ping_when_idle(engine)
    return engine


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
    path = make_url(url).database or ""
    private = [] if not path or path.startswith("file:") or path == ":memory:" else [path]
    if private and not Path(path).parent.exists():
        private_dirs(Path(path).parent)
    private += [f"{path}-wal", f"{path}-shm"] if private else []
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


class Database:
    """An engine plus the sessions the registry uses; the schema is upgraded on open."""

    def __init__(self, settings: Settings, upgrade: bool = True) -> None:
        self.settings = settings
        tighten(settings.home)  # the home is the user's alone (an older modeldeck made it 0755)
        self.engine = make_engine(settings)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        # PostgreSQL reads skip BEGIN/ROLLBACK: two network round trips saved on every lookup.
        # (SQLite keeps its deferred BEGIN: a consistent snapshot across statements costs nothing.)
        self._read_engine = (
            self.engine if settings.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        if upgrade:
            with translate_errors(settings):
                upgrade_schema(self)

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
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with (
            translate_errors(self.settings),
            Session(self._write_engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def current_revision(db: Database) -> str | None:
    """The schema revision stamped in the database, or None for an empty database."""
    with db.engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Any) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_schema(db: Database, target: str = "head") -> str:
    """Bring the database to `target` (default: newest); return the revision it is at now.

    Concurrent openers are serialised (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock)
    and a database stamped by a newer modeldeck is refused untouched.
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
        if found is not None and found not in known:
            raise SchemaTooNew(
                f"registry database {db.settings.display_url} has schema revision {found!r}, "
                "written by a newer modeldeck; upgrade modeldeck to use it (nothing was changed)"
            )
        config.attributes["connection"] = conn
        command.upgrade(config, target)
        return _revision(conn) or ""


def lock_artifact(session: Session, sha256: str, exclusive: bool) -> None:
    """Serialise "is this blob still used?" against new versions using it (PostgreSQL; on SQLite
    every write transaction already holds the database's single writer lock)."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        session.execute(text(f"SELECT {function}(:key)"), {"key": int(sha256[:15], 16)})


@contextmanager
def translate_errors(settings: Settings) -> Iterator[None]:
    """Turn driver errors about locks, permissions and connections into one-line DatabaseErrors."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        raise DatabaseError(describe_operational_error(settings, exc)) from exc
    except sa_exc.DatabaseError as exc:  # e.g. "file is not a database"
        raise DatabaseError(f"registry database {settings.display_url}: {exc.orig or exc}") from exc


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
