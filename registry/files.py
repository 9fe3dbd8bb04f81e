"""Private files and directories: models, the ledger, logs, tokens and sockets are their user's alone.

Directories are made 0700 and files 0600 whatever the umask; files and directories of ours that an
older modeldeck made wider (0755, 0644) are tightened when opened. Nothing here follows a symbolic
link planted where a file is expected, and temporary files get unpredictable names (`mkstemp`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from registry.errors import RegistryError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = 0o077
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(RegistryError):
    """A file where modeldeck keeps private data is a symlink, another user's, or not a regular file."""


def private_dirs(path: Path) -> Path:
    """Make `path` and its missing parents (each 0700); an existing `path` of ours is tightened."""
    missing: list[Path] = []
    current = Path(path)
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, PRIVATE_DIR)
    tighten(path)
    return Path(path)


def checked_private_dir(path: Path) -> Path:
    """`private_dirs(path)`, refusing (UnsafePath) a `path` that is a symbolic link, not a directory or
    another user's: private data is never kept where someone else could point or read it."""
    private_dirs(path)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"refusing {path}: it is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"refusing {path}: it is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafePath(f"refusing {path}: it belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})")
    return Path(path)


def tighten(path: Path) -> None:
    """Take group and other access away from `path` if it is ours (not a symlink); errors are ignored
    (a read-only file system keeps its modes)."""
    try:
        info = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or not info.st_mode & _OTHERS:
        return
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_OTHERS)


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags)` that never follows a symlink, creates the file 0600, and refuses a file
    that is not a regular file of ours (UnsafePath); one of ours made wider earlier is tightened.
    Opened non-blocking, so a FIFO or device put in its place is refused rather than waited on."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK, PRIVATE_FILE)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symbolic link
            raise UnsafePath(f"refusing {path}: it is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"refusing {path}: it is not a regular file")
        if info.st_uid != os.geteuid():
            raise UnsafePath(
                f"refusing {path}: it belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})"
            )
        if info.st_mode & _OTHERS:
            with contextlib.suppress(OSError):
                os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~_OTHERS)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def append_private(path: Path) -> BinaryIO:
    """`path` opened for appending (a log): created 0600, never through a symlink."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


def read_private(path: Path) -> bytes:
    """The bytes of a file of ours, never read through a symlink."""
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as handle:
        return handle.read()


def temporary(directory: Path, data: bytes, fsync: bool = False) -> Path:
    """A new 0600 file with `data` under an unpredictable name in `directory` (removed on failure)."""
    import tempfile  # (shutil, random, bz2, lzma: not for the read verbs, which never write a file)

    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def write_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """Replace `path` with a 0600 file holding `data` (temp file beside it, then rename)."""
    tmp = temporary(path.parent, data, fsync=fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
