"""What the supervisor knows: its policy, each deployment's runtime and the workers it tracks."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from registry.actor import host_name
from registry.core import Registry, current_actor
from registry.errors import SupervisorError
from registry.info import DeploymentInfo
from registry.monitoring.rollups import DEFAULT_RETENTION
from registry.serving.exporter import target_groups, write_targets
from registry.serving.preloader import Preloader
from registry.serving.processes import Worker, save_state
from registry.serving.protocol import DeploymentState, Role
from registry.serving.rundir import RunDir

if TYPE_CHECKING:
    from registry.serving.supervision.rollouts import Rollout

#: How long, and for how many pids, a report from a worker not tracked yet is kept (see `keep_early`).
EARLY_REPORT_SECONDS, EARLY_REPORTS = 60.0, 256
log = logging.getLogger("modeldeck.supervisor")
T = TypeVar("T")


@dataclass
class Policy:
    """How the supervisor treats swaps and crashes."""

    keep_standby: bool = True
    auto_rollback: bool = True
    drain_grace: float = 5.0
    load_timeout: float = 180.0
    crash_limit: int = 3
    crash_window: float = 60.0
    max_backoff: float = 30.0
    drift_every: float = 10.0
    window_rows: int = 10_000
    window_seconds: float = 3600.0
    retention: dict[int, timedelta] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    #: Where the Prometheus exporter listens ("host:port"; None: no exporter).
    metrics_address: str | None = "127.0.0.1:9464"
    #: An active worker that answers no metrics pull for this long is killed and restarted (0: never).
    hang_timeout: float = 10.0
    #: Where workers export OpenTelemetry (an OTLP/HTTP URL) unless their deployment says (`otlp` option).
    otlp: str | None = None


@dataclass(eq=False)
class Runtime:
    """What runs for one deployment right now."""

    spec: DeploymentInfo
    sock: socket.socket | None = None
    active: list[Worker] = field(default_factory=list)
    standby: list[Worker] = field(default_factory=list)
    #: Started for a change not made yet (loading, or loaded and waiting for the switch).
    incoming: list[Worker] = field(default_factory=list)
    #: Leaving service (draining or stopping).
    outgoing: list[Worker] = field(default_factory=list)
    #: The candidate version's workers of a canary or shadow (`rollout`), on its private socket.
    candidates: list[Worker] = field(default_factory=list)
    rollout: Rollout | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    restarts: int = 0
    #: False until a version of this deployment first served (a new deployment has no "previous").
    served: bool = True
    status: DeploymentState = DeploymentState.STARTING
    message: str = ""
    healing: bool = False

    @property
    def standby_version(self) -> int | None:
        return self.standby[0].version if self.standby else None


class State:
    """The supervisor's shared state, and the small operations every part uses on it."""

    def __init__(self, home: Path, policy: Policy) -> None:
        self.registry = Registry(home=home)
        self.home = self.registry.settings.home
        self.rundir = RunDir.of(self.home).create()
        self.policy = policy
        #: Forks workers with the imports done (spawns them anew when it cannot).
        self.preloader = Preloader(self.rundir)
        self.runtimes: dict[str, Runtime] = {}
        self.workers: dict[int, Worker] = {}
        #: The last report of each pid not tracked yet, with when it came (see `keep_early`).
        self.early_reports: dict[int, tuple[float, dict[str, Any]]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.actor = f"supervisor@{current_actor().rpartition('@')[2]}"
        #: This host's name on a shared (PostgreSQL) registry, where several hosts' supervisors run
        #: their placed deployments (`supervision.hosts`); None on a SQLite home, which has one.
        self.host_name: str | None = None
        if not self.registry.settings.is_sqlite:
            try:
                self.host_name = host_name()
            except ValueError as exc:
                raise SupervisorError(str(exc)) from None
        self.started = time.time()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reconciled = asyncio.Event()
        #: Deployments whose workers are still being brought up after this supervisor started.
        self.starting: set[str] = set()
        #: The exporter's "host:port" once it listens (see `registry.serving.control`).
        self.exporter: str | None = None
        #: Why the exporter is not where it was asked (fell back to a free port, or none); "" if it is.
        self.exporter_note = ""
        #: On a shared registry, every host's exporter (name, address) as the last heartbeat read them
        #: (`supervision.hosts`); None: this supervisor's own exporter is the only target.
        self.host_exporters: list[tuple[str, str]] | None = None

    @property
    def targets_file(self) -> Path:
        return self.home / "prometheus" / "targets.json"

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus' targets: this supervisor's exporter, or every host's on a shared registry."""
        return target_groups(self.exporter, self.host_exporters)

    def lock(self, name: str) -> asyncio.Lock:
        runtime = self.runtimes.get(name)
        if runtime is not None:
            return runtime.lock
        return self.locks.setdefault(name, asyncio.Lock())

    def runtime(self, name: str) -> Runtime:
        runtime = self.runtimes.get(name)
        if runtime is None:
            known = ", ".join(sorted(self.runtimes)) or "none"
            raise SupervisorError(f"no deployment {name!r}; running: {known}", 404)
        return runtime

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking registry call off the event loop."""
        return await asyncio.to_thread(call, *args, **kwargs)

    def spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def save_state(self) -> None:
        try:
            write_targets(self.targets_file, self.targets())
        except OSError as exc:
            log.warning("could not write %s: %s", self.targets_file, exc)
        save_state(
            self.rundir,
            {
                name: {
                    "host": r.spec.host,
                    "port": r.spec.port,
                    "workers": [entry(w, role) for role, w in roles(r)],
                }
                for name, r in self.runtimes.items()
            },
        )

    def track(self, workers: list[Worker]) -> list[Worker]:
        """Track `workers`, each taking the report it sent before this supervisor knew its pid."""
        for worker in workers:
            self.workers[worker.pid] = worker
            early = self.early_reports.pop(worker.pid, None)
            if early is not None and early[1].get("version") == worker.version:
                worker.take_report(early[1])
        return workers

    def keep_early(self, report: dict[str, Any]) -> None:
        """Keep a report from a pid not tracked yet: a worker forked by the preloader loads and reports
        while its pid is still on its way to this supervisor (a busy machine, or several workers forked
        one after the other), and a dropped "standby" would leave its load waiting for the timeout.
        Kept EARLY_REPORT_SECONDS, for at most EARLY_REPORTS pids."""
        now = time.monotonic()
        self.early_reports = {
            pid: kept for pid, kept in self.early_reports.items() if now - kept[0] < EARLY_REPORT_SECONDS
        }
        pid = report.get("pid")
        if isinstance(pid, int) and len(self.early_reports) < EARLY_REPORTS:
            self.early_reports[pid] = (now, report)

    def forget(self, worker: Worker) -> None:
        """Stop tracking a worker that is gone, and remove the monitoring socket it left behind."""
        if self.workers.get(worker.pid) is worker:
            del self.workers[worker.pid]
        if worker.pid not in self.workers:
            self.rundir.worker_socket(worker.pid).unlink(missing_ok=True)

    def sweep_sockets(self) -> None:
        """Remove monitoring sockets of workers this supervisor does not run (killed ones leave theirs)."""
        for path in self.rundir.workers.glob("*.sock"):
            if not path.stem.isdigit() or int(path.stem) not in self.workers:
                path.unlink(missing_ok=True)


def roles(runtime: Runtime) -> list[tuple[Role, Worker]]:
    """Every worker of `runtime` with its role: active, standby, incoming, outgoing or candidate."""
    return (
        [(Role.ACTIVE, w) for w in runtime.active]
        + [(Role.STANDBY, w) for w in runtime.standby]
        + [(Role.INCOMING, w) for w in runtime.incoming]
        + [(Role.OUTGOING, w) for w in runtime.outgoing]
        + [(Role.CANDIDATE, w) for w in runtime.candidates]
    )


def entry(worker: Worker, role: Role) -> dict[str, Any]:
    """A worker's line in the state file."""
    return {
        "pid": worker.pid,
        "create_time": worker.create_time,
        "version": worker.version,
        "role": role.value,
    }
