"""Per-deployment log files: size-based rotation (by the supervisor), tails, a reader that follows, and
a filter that collapses repeated lines so a flood of bad requests cannot flood the disk."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

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


class LogReader:
    """Reads a log file as it grows, across rotations: first its last `lines` lines, then what is appended.

    Not thread-safe; one reader per consumer (the console's logs view, `logs -f`). A line still being
    written (no newline yet) is held back until it is complete.
    """

    def __init__(self, path: Path, lines: int = 50) -> None:
        self.path = path
        self._lines = lines
        self._handle: TextIO | None = None
        self._inode: int | None = None
        self._partial = ""
        self._started = False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self) -> list[str]:
        """The lines that are new since the last call (on the first call: the tail)."""
        if not self._started:
            self._started = True
            if self._open():
                assert self._handle is not None
                self._handle.seek(0, os.SEEK_END)
                return tail(self.path, self._lines) if self._lines else []
            return []
        if self._handle is None and not self._open():
            return []
        lines = self._complete_lines()
        try:
            moved = self.path.stat().st_ino != self._inode
        except FileNotFoundError:
            moved = True
        if moved:  # rotated: finish the old file, then read the new one from its start
            lines += self._complete_lines()
            self.close()
            self._partial = ""
            if self._open():
                lines += self._complete_lines()
        return lines

    def _open(self) -> bool:
        try:
            self._handle = self.path.open(errors="replace")
        except FileNotFoundError:
            return False
        self._inode = os.fstat(self._handle.fileno()).st_ino
        return True

    def _complete_lines(self) -> list[str]:
        assert self._handle is not None
        pieces = (self._partial + self._handle.read()).split("\n")
        self._partial = pieces.pop()
        return pieces


class RepeatFilter(logging.Filter):
    """Lets through the first `burst` records of each message (same logger, level and format string)
    per `window` seconds, and drops the rest; the next one let through after the window says how many
    were dropped: "... [repeated N times in the last 60 s]". Bounds a log to about `burst` lines per
    message per window, whatever the traffic."""

    def __init__(
        self, burst: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            dropped = int(seen[2]) if seen is not None else 0
            if len(self._seen) > 10_000:  # many distinct messages: forget the old ones
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} [repeated {dropped} times in the last {self.window:g} s]"
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        return False


def limit_repeats(*loggers: str, burst: int = 10, window: float = 60.0) -> None:
    """Put a `RepeatFilter` on every handler of the root logger and of `loggers` (default: uvicorn's)."""
    names = loggers or ("uvicorn", "uvicorn.error", "uvicorn.access")
    shared = RepeatFilter(burst, window)
    for logger in [logging.getLogger(), *(logging.getLogger(name) for name in names)]:
        for handler in logger.handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(shared)
