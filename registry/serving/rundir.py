"""Where the supervisor keeps its runtime files: control and report sockets, lock, state, logs.

Logs live in `$MODELDECK_HOME/logs/` (0700). Sockets, lock and state live in a run directory that
only its user can reach:

1. `$MODELDECK_HOME/run/` when that path is short enough for a Unix socket (108 bytes);
2. else `$XDG_RUNTIME_DIR/modeldeck/<digest>` when `$XDG_RUNTIME_DIR` is a 0700 directory of the user;
3. else `$XDG_CACHE_HOME/modeldeck/run/<digest>` (default `~/.cache`), `<digest>` naming the home.

Never the shared temp dir, where another local user could prepare the path first. The run directory
is refused (SupervisorError) when it is a symbolic link, another user's, not 0700, or sits in a
directory others can write to; the supervisor checks it when it creates it and whenever it writes there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from registry.errors import SupervisorError
from registry.files import PRIVATE_DIR, private_dirs

_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class RunDir:
    """The runtime paths of one home."""

    home: Path
    path: Path

    @classmethod
    def of(cls, home: Path) -> RunDir:
        home = home.expanduser().resolve()
        return cls(home=home, path=_choose(home))

    def create(self) -> RunDir:
        """Make the directories (each private to the user) and check them; SupervisorError if unsafe."""
        private_dirs(self.home if self.path == self.home / "run" else self.path.parent)
        private_dirs(self.logs)
        if len(str(self.control_socket).encode()) > _MAX_SOCKET_PATH:
            raise SupervisorError(
                f"run directory {self.path} is too long for a Unix socket; "
                "set XDG_RUNTIME_DIR or use a shorter MODELDECK_HOME",
                500,
            )
        self._refuse(_unsafe(self.path.parent, parent=True))
        for directory in (self.path, self.workers):  # each checked before anything is made inside it
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, PRIVATE_DIR)
            self.check()
        return self

    def check(self) -> None:
        """Refuse (SupervisorError) a run directory another user prepared or can change."""
        problem = _unsafe(self.path.parent, parent=True) or _unsafe(self.path)
        if problem is None and os.path.lexists(self.workers):
            problem = _unsafe(self.workers)
        self._refuse(problem)

    def _refuse(self, problem: str | None) -> None:
        if problem is not None:
            raise SupervisorError(f"refusing the run directory {self.path}: {problem}", 500)

    def bind(self, path: Path, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A Unix socket bound at `path` in this (checked) directory, made 0600 before it listens."""
        self.check()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
        except BaseException:
            sock.close()
            raise
        return sock

    @property
    def control_socket(self) -> Path:
        return self.path / "supervisor.sock"

    @property
    def report_socket(self) -> Path:
        return self.path / "reports.sock"

    @property
    def workers(self) -> Path:
        """Each worker's private monitoring socket: `workers/<pid>.sock`."""
        return self.path / "w"

    def worker_socket(self, pid: int) -> Path:
        return self.workers / f"{pid}.sock"

    def candidate_socket(self, deployment: str) -> Path:
        """Where a deployment's canary or shadow listens: `c-<digest>.sock`, as long as the control
        socket's name (a deployment's name may be long)."""
        import hashlib

        return self.path / f"c-{hashlib.sha256(deployment.encode()).hexdigest()[:8]}.sock"

    @property
    def lock_file(self) -> Path:
        return self.path / "supervisor.lock"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def deployment_log(self, name: str) -> Path:
        """`logs/<name>.log`; a name that would lead anywhere else (a '/', a leading '.', a NUL) is refused,
        whatever checked it before (defence in depth: names also come from older databases)."""
        from registry.serving.options import OptionError  # ipaddress, urllib: not at start-up

        path = self.logs / f"{name}.log"
        if not name or name.startswith(".") or "/" in name or "\0" in name or path.parent != self.logs:
            raise OptionError("name", f"deployment name {name!r} cannot name a log file")
        return path


def _choose(home: Path) -> Path:
    local = home / "run"
    if _fits(local):
        return local
    import hashlib  # only for a home too long for `home/run`: `modeldeck status` starts without it

    digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
    runtime = _runtime_dir()
    if runtime is not None and _fits(runtime / "modeldeck" / digest):
        return runtime / "modeldeck" / digest
    return _cache_dir() / "modeldeck" / "run" / digest


def _fits(path: Path) -> bool:
    return len(str(path / "supervisor.sock").encode()) <= _MAX_SOCKET_PATH


def _runtime_dir() -> Path | None:
    """`$XDG_RUNTIME_DIR` if it is a real directory of this user with mode 0700."""
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(value):
        return None
    try:
        info = os.lstat(value)
    except OSError:
        return None
    mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    return Path(value) if mine and stat.S_IMODE(info.st_mode) == PRIVATE_DIR else None


def _cache_dir() -> Path:
    value = os.environ.get("XDG_CACHE_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".cache"


def _unsafe(path: Path, parent: bool = False) -> str | None:
    """What makes `path` unsafe as the run directory (or as its parent), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    what = "its parent " + str(path) if parent else "it"
    if stat.S_ISLNK(info.st_mode):
        return f"{what} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"{what} is not a directory"
    me = os.geteuid()
    if info.st_uid != me and not (parent and info.st_uid == 0):
        return f"{what} belongs to uid {info.st_uid}, not to you (uid {me})"
    mode = stat.S_IMODE(info.st_mode)
    if parent and mode & 0o022:
        return f"{what} is writable by other users (mode {mode:04o})"
    if not parent and mode != PRIVATE_DIR:
        return f"its mode is {mode:04o}, not 0700 (other users could reach it); chmod 700 {path}"
    return None
