"""Where the supervisor keeps its runtime files: control and report sockets, lock, state, logs.

Logs live in `$MODELDECK_HOME/logs/`. Sockets, lock and state live in `$MODELDECK_HOME/run/`
(mode 0700) unless that path is too long for a Unix socket (108 bytes), in which case a per-home
directory under the system temp dir is used instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from registry.serving.options import OptionError

_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class RunDir:
    """The runtime paths of one home."""

    home: Path
    path: Path

    @classmethod
    def of(cls, home: Path) -> RunDir:
        home = home.expanduser().resolve()
        path = home / "run"
        if len(str(path / "supervisor.sock").encode()) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
            path = Path(tempfile.gettempdir()) / f"modeldeck-{os.getuid()}" / digest
        return cls(home=home, path=path)

    def create(self) -> RunDir:
        """Make the directories (runtime dir private to the user)."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        self.workers.mkdir(exist_ok=True, mode=0o700)
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

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
        path = self.logs / f"{name}.log"
        if not name or name.startswith(".") or "/" in name or "\0" in name or path.parent != self.logs:
            raise OptionError("name", f"deployment name {name!r} cannot name a log file")
        return path
