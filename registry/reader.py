"""The light read path: the registry's read queries (`registry.reads`) on a bare DB-API connection.

`modeldeck models`, `versions`, `show`, `history`, `status` and the console's first screen read a few
rows; opening a `Registry` for that costs more than the reads (SQLAlchemy, SQLModel and pydantic
imports, engine set-up). `open_reader` connects with sqlite3 or psycopg directly, and only when the
plain path gives the same answer the `Registry` would: a current schema, a database this process may
write, a plain URL. Otherwise it returns None and the caller opens a `Registry`, which upgrades the
schema, creates a missing database, opens a read-only file read-only, or explains the error in one
line, exactly as before.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from registry import reads
from registry.info import (
    AlertInfo,
    DeploymentInfo,
    EventInfo,
    History,
    HostInfo,
    ModelInfo,
    VersionInfo,
    VersionSummary,
)
from registry.refs import Ref

#: The newest schema revision this code knows; must equal the head of `registry/migrations`
#: (`registry.store.SCHEMA_HEAD` is this).
SCHEMA_HEAD = "0009"
T = TypeVar("T")


class Reader:
    """Read-only queries on one open DB-API connection; use `open_reader` to get one."""

    def __init__(self, connection: Any, postgres: bool, settings: Any = None) -> None:
        #: The `registry.settings.Settings` it was opened with.
        self.settings = settings
        self._connection = connection
        self._cursor = connection.cursor()
        self._lock = threading.Lock()  # one statement at a time: the console reads from threads
        self.postgres = postgres

    def run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement with `?` placeholders; all its rows."""
        if self.postgres:
            sql = sql.replace("?", "%s")
        self._cursor.execute(sql, params)
        return self._cursor.fetchall()

    def close(self) -> None:
        """Close the connection once no statement runs on it (closing under a reading thread can crash
        the sqlite3 module: the console quits while its workers may still read)."""
        with self._lock, suppress(Exception):
            self._connection.close()

    def _read(self, query: Callable[..., T], *args: Any) -> T:
        """`query(self.run, *args)` in one read transaction on SQLite (a consistent snapshot, ended at
        once so it never holds back the WAL); PostgreSQL reads run in autocommit, as the Registry's."""
        with self._lock:
            if self.postgres:
                return query(self.run, *args)
            self._cursor.execute("BEGIN")
            try:
                return query(self.run, *args)
            finally:
                self._cursor.execute("ROLLBACK")

    def list_models(self, include_archived: bool = False) -> list[ModelInfo]:
        return self._read(reads.list_models, include_archived)

    def versions(self, name: str, include_archived: bool = False) -> list[VersionSummary]:
        return self._read(reads.list_versions, name, include_archived)

    def get(self, ref: str | Ref) -> VersionInfo:
        from registry.refs import parse_ref

        return self._read(reads.get_version, ref if isinstance(ref, Ref) else parse_ref(ref))

    def history(self, name: str, at: datetime) -> History:
        return self._read(reads.history, name, at)

    def recent_events(self, limit: int = 200) -> list[EventInfo]:
        return self._read(reads.recent_events, limit)

    def deployments(self) -> list[DeploymentInfo]:
        return self._read(reads.list_deployments)

    def hosts(self) -> list[HostInfo]:
        return self._read(reads.list_hosts)

    def active_alerts(self) -> list[AlertInfo]:
        return self._read(reads.alerts)

    def read_only_reason(self) -> str | None:
        """Why this connection's PostgreSQL role may not write the registry (None: it may; SQLite: the
        reader opens only a file this process may write). One statement, run only when asked."""
        if not self.postgres:
            return None
        from registry.write_access import postgres_access

        return self._read(postgres_access)[1]


def plain_sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL without options or escapes (None for anything else)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :]
    if not path or any(c in path for c in "?%#") or path.startswith("file:") or path == ":memory:":
        return None
    return Path(path)


def _connect_sqlite(url: str, home: Path, timeout: float) -> Any:
    import sqlite3

    path = plain_sqlite_file(url)
    if path is None or not path.is_file():  # a missing database is created by the Registry
        return None
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return None  # read-only: the Registry opens it read-only and says how
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return connection


def _connect_postgres(url: str, timeout: float) -> Any:
    scheme, _, rest = url.partition("://")
    if scheme != "postgresql+psycopg" or "?" in rest:
        return None
    import psycopg

    return psycopg.connect(f"postgresql://{rest}", autocommit=True, connect_timeout=max(1, int(timeout)))


def open_reader(settings: Any) -> Reader | None:
    """A Reader on the registry of `settings` (a `registry.settings.Settings`), or None where only a
    `Registry` gives the right answer (see the module's docstring). Never raises for a driver error:
    the `Registry` meets it again and explains it."""
    from registry.files import tighten

    connection = None
    try:
        tighten(settings.home)  # as opening a Registry does
        if settings.is_sqlite:
            connection = _connect_sqlite(settings.db_url, settings.home, settings.db_timeout)
            postgres = False
        else:
            connection = _connect_postgres(settings.db_url, settings.db_timeout)
            postgres = True
        if connection is None:
            return None
        reader = Reader(connection, postgres, settings)
        if reader.run("SELECT version_num FROM alembic_version", ()) != [(SCHEMA_HEAD,)]:
            reader.close()  # older (the Registry upgrades it), newer (it refuses) or not ours
            return None
        return reader
    except Exception:
        if connection is not None:
            with suppress(Exception):
                connection.close()
        return None


@contextmanager
def reading(settings: Any) -> Iterator[Reader | None]:
    """`open_reader` as a context manager that closes the connection."""
    reader = open_reader(settings)
    try:
        yield reader
    finally:
        if reader is not None:
            reader.close()
