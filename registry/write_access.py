"""Whether this process may write the registry (a SQLite file's modes, a PostgreSQL role's grants),
and how to open a SQLite file it may not.

Kept apart from `registry.store` so that commands which only ask (`modeldeck deploy` checks before
it asks the supervisor) do not import SQLAlchemy for it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from registry.reader import open_reader, plain_sqlite_file
from registry.settings import Settings

#: One statement: the session's role, whether it may append to the ledger (`event`: every change of
#: the registry does, the operator's and the supervisor's alike; NULL before the schema exists),
#: whether its transactions are read-only, and whether the server is a standby.
_PG_ACCESS = (
    "SELECT current_user, has_table_privilege(to_regclass('event'), 'INSERT'),"
    " current_setting('transaction_read_only') = 'on', pg_is_in_recovery()"
)


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of the settings (None: PostgreSQL, an in-memory database or a `file:` URI)."""
    if not settings.is_sqlite:
        return None
    plain = plain_sqlite_file(settings.db_url)
    if plain is not None:
        return plain
    from sqlalchemy.engine import make_url  # any other spelling: options, escapes, a driver name

    path = make_url(settings.db_url).database or ""
    return Path(path) if path and not path.startswith("file:") and path != ":memory:" else None


def postgres_access(run: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]) -> tuple[str, str | None]:
    """The PostgreSQL session's role, and why it may not write the registry (None: it may), in one
    statement run by `run` (a `registry.reads` runner)."""
    user, ledger, read_only, standby = run(_PG_ACCESS, ())[0]
    if standby:
        return user, "its PostgreSQL server is a standby (in recovery), which only reads"
    if read_only:
        return user, f"role {user}'s sessions are read-only (default_transaction_read_only)"
    if ledger is False:
        return user, f"role {user} may only read this registry"
    return user, None


def read_only_reason(settings: Settings) -> str | None:
    """Why this process cannot write the registry (None: it can, or it is not there yet): the SQLite
    file's or directory's modes, or, on PostgreSQL, its role (one connection and one statement; a
    database that cannot be asked is left to the `Registry`, which explains the error)."""
    if not settings.is_sqlite:
        reader = open_reader(settings)
        if reader is None:
            return None
        try:
            return reader.read_only_reason()
        except Exception:  # a driver error: the Registry meets it again and explains it
            return None
        finally:
            reader.close()
    path = sqlite_path(settings)
    if path is None or not path.exists():
        return None
    for target in (path, path.parent):
        if os.access(target, os.W_OK):
            continue
        if _on_read_only_mount(target):
            return f"{target} is on a read-only file system"
        info = target.stat()
        return (
            f"{target} belongs to {_user(info.st_uid)} with mode {stat.filemode(info.st_mode)}, and this "
            f"process runs as {_user(os.geteuid())}, which may not write it"
        )
    return None


def _on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def read_only_uri(path: Path) -> tuple[str, str]:
    """The SQLite URI that opens a registry file we may not write, and how it opens it.

    WAL readers need the `-shm` index: with it present (or creatable: the directory is writable),
    `mode=ro` reads consistently beside any writer. Without it, only `immutable=1` opens the file.
    That reads the file as a snapshot: no writer has it open (a live writer keeps a `-shm` file,
    which we would have used), and none can appear through a read-only mount; the owner of a
    directory merely closed to us could start one while we read, so the CLI notes the mode."""
    from urllib.parse import quote

    shm = Path(f"{path}-shm")
    usable_shm = (shm.exists() and os.access(shm, os.R_OK)) or os.access(path.parent, os.W_OK)
    mode = "mode=ro" if usable_shm else "mode=ro&immutable=1"
    how = "read-only" if usable_shm else "read-only and immutable (no -shm file exists or can be made)"
    return f"file:{quote(str(path.resolve()))}?{mode}", how
