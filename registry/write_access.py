"""Whether this process may write the SQLite registry, and how to open one it may not.

Kept apart from `registry.store` so that commands which only ask (`modeldeck deploy` checks before
it asks the supervisor) do not import SQLAlchemy for it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from registry.reader import plain_sqlite_file
from registry.settings import Settings


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


def read_only_reason(settings: Settings) -> str | None:
    """Why this process cannot write the SQLite registry (None: it can, or it is not SQLite/there yet)."""
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
