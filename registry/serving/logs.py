"""Per-deployment log files: size-based rotation (by the supervisor) and tails (for `logs`)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3


def rotate_if_large(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> bool:
    """Rename `path` to `path.1` (shifting older ones up to `backups`) once it exceeds `max_bytes`.

    Writers log through `logging.handlers.WatchedFileHandler`, which reopens the file when it moves."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True


def tail(path: Path, lines: int = 50) -> list[str]:
    """The last `lines` lines of a log file (and its newest rotated copy if the file is short)."""
    kept: deque[str] = deque(maxlen=lines)
    for source in (path.with_name(f"{path.name}.1"), path):
        try:
            with source.open(errors="replace") as handle:
                if source.stat().st_size > 4 * 1024 * 1024:
                    handle.seek(source.stat().st_size - 4 * 1024 * 1024)
                    handle.readline()
                kept.extend(line.rstrip("\n") for line in handle)
        except FileNotFoundError:
            continue
    return list(kept)


def follow(path: Path, poll: float = 0.25) -> Iterator[str]:
    """Lines appended to `path` from now on, across rotations (for `logs -f`)."""
    import time

    handle = None
    inode = None
    while True:
        if handle is None:
            try:
                handle = path.open(errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
                handle.seek(0, os.SEEK_END)
            except FileNotFoundError:
                time.sleep(poll)
                continue
        line = handle.readline()
        if line:
            yield line.rstrip("\n")
            continue
        try:
            moved = path.stat().st_ino != inode
        except FileNotFoundError:
            moved = True
        if moved:
            rest = handle.read()
            handle.close()
            handle = None
            yield from (piece for piece in rest.splitlines())
            try:
                handle = path.open(errors="replace")
                inode = os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                handle = None
            continue
        time.sleep(poll)
